"""The node itself: it registers Ready with an address of its own, runs the project image
confined as the chart asks (and as the kernel then enforces), gives pods a service-account
token, cluster DNS and the apiserver through the `kubernetes` Service; and `localkube down`
takes everything it made with it."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import uuid
from pathlib import Path

from localkube import Cluster
from localkube.node import NETNS_DIR, NODE_NAME, mounts_under, node_dir

from tests.node.podspec import apply, python_pod, wait_succeeded

INSPECT = """
import json, os, socket, ssl, urllib.request
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines())
try:
    open("/written", "w")
    root_writable = True
except OSError:
    root_writable = False
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
context = ssl.create_default_context(cafile=sa + "/ca.crt")
request = urllib.request.Request(
    "https://kubernetes.default.svc/api/v1/namespaces/" + open(sa + "/namespace").read(),
    headers={"Authorization": "Bearer " + open(sa + "/token").read()},
)
try:
    answer = urllib.request.urlopen(request, context=context).status
except urllib.error.HTTPError as exc:
    answer = exc.code
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "cap_eff": status["CapEff"].strip(), "seccomp": status["Seccomp"].strip(),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "root_writable": root_writable,
    "kubernetes": socket.gethostbyname("kubernetes.default.svc.cluster.local"),
    "apiserver_answer": answer,
}))
"""


def test_the_node_is_ready_with_an_address_of_its_own(node_cluster: Cluster) -> None:
    node = json.loads(node_cluster.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert node_cluster.network is not None
    assert addresses["InternalIP"] == node_cluster.network.node_ip
    assert not ipaddress.ip_address(addresses["InternalIP"]).is_loopback
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert not node["spec"].get("taints")


def test_a_pod_of_the_image_runs_confined_and_reaches_the_apiserver(
    node_cluster: Cluster,
) -> None:
    namespace = f"node-{uuid.uuid4().hex[:8]}"
    node_cluster.kubectl("create", "namespace", namespace)
    try:
        apply(node_cluster, python_pod("inspect", namespace, INSPECT))
        seen = json.loads(wait_succeeded(node_cluster, "inspect", namespace).splitlines()[-1])
    finally:
        node_cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    assert (seen["uid"], seen["gid"]) == (65532, 65532)
    assert seen["cap_eff"] == "0000000000000000"  # every capability dropped
    assert seen["seccomp"] == "2"  # a seccomp filter: RuntimeDefault
    assert seen["no_new_privs"] == "1"  # allowPrivilegeEscalation: false
    assert seen["root_writable"] is False
    assert seen["kubernetes"] == "10.0.0.1"  # the cluster DNS answers the Service's address
    # The kubelet mounted the default service account's token; the apiserver knows it (and
    # RBAC refuses the default account the namespace: authenticated, not authorized).
    assert seen["apiserver_answer"] == 403


def _host_iptables() -> str:
    return subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout


def test_down_leaves_nothing_behind(node_cluster: Cluster) -> None:
    """The session's node cluster, stopped here (its fixture's own stop then has nothing left
    to do): the last test of the last node module, so no test needs the node after it."""
    cluster = node_cluster
    root = cluster.state_dir
    try:
        assert cluster.network is not None
        network = cluster.network
        apply(cluster, python_pod("sleeper", "default", "import time; time.sleep(3600)"))
        cluster.kubectl(
            "wait", "pod/sleeper", "--for=condition=Ready", "--timeout=180s", timeout=210
        )
        runtime = node_dir(network)
        assert mounts_under(runtime)  # the pod's volumes and root filesystem
        pod_netns = _netns_inode(cluster, "sleeper")
        pids = dict(cluster.pids)
        assert pids
    finally:
        cluster.stop()

    for name, pid in pids.items():
        assert not Path(f"/proc/{pid}").exists(), f"{name} ({pid}) still runs"
    leftover = [
        proc.name
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit()
        and any(str(path).encode() in _cmdline(proc) for path in (root, runtime))
    ]
    assert not leftover, leftover
    assert not mounts_under(root)
    assert not mounts_under(runtime)
    assert not runtime.exists()
    # Neither the node's netns nor the pod's (other clusters' may come and go meanwhile).
    assert not (NETNS_DIR / network.netns).exists()
    assert pod_netns not in _netns_inodes()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert network.host_link not in links
    assert "KUBE-" not in _host_iptables()
    assert "CNI-" not in _host_iptables()


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def _netns_inode(cluster: Cluster, pod: str) -> int:
    """The network namespace of `pod`'s container, found by its cgroup (inode of the nsfs)."""
    status = cluster.kubectl(
        "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].containerID}"
    )
    container = status.stdout.removeprefix("containerd://")
    assert container
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and container in (proc / "cgroup").read_text():
                return (proc / "ns" / "net").stat().st_ino
        except OSError:
            continue
    raise AssertionError(f"no process of container {container}")


def _netns_inodes() -> set[int]:
    found = set()
    for path in NETNS_DIR.iterdir() if NETNS_DIR.exists() else []:
        with contextlib.suppress(OSError):
            found.add(path.stat().st_ino)
    return found

"""The local node: containerd (CRI) + runc + CNI bridge, kubelet and kube-proxy, and a small
cluster DNS, all inside a network namespace of the cluster's own.

Layout (every name carries the cluster's random id, so parallel clusters never meet):

    host netns                          node netns "lk-<id>"
    lkh<id> 10.213.x.1/30  <-- veth -->  eth0 10.213.x.2/30 (the node's InternalIP)
    kube-apiserver, DNS on 10.213.x.1    containerd, kubelet, kube-proxy (iptables rules)
                                         lkbr0 10.244.0.1/24 -- pods (bridge + host-local)

The node netns has no default route: pods reach the apiserver and the DNS on the host end of
the veth (masqueraded to the node address) and nothing else. Stopping ends kubelet, removes
every pod through the CRI (their netns, mounts and cgroups go with them), ends containerd and
deletes the netns (its veth, bridge and iptables rules with it); anything a crash left behind
under the state folder is unmounted.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from localkube import image
from localkube.build import Binaries
from localkube.processes import Components

log = logging.getLogger(__name__)

NODE_NAME = "localkube"
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.0.0.0/24"
CLUSTER_DOMAIN = "cluster.local"
# The veth links' addresses, one /30 per cluster; nothing on this machine uses this range.
LINK_RANGE = ipaddress.ip_network("10.213.0.0/16")
NETNS_DIR = Path("/run/netns")
LOCK_FILE = Path("/run/lock/localkube-node.lock")
RUNTIME_ROOT = Path("/var/lib/localkube")
CNI_BIN_DIR = "/usr/lib/cni"
REQUIRED_TOOLS = ("containerd", "runc", "ctr", "buildah", "mmdebstrap", "iptables", "nsenter", "ip")
# What the node runs, in start order; stopped in reverse with the CRI reset in between.
COMPONENTS = ("containerd", "kubelet", "kube-proxy", "cluster-dns")


class NodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class Network:
    id: str
    netns: str
    host_link: str
    host_ip: str
    node_ip: str

    @property
    def netns_path(self) -> str:
        return str(NETNS_DIR / self.netns)

    def nsenter(self) -> list[str]:
        """Run a command in the node netns only (not `ip netns exec`, which also makes a
        mount namespace of its own: the kubelet's volume mounts must be seen by containerd)."""
        return ["nsenter", f"--net={self.netns_path}", "--"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NodeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")
    return result


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def check_machine() -> None:
    """Say what is missing before anything starts."""
    if os.geteuid() != 0:
        raise NodeError("the local node needs root (network namespaces, mounts, cgroups)")
    missing = [tool for tool in REQUIRED_TOOLS if not _which(tool)]
    if missing or not Path(CNI_BIN_DIR, "bridge").exists():
        raise NodeError(
            f"missing {', '.join(missing) or 'the CNI plugins'}: run `make node-deps` "
            "(apt: containerd runc containernetworking-plugins buildah mmdebstrap iptables)"
        )


def _which(tool: str) -> bool:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(tool, path=search) is not None


def create_network() -> Network:
    """The node's netns and its veth to the host, on a /30 no other cluster holds."""
    check_machine()
    ident = secrets.token_hex(4)
    with _machine_lock():
        used = set()
        for line in _ip("-o", "-4", "addr", "show").stdout.splitlines():
            address = ipaddress.ip_interface(line.split()[3])
            if address.ip in LINK_RANGE:
                used.add(address.network)
        subnet = next(s for s in LINK_RANGE.subnets(new_prefix=30) if s not in used)
        host_ip, node_ip = (str(a) for a in list(subnet.hosts())[:2])
        net = Network(
            id=ident, netns=f"lk-{ident}", host_link=f"lkh{ident}", host_ip=host_ip, node_ip=node_ip
        )
        try:
            _ip("netns", "add", net.netns)
            _ip(
                "link",
                "add",
                net.host_link,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                net.netns,
            )
            _ip("addr", "add", f"{host_ip}/30", "dev", net.host_link)
            _ip("link", "set", net.host_link, "up")
        except BaseException:
            delete_network(net)
            raise
    try:
        _ip("-n", net.netns, "link", "set", "lo", "up")
        _ip("-n", net.netns, "addr", "add", f"{node_ip}/30", "dev", "eth0")
        _ip("-n", net.netns, "link", "set", "eth0", "up")
        # Service addresses are routed inside the node (kube-proxy rewrites them).
        _ip("-n", net.netns, "route", "add", SERVICE_CIDR, "dev", "eth0")
        for key, value in (
            ("net/ipv4/ip_forward", "1"),
            ("net/bridge/bridge-nf-call-iptables", "1"),
        ):
            subprocess.run(
                [*net.nsenter(), "sh", "-c", f"echo {value} > /proc/sys/{key}"],
                check=True,
                capture_output=True,
            )
    except BaseException:
        delete_network(net)
        raise
    return net


def delete_network(net: Network) -> None:
    _ip("netns", "delete", net.netns, check=False)
    _ip("link", "delete", net.host_link, check=False)


# --- configuration files -----------------------------------------------------------------


def _containerd_config(node_dir: Path) -> str:
    cri = '[plugins."io.containerd.grpc.v1.cri"]'
    return f"""version = 2
root = "{node_dir / "containerd" / "root"}"
state = "{node_dir / "containerd" / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{node_dir / "containerd.sock"}"
[ttrpc]
  address = "{node_dir / "containerd.sock"}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{node_dir / "containerd" / "opt"}"
{cri}
  sandbox_image = "{image.PAUSE_IMAGE}"
  # root here may not lower oom_score_adj; without this every sandbox fails to start
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{node_dir / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{node_dir / "cni"}"
"""


def _cni_config(node_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "localkube",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "lkbr0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_CIDR}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node_dir / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def _kubelet_config(node_dir: Path, net: Network, ca_cert: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{node_dir / 'containerd.sock'}",
        # This machine: cgroup v1 hierarchies (plus a cgroup2 mount), no systemd, no swap.
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "failSwapOn": False,
        "address": net.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        # Only the apiserver (client certificate of the cluster CA) may call the kubelet.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_cert)},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "clusterDNS": [net.host_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(node_dir / "resolv.conf"),
        "podLogsDir": str(node_dir / "pod-logs"),
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        "serializeImagePulls": False,
        "hairpinMode": "hairpin-veth",
        "rotateCertificates": False,
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "nodeStatusReportFrequency": "10s",
    }


def _kube_proxy_config(node_dir: Path, kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        # Pod -> Service -> pod on the same bridge: answers must come back through the node.
        "iptables": {"masqueradeAll": True, "syncPeriod": "5s", "minSyncPeriod": "0s"},
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        # The netns' conntrack table is the kernel's; leave its sysctls alone.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


# --- start and stop ----------------------------------------------------------------------


class ControlPlane(Protocol):
    """What the node needs of the control plane it joins (a localkube.cluster.Cluster, which
    imports this module: hence a protocol, not an import)."""

    components: Components
    kubeconfig: Path
    binaries: Binaries

    @property
    def state_dir(self) -> Path: ...

    @property
    def ca_cert(self) -> Path: ...

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]: ...


def node_dir(net: Network) -> Path:
    """Where the node keeps its runtime state: a short path of its own (unix sockets under
    it must stay below 108 bytes), linked from the cluster's state folder as `node`."""
    return RUNTIME_ROOT / net.id


def start(cluster: ControlPlane, net: Network, *, tie_to_parent: bool, timeout: float) -> None:
    """Start containerd, import the images, then kubelet, kube-proxy and the DNS; wait until
    the node is Ready."""
    directory = node_dir(net)
    directory.mkdir(parents=True, exist_ok=True)
    (cluster.state_dir / "node").symlink_to(directory)
    (directory / "cni").mkdir(exist_ok=True)
    (directory / "resolv.conf").write_text(f"nameserver {net.host_ip}\n")
    (directory / "containerd.toml").write_text(_containerd_config(directory))
    (directory / "cni" / "10-localkube.conflist").write_text(json.dumps(_cni_config(directory)))
    (directory / "kubelet.yaml").write_text(
        yaml.safe_dump(_kubelet_config(directory, net, cluster.ca_cert))
    )
    (directory / "kube-proxy.yaml").write_text(
        yaml.safe_dump(_kube_proxy_config(directory, cluster.kubeconfig))
    )
    socket = directory / "containerd.sock"
    archives = images()
    spawn, wait = cluster.components.spawn, cluster.components.wait
    kube = str(cluster.binaries.kube)
    spawn(
        "containerd",
        [*net.nsenter(), "containerd", "--config", str(directory / "containerd.toml"),
         "--log-level", "warn"],
        tie_to_parent,
    )  # fmt: skip
    wait("containerd", lambda: _ctr(socket, "version", check=False).returncode == 0, timeout)
    for archive in archives:
        _ctr(socket, "images", "import", str(archive.path))
    spawn(
        "kubelet",
        [
            *net.nsenter(),
            kube,
            "kubelet",
            f"--config={directory / 'kubelet.yaml'}",
            f"--kubeconfig={cluster.kubeconfig}",
            f"--root-dir={directory / 'kubelet'}",
            f"--cert-dir={directory / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={net.node_ip}",
            "--v=0",
        ],
        tie_to_parent,
    )
    # Ready, untainted (the node lifecycle controller lifts the not-ready taint) and the CA
    # bundle every service-account token volume mounts published: pods can start now.
    wait("kubelet", lambda: _node_ready(cluster), timeout)
    wait("kube-controller-manager", lambda: _schedulable(cluster), timeout)
    spawn(
        "kube-proxy",
        [*net.nsenter(), kube, "kube-proxy", f"--config={directory / 'kube-proxy.yaml'}", "--v=0"],
        tie_to_parent,
    )
    spawn(
        "cluster-dns",
        [
            sys.executable,
            "-m",
            "localkube.dns",
            f"--listen={net.host_ip}",
            f"--kubeconfig={cluster.kubeconfig}",
            f"--domain={CLUSTER_DOMAIN}",
        ],
        tie_to_parent,
    )
    wait("cluster-dns", lambda: _dns_answers(net.host_ip), timeout)


def image_tag() -> str:
    """The chart's appVersion: the tag its pods ask for by default."""
    chart = yaml.safe_load((image.REPO / "charts" / "whatsapp-channels" / "Chart.yaml").read_text())
    return str(chart["appVersion"])


def images() -> list[image.Archive]:
    """The pause image and the project image (as the chart names it), built if missing."""
    return image.node_images(image_tag())


def _ctr(socket: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["ctr", "--address", str(socket), "--namespace", "k8s.io", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check and result.returncode != 0:
        raise NodeError(f"ctr {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result


def kill_container(net: Network, container_id: str) -> None:
    """SIGKILL a container's process through the node's runtime (containerd's task kill), the
    way the kernel's OOM killer or a crash ends it: no SIGTERM first, nothing of it runs after.
    `container_id` as a pod's status names it (`containerd://<id>`) or bare."""
    container = container_id.removeprefix("containerd://")
    _ctr(node_dir(net) / "containerd.sock", "tasks", "kill", "--signal", "SIGKILL", container)


def _node_ready(cluster: ControlPlane) -> bool:
    result = cluster.kubectl(
        "get", "node", NODE_NAME, "-o",
        'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
        check=False,
    )  # fmt: skip
    return result.stdout.strip() == "True"


def _schedulable(cluster: ControlPlane) -> bool:
    taints = cluster.kubectl(
        "get", "node", NODE_NAME, "-o", "jsonpath={.spec.taints}", check=False
    )  # fmt: skip
    root_ca = cluster.kubectl("get", "configmap", "kube-root-ca.crt", "-n", "default", check=False)
    return taints.returncode == 0 and not taints.stdout.strip() and root_ca.returncode == 0


def _dns_answers(server: str) -> bool:
    from localkube.dns import query

    try:
        return query(server, f"kubernetes.default.svc.{CLUSTER_DOMAIN}", timeout=1.0) is not None
    except OSError:
        return False


def stop(cluster: ControlPlane, net: Network) -> None:
    """End the node and take everything it made with it (see the module's docstring)."""
    directory = node_dir(net)
    socket = directory / "containerd.sock"
    started = time.monotonic()
    for name in ("cluster-dns", "kube-proxy", "kubelet"):
        if name in cluster.components.pids:
            cluster.components.end(name)
            log.info("%s ended at %.1fs", name, time.monotonic() - started)
    containers: list[str] = []
    if "containerd" in cluster.components.pids:
        listed = _ctr(socket, "containers", "list", "--quiet", check=False)
        containers = listed.stdout.split() if listed.returncode == 0 else []
        subprocess.run(
            [*net.nsenter(), str(cluster.binaries.kube), "cri-reset", f"unix://{socket}"],
            capture_output=True,
            timeout=180,
            check=False,
        )
        log.info("pods removed at %.1fs", time.monotonic() - started)
        cluster.components.end("containerd")
        log.info("containerd ended at %.1fs", time.monotonic() - started)
    _end_shims(str(socket))
    _unmount_under(directory)
    if not mounts_under(directory):
        shutil.rmtree(directory, ignore_errors=True)
    (cluster.state_dir / "node").unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # when no other node is left
        RUNTIME_ROOT.rmdir()
    _remove_cgroups(containers)
    delete_network(net)
    with contextlib.suppress(OSError):  # the shims' socket folder, when no other runtime uses it
        Path("/run/containerd/s").rmdir()
        Path("/run/containerd").rmdir()


def _remove_cgroups(containers: list[str]) -> None:
    """The containers' cgroups (runc removes them; a killed shim may not have), then the
    runtime's parent "k8s.io" when no other node's containers are left in it."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        parent = hierarchy / "k8s.io"
        for container in containers:
            with contextlib.suppress(OSError):
                (parent / container).rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()


def _end_shims(address: str) -> None:
    """Kill the runtime shims (and their containers) of this node's containerd, if any
    survived the CRI reset: they run in process groups of their own."""
    shims = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
            shims.append(int(proc.name))
    for pid in shims:
        for child in _children(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append(int(proc.name))
            found.extend(_children(int(proc.name)))
    return found


def mounts_under(directory: Path) -> list[str]:
    prefix = str(directory) + "/"
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            found.append(point)
    return found


def _unmount_under(directory: Path) -> None:
    for _ in range(3):
        points = mounts_under(directory)
        if not points:
            return
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        time.sleep(0.1)


def network_from_state(state: dict[str, Any] | None) -> Network | None:
    return Network(**state) if state else None


def network_state(net: Network) -> dict[str, str]:
    return asdict(net)

"""Start, watch and stop a local control plane: etcd, kube-apiserver (RBAC on, service-account
tokens issuable) and kube-controller-manager (garbage collector, namespace and
service-account controllers), each on a free loopback port.

Every process is one of the cluster's `Components` (localkube.processes), recorded in
`state.json`, so `stop()` (from this process or from `localkube down` in another) ends exactly
what was started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localkube import node as node_mod
from localkube.build import Binaries, ensure_built
from localkube.pki import make_pki
from localkube.processes import ClusterError, Components, end_process_group

SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = "garbage-collector-controller,namespace-controller,serviceaccount-controller"
# With a node, what Deployments, Services and pods with service-account tokens rely on.
NODE_CONTROLLERS = (
    f"{CONTROLLERS},deployment-controller,replicaset-controller,endpoints-controller,"
    "endpointslice-controller,endpointslice-mirroring-controller,pod-garbage-collector-controller,"
    "root-ca-certificate-publisher-controller,disruption-controller,ttl-after-finished-controller,"
    "node-lifecycle-controller"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_kubeconfig(
    path: Path,
    *,
    server: str,
    ca: Path | None,
    user: str,
    credentials: Mapping[str, str],
    namespace: str | None = None,
) -> Path:
    """A kubeconfig of one cluster, one user (`credentials`, e.g. {"token": ...}) and one
    context, readable by its owner only; without `ca` the server's certificate is not checked."""
    trust: dict[str, Any] = (
        {"certificate-authority": str(ca)} if ca else {"insecure-skip-tls-verify": True}
    )
    context = {"cluster": "localkube", "user": user}
    if namespace is not None:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "localkube", "cluster": {"server": server, **trust}}],
        "users": [{"name": user, "user": dict(credentials)}],
        "contexts": [{"name": "localkube", "context": context}],
        "current-context": "localkube",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@dataclass
class Cluster:
    """A running (or attachable) local control plane rooted at `state_dir`."""

    state_dir: Path
    server: str
    kubeconfig: Path
    binaries: Binaries
    pids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    started_in: float = 0.0
    network: node_mod.Network | None = None  # the node's, when it has one (localkube.node)
    components: Components = field(init=False)

    def __post_init__(self) -> None:
        self.components = Components(self.state_dir, self.pids, recorded=self._save)

    # --- lifecycle -----------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        state_dir: Path,
        *,
        tie_to_parent: bool = True,
        binaries: Binaries | None = None,
        timeout: float = 90.0,
        node: bool = False,
    ) -> Cluster:
        """Start a fresh cluster in `state_dir` (wiped first) and wait until it serves; with
        `node`, also a node that runs pods (localkube.node), Ready before this returns."""
        binaries = binaries or ensure_built()
        if node:
            node_mod.check_machine()
            node_mod.images()  # built (and cached) before anything starts
        started = time.monotonic()
        if state_dir.exists():
            existing = cls.attach(state_dir)
            if existing is not None and existing.running():
                raise ClusterError(f"a cluster is already running in {state_dir}")
            if existing is not None and existing.network is not None:
                existing.stop()  # a node that died: its netns and mounts go first
            shutil.rmtree(state_dir)
        (state_dir / "logs").mkdir(parents=True)
        # The node's pods reach the apiserver on the host end of the node's link.
        network = node_mod.create_network() if node else None
        address = network.host_ip if network else "127.0.0.1"
        pki = make_pki(state_dir / "pki", extra_ips=(address,))
        ports = {name: free_port() for name in ("etcd", "etcd-peer", "apiserver")}
        server = f"https://{address}:{ports['apiserver']}"
        cluster = cls(
            state_dir=state_dir,
            server=server,
            kubeconfig=state_dir / "kubeconfig",
            binaries=binaries,
            ports=ports,
            network=network,
        )
        cluster._save()
        cluster._write_kubeconfig(pki.ca_cert, pki.admin_cert, pki.admin_key)
        node_flags = (
            [
                "--endpoint-reconciler-type=lease",
                f"--kubelet-client-certificate={pki.admin_cert}",
                f"--kubelet-client-key={pki.admin_key}",
                "--kubelet-preferred-address-types=InternalIP",
            ]
            if network
            else ["--endpoint-reconciler-type=none"]
        )
        kube = str(binaries.kube)
        spawn, wait = cluster.components.spawn, cluster.components.wait
        try:
            etcd_url = f"http://127.0.0.1:{ports['etcd']}"
            peer_url = f"http://127.0.0.1:{ports['etcd-peer']}"
            spawn(
                "etcd",
                [
                    kube,
                    "etcd",
                    "--name=localkube",
                    f"--data-dir={state_dir / 'etcd'}",
                    f"--listen-client-urls={etcd_url}",
                    f"--advertise-client-urls={etcd_url}",
                    f"--listen-peer-urls={peer_url}",
                    f"--initial-advertise-peer-urls={peer_url}",
                    f"--initial-cluster=localkube={peer_url}",
                    "--log-level=warn",
                    # A throw-away dev cluster: skip fsync (etcd's own flag for tests).
                    "--unsafe-no-fsync",
                ],
                tie_to_parent,
            )
            wait("etcd", lambda: _http_ok(f"{etcd_url}/health"), timeout)
            spawn(
                "kube-apiserver",
                [
                    kube,
                    "kube-apiserver",
                    f"--etcd-servers={etcd_url}",
                    f"--bind-address={address}",
                    f"--advertise-address={address}",
                    f"--secure-port={ports['apiserver']}",
                    f"--tls-cert-file={pki.serving_cert}",
                    f"--tls-private-key-file={pki.serving_key}",
                    f"--client-ca-file={pki.ca_cert}",
                    "--authorization-mode=RBAC",
                    f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                    f"--service-account-key-file={pki.sa_pub}",
                    f"--service-account-signing-key-file={pki.sa_key}",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    # Without a node: endpoints may not point at loopback, no pod reaches it.
                    *node_flags,
                    "--profiling=false",
                    "--v=0",
                ],
                tie_to_parent,
            )
            wait("kube-apiserver", lambda: cluster._readyz(pki.ca_cert), timeout)
            spawn(
                "kube-controller-manager",
                [
                    kube,
                    "kube-controller-manager",
                    f"--kubeconfig={cluster.kubeconfig}",
                    f"--controllers={NODE_CONTROLLERS if network else CONTROLLERS}",
                    "--leader-elect=false",
                    "--secure-port=0",
                    f"--root-ca-file={pki.ca_cert}",
                    f"--service-account-private-key-file={pki.sa_key}",
                    "--v=0",
                ],
                tie_to_parent,
            )
            wait(
                "kube-controller-manager",
                lambda: cluster._has_default_service_account(),
                timeout,
            )
            if network:
                # Its port is free on loopback (the default 10259 is taken by another
                # cluster's scheduler); serving /healthz says it runs.
                ports["scheduler"] = free_port()
                spawn(
                    "kube-scheduler",
                    [
                        kube,
                        "kube-scheduler",
                        f"--kubeconfig={cluster.kubeconfig}",
                        f"--authentication-kubeconfig={cluster.kubeconfig}",
                        f"--authorization-kubeconfig={cluster.kubeconfig}",
                        "--bind-address=127.0.0.1",
                        f"--secure-port={ports['scheduler']}",
                        "--leader-elect=false",
                        "--v=0",
                    ],
                    tie_to_parent,
                )
                unverified = ssl.create_default_context()
                unverified.check_hostname = False
                unverified.verify_mode = ssl.CERT_NONE  # its own self-signed certificate
                healthz = f"https://127.0.0.1:{ports['scheduler']}/healthz"
                wait("kube-scheduler", lambda: _http_ok(healthz, unverified), timeout)
                node_mod.start(cluster, network, tie_to_parent=tie_to_parent, timeout=timeout)
        except BaseException:
            cluster.stop()
            raise
        cluster.started_in = time.monotonic() - started
        cluster._save()
        return cluster

    @classmethod
    def attach(cls, state_dir: Path) -> Cluster | None:
        """The cluster recorded in `state_dir`, if any (running or not)."""
        try:
            state = json.loads((state_dir / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return cls(
            state_dir=state_dir,
            server=state["server"],
            kubeconfig=Path(state["kubeconfig"]),
            binaries=Binaries(kube=Path(state["kube"]), helm=Path(state["helm"])),
            pids={k: int(v) for k, v in state["pids"].items()},
            ports={k: int(v) for k, v in state["ports"].items()},
            network=node_mod.network_from_state(state.get("network")),
        )

    def running(self) -> bool:
        return self.components.running()

    def stop(self) -> None:
        """End every process this cluster started, newest first, by pid; the node (if any)
        first, with everything it made."""
        if self.network is not None:
            node_mod.stop(self, self.network)
            self.network = None
        for name in reversed(list(self.pids)):
            end_process_group(self.pids.pop(name))
        self._save()

    def restart(self, component: str) -> None:
        """Kill one component and start it again with the same arguments (fault tests)."""
        self.components.restart(component)

    # --- using it ------------------------------------------------------------------------

    @property
    def ca_cert(self) -> Path:
        """The certificate of the cluster CA (make_pki wrote it): what its server chains to."""
        return self.state_dir / "pki" / "ca.crt"

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        return self._run(["kubectl", *args], input=input, check=check, timeout=timeout)

    def helm(
        self, *args: str, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.binaries.helm), *args], input=None, check=check, timeout=timeout)

    def _run(
        self,
        argv: Sequence[str],
        *,
        input: str | None,
        check: bool,
        timeout: float,
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            list(argv), input=input, capture_output=True, text=True, env=self.env(), timeout=timeout
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"{' '.join(argv[:3])} ... failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def wait_until_served(self, resource: str, namespace: str, timeout: float = 30.0) -> None:
        """Wait until `resource` can be listed: a CRD reported Established may still answer
        429 "storage is (re)initializing" for a moment."""
        self.components.wait(
            "kube-apiserver",
            lambda: self.kubectl("get", resource, "-n", namespace, check=False).returncode == 0,
            timeout,
        )

    # --- internals -----------------------------------------------------------------------

    def _readyz(self, ca_cert: Path) -> bool:
        return _http_ok(f"{self.server}/readyz", ssl.create_default_context(cafile=str(ca_cert)))

    def _has_default_service_account(self) -> bool:
        # The serviceaccount controller creating "default" proves the controller manager works.
        result = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
        return result.returncode == 0

    def _write_kubeconfig(self, ca: Path, cert: Path, key: Path) -> None:
        write_kubeconfig(
            self.kubeconfig,
            server=self.server,
            ca=ca,
            user="localkube-admin",
            credentials={"client-certificate": str(cert), "client-key": str(key)},
        )

    def _save(self) -> None:
        state = {
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "kube": str(self.binaries.kube),
            "helm": str(self.binaries.helm),
            "pids": self.pids,
            "ports": self.ports,
            "network": node_mod.network_state(self.network) if self.network else None,
        }
        (self.state_dir / "state.json").write_text(json.dumps(state, indent=2))


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def service_account_kubeconfig(
    cluster: Cluster, namespace: str, name: str, folder: Path, *, duration: str = "1h"
) -> Path:
    """A kubeconfig that authenticates as service account `name` with a token of its own
    (`kubectl create token`), against this cluster and its CA: what its pod would get."""
    token = cluster.kubectl(
        "create", "token", name, "-n", namespace, f"--duration={duration}"
    ).stdout.strip()
    return write_kubeconfig(
        folder / f"kubeconfig-{namespace}-{name}",
        server=cluster.server,
        ca=cluster.ca_cert,
        user=name,
        credentials={"token": token},
        namespace=namespace,
    )

"""Run the real `whatsapp-facade` console script against a cluster (end-to-end suites), and
give it a least-privilege identity: the facade's service account may work on
WhatsAppChannels and read the sealing public key, nothing else.

Without `keys_namespace`, the operator's public key is read in the channel namespace (an
operator run without WA_KEYS_NAMESPACE); with it, there, as the chart lays it out."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from localkube import Cluster
from localkube.cluster import write_kubeconfig
from localkube.product import service_account_kubeconfig, start_facade
from localkube.services import Service, running
from whatsapp_channel.model import GROUP, PLURAL, SEALING_PUBLIC_CONFIGMAP

SERVICE_ACCOUNT = "whatsapp-facade"


@contextmanager
def run_facade(
    kubeconfig: Path,
    namespace: str,
    api_keys_file: Path,
    log_dir: Path,
    *,
    keys_namespace: str | None = None,
    ready_wait_seconds: float | None = None,
    kube_timeout_seconds: float | None = None,
    metrics_port: int | None = None,
) -> Iterator[Service]:
    """The facade, alive (/healthz: it may have no apiserver to be ready with) when the block
    starts; `.url` is where it serves, `.log_path` its log."""
    service = start_facade(
        kubeconfig,
        log_dir,
        namespace=namespace,
        keys_namespace=keys_namespace,
        api_keys_file=api_keys_file,
        ready_wait_seconds=ready_wait_seconds,
        kube_timeout_seconds=kube_timeout_seconds,
        metrics_port=metrics_port,
        ready=False,
    )
    with running(service):
        yield service


def facade_identity(
    cluster: Cluster, namespace: str, folder: Path, *, keys_namespace: str | None = None
) -> Path:
    """A kubeconfig for a service account with exactly the facade's permissions: channels
    in `namespace`, the public key ConfigMap in `keys_namespace` (default: `namespace`)."""
    subject = f"{namespace}:{SERVICE_ACCOUNT}"
    keys = keys_namespace or namespace
    cluster.kubectl("create", "serviceaccount", SERVICE_ACCOUNT, "-n", namespace)
    cluster.kubectl(
        "create", "role", "whatsapp-facade-channels", "-n", namespace,
        "--verb=get,list,watch,create,update,delete", f"--resource={PLURAL}.{GROUP}",
    )  # fmt: skip
    cluster.kubectl(
        "create", "role", "whatsapp-facade-sealing-key", "-n", keys,
        "--verb=get", "--resource=configmaps", f"--resource-name={SEALING_PUBLIC_CONFIGMAP}",
    )  # fmt: skip
    for role, where in (
        ("whatsapp-facade-channels", namespace),
        ("whatsapp-facade-sealing-key", keys),
    ):
        cluster.kubectl(
            "create", "rolebinding", role, "-n", where,
            f"--role={role}", f"--serviceaccount={subject}",
        )  # fmt: skip
    return service_account_kubeconfig(cluster, namespace, SERVICE_ACCOUNT, folder)


def unreachable_kubeconfig(folder: Path, port: int) -> Path:
    """A kubeconfig whose apiserver is a loopback port that nobody serves (or nobody answers)."""
    return write_kubeconfig(
        folder / f"kubeconfig-unreachable-{port}",
        server=f"https://127.0.0.1:{port}",
        ca=None,
        user="nobody",
        credentials={"token": "not-a-real-token"},
    )

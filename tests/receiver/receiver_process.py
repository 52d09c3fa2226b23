"""Run the real `whatsapp-receiver` console script against the test cluster, as a service
account with exactly the receiver's rights: list and watch Secrets, patch channel status.

    with run_receiver(kubeconfig, namespace, sink.url_template, log_dir) as receiver:
        receiver.url  # http://127.0.0.1:<port>; ready (its cache synced) when the block starts
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from localkube import Cluster
from localkube.cluster import free_port
from localkube.product import service_account_kubeconfig, start_receiver
from localkube.services import Service, running
from whatsapp_channel.model import GROUP, PLURAL

SERVICE_ACCOUNT = "whatsapp-receiver"


@dataclass(frozen=True)
class RunningReceiver:
    url: str
    port: int
    forward_secret: bytes
    service: Service


@contextmanager
def run_receiver(
    kubeconfig: Path,
    namespace: str,
    forward_url_template: str,
    log_dir: Path,
    *,
    port: int | None = None,
    metrics_port: int | None = None,
) -> Iterator[RunningReceiver]:
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    forward_secret = secrets.token_hex(32).encode()
    secret_file = log_dir / f"receiver-forward-secret-{port}"
    secret_file.write_bytes(forward_secret + b"\n")
    secret_file.chmod(0o600)
    service = start_receiver(
        kubeconfig,
        log_dir,
        namespace=namespace,
        forward_url_template=forward_url_template,
        forward_secret_file=secret_file,
        forward_timeout_seconds=3,
        status_write_interval_seconds=1,
        metrics_port=metrics_port,
        port=port,
    )
    with running(service):
        yield RunningReceiver(service.url, port, forward_secret, service)


def receiver_identity(cluster: Cluster, namespace: str, folder: Path) -> Path:
    """A kubeconfig for a service account with exactly the receiver's permissions."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace},
        "rules": [
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},
            {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": SERVICE_ACCOUNT, "namespace": namespace},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": SERVICE_ACCOUNT,
        },
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}],
    }
    cluster.kubectl("create", "serviceaccount", SERVICE_ACCOUNT, "-n", namespace)
    for obj in (role, binding):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    return service_account_kubeconfig(cluster, namespace, SERVICE_ACCOUNT, folder)

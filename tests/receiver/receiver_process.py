"""Run the real `whatsapp-receiver` console script against the test cluster, as a service
account with exactly the receiver's rights: list and watch Secrets, patch channel status.

    with run_receiver(kubeconfig, namespace, sink.url_template, log_dir) as receiver:
        receiver.url  # http://127.0.0.1:<port>; ready (its cache synced) when the block starts
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import Service, running, script, start_service
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
    env: Mapping[str, str] | None = None,
) -> Iterator[RunningReceiver]:
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    forward_secret = secrets.token_hex(32).encode()
    secret_file = log_dir / f"receiver-forward-secret-{port}"
    secret_file.write_bytes(forward_secret + b"\n")
    secret_file.chmod(0o600)
    service = start_service(
        "whatsapp-receiver",
        [script("whatsapp-receiver")],
        env={
            "KUBECONFIG": str(kubeconfig),
            "WA_RECEIVER_NAMESPACE": namespace,
            "WA_RECEIVER_FORWARD_URL_TEMPLATE": forward_url_template,
            "WA_RECEIVER_FORWARD_SECRET_FILE": str(secret_file),
            "WA_RECEIVER_FORWARD_TIMEOUT_SECONDS": "3",
            "WA_RECEIVER_STATUS_WRITE_INTERVAL_SECONDS": "1",
            "WA_RECEIVER_HOST": "127.0.0.1",
            "WA_RECEIVER_PORT": str(port),
            **(env or {}),
        },
        log_path=log_dir / f"receiver-{namespace}-{port}.log",
        health_url=f"http://127.0.0.1:{port}/readyz",
    )
    with running(service):
        yield RunningReceiver(f"http://127.0.0.1:{port}", port, forward_secret, service)


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
    token = cluster.kubectl(
        "create", "token", SERVICE_ACCOUNT, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": SERVICE_ACCOUNT, "user": {"token": token}}],
        "contexts": [
            {
                "name": SERVICE_ACCOUNT,
                "context": {"cluster": admin["clusters"][0]["name"], "user": SERVICE_ACCOUNT},
            }
        ],
        "current-context": SERVICE_ACCOUNT,
    }
    path = folder / f"kubeconfig-{SERVICE_ACCOUNT}-{namespace}"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path

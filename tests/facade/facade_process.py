"""Run the real `whatsapp-facade` console script against a cluster (end-to-end suites), and
give it a least-privilege identity: the facade's service account may work on
WhatsAppChannels and read the sealing public key, nothing else.

Without `keys_namespace`, the operator's public key is read in the channel namespace (an
operator run without WA_OPERATOR_KEYS_NAMESPACE); with it, there, as the chart lays it out."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import running, script, start_service
from whatsapp_channel.model import GROUP, PLURAL, SEALING_PUBLIC_CONFIGMAP

SERVICE_ACCOUNT = "whatsapp-facade"


@dataclass(frozen=True)
class Facade:
    url: str
    log_path: Path


@contextmanager
def run_facade(
    kubeconfig: Path,
    namespace: str,
    api_keys_file: Path,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    keys_namespace: str | None = None,
) -> Iterator[Facade]:
    port = free_port()
    keys = {"WA_FACADE_SEALING_KEY_NAMESPACE": keys_namespace} if keys_namespace else {}
    log_path = log_dir / f"facade-{namespace}-{port}.log"
    service = start_service(
        "whatsapp-facade",
        [script("whatsapp-facade")],
        env={
            "KUBECONFIG": str(kubeconfig),
            "WA_FACADE_NAMESPACE": namespace,
            "WA_FACADE_API_KEYS_FILE": str(api_keys_file),
            "WA_FACADE_HOST": "127.0.0.1",
            "WA_FACADE_PORT": str(port),
            **keys,
            **(env or {}),
        },
        log_path=log_path,
        health_url=f"http://127.0.0.1:{port}/healthz",
    )
    with running(service):
        yield Facade(url=f"http://127.0.0.1:{port}", log_path=log_path)


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
                "context": {
                    "cluster": admin["clusters"][0]["name"],
                    "user": SERVICE_ACCOUNT,
                    "namespace": namespace,
                },
            }
        ],
        "current-context": SERVICE_ACCOUNT,
    }
    path = folder / f"kubeconfig-{SERVICE_ACCOUNT}"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def unreachable_kubeconfig(folder: Path, port: int) -> Path:
    """A kubeconfig whose apiserver is a loopback port that nobody serves (or nobody answers)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "gone",
                "cluster": {
                    "server": f"https://127.0.0.1:{port}",
                    "insecure-skip-tls-verify": True,
                },
            }
        ],
        "users": [{"name": "nobody", "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "nobody"}}],
        "current-context": "gone",
    }
    path = folder / f"kubeconfig-unreachable-{port}"
    path.write_text(yaml.safe_dump(config))
    return path

"""The product's three processes, run as their console scripts (end-to-end suites), all the
same way, with `channel_launcher.product`'s launcher (what `whatsapp-dev` runs too):

    with run_operator(kubeconfig, log_dir, namespace=ns, webhook_base_url=base) as op: ...
    with run_facade(kubeconfig, log_dir, namespace=ns, api_keys_file=f) as facade: ...
    with run_receiver(kubeconfig, log_dir, namespace=ns,
                      forward_url_template=sink.url_template) as receiver: ...

`kubeconfig` is whom it runs as (`cluster.kubeconfig`, the admin, or one of the chart's
service accounts from `tests.support.identities`); it logs to `log_dir` (`.log_path`; see
`log_dir(cluster)`); keywords are the fields of its settings class (the launcher's TypedDicts,
checked against the classes); `port` is where it listens on loopback (default: a free one).
It is ended by pid when the block leaves, whatever happens in between.

- The operator is live (/healthz) when the block starts. Its keys are in `keys_namespace`
  (WA_KEYS_NAMESPACE; it must exist), or without one in `namespace` itself (the single-
  namespace layout): ConfigMap `whatsapp-channels-sealing-public` there has its public key.
- The facade is alive (/healthz: it may have no apiserver to be ready with).
- The receiver is ready (its cache synced); it signs what it forwards with a fresh secret,
  gives up forwarding after 3 s and writes status at most once a second.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Unpack

from channel_launcher import product
from channel_launcher.product import FacadeEnv, OperatorEnv
from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import Service, running


def log_dir(cluster: Cluster) -> Path:
    """Where the processes of a test session log: beside the cluster's own logs."""
    return Path(cluster.state_dir) / "logs"


def start_operator(
    kubeconfig: Path, log_dir: Path, *, port: int | None = None, **settings: Unpack[OperatorEnv]
) -> Service:
    return product.start_operator(kubeconfig, log_dir, port=port, **settings)


@contextmanager
def run_operator(
    kubeconfig: Path, log_dir: Path, *, port: int | None = None, **settings: Unpack[OperatorEnv]
) -> Iterator[Service]:
    with running(start_operator(kubeconfig, log_dir, port=port, **settings)) as operator:
        yield operator


@contextmanager
def run_facade(
    kubeconfig: Path, log_dir: Path, *, port: int | None = None, **settings: Unpack[FacadeEnv]
) -> Iterator[Service]:
    started = product.start_facade(kubeconfig, log_dir, port=port, ready=False, **settings)
    with running(started) as facade:
        yield facade


@dataclass(frozen=True)
class RunningReceiver:
    url: str
    port: int
    forward_secret: bytes
    service: Service


@contextmanager
def run_receiver(
    kubeconfig: Path,
    log_dir: Path,
    *,
    port: int | None = None,
    namespace: str,
    forward_url_template: str,
    metrics_port: int | None = None,
) -> Iterator[RunningReceiver]:
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    forward_secret = secrets.token_hex(32).encode()
    secret_file = log_dir / f"receiver-forward-secret-{port}"
    secret_file.write_bytes(forward_secret + b"\n")
    secret_file.chmod(0o600)
    started = product.start_receiver(
        kubeconfig,
        log_dir,
        port=port,
        namespace=namespace,
        forward_url_template=forward_url_template,
        forward_secret_file=secret_file,
        forward_timeout_seconds=3,
        status_write_interval_seconds=1,
        metrics_port=metrics_port,
    )
    with running(started) as service:
        yield RunningReceiver(service.url, port, forward_secret, service)

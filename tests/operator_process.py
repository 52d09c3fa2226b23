"""Run the real operator as a subprocess against the test cluster (end-to-end suites).

    with run_operator(cluster, namespace, webhook_base_url="http://127.0.0.1:8082") as op:
        ...            # op.kill() SIGKILLs it (crash), op.stop() ends it gracefully

`namespace` must exist and the CRD be applied (the `namespace` and `crd` fixtures). The
operator reconciles the channels of that namespace and keeps its sealing keys in
`keys_namespace` (WA_KEYS_NAMESPACE; it must exist), or without one in `namespace`
itself (the single-namespace layout): read the public key from ConfigMap
`whatsapp-channels-sealing-public` there once the block starts.
`op.log_path` is its log (stdout and stderr), at `log_level` (e.g. "DEBUG") if given; with
`metrics_port`, its Prometheus metrics are at http://127.0.0.1:<metrics_port>/metrics.

The operator is live (its /healthz answers) when the block starts and is ended by pid when
it leaves, whatever happens in between.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from localkube import Cluster, product
from localkube.services import Service, running
from whatsapp_channel.settings import LogLevel


def start_operator(
    cluster: Cluster,
    namespace: str,
    webhook_base_url: str = "http://127.0.0.1:9",
    *,
    keys_namespace: str | None = None,
    log_level: LogLevel | None = None,
    metrics_port: int | None = None,
) -> Service:
    return product.start_operator(
        cluster.kubeconfig,
        cluster.state_dir / "logs",
        namespace=namespace,
        webhook_base_url=webhook_base_url,
        keys_namespace=keys_namespace,
        log_level=log_level,
        metrics_port=metrics_port,
    )


@contextmanager
def run_operator(
    cluster: Cluster,
    namespace: str,
    webhook_base_url: str = "http://127.0.0.1:9",
    *,
    keys_namespace: str | None = None,
    log_level: LogLevel | None = None,
    metrics_port: int | None = None,
) -> Iterator[Service]:
    started = start_operator(
        cluster,
        namespace,
        webhook_base_url,
        keys_namespace=keys_namespace,
        log_level=log_level,
        metrics_port=metrics_port,
    )
    with running(started) as service:
        yield service

"""Run the real operator as a subprocess against the test cluster (end-to-end suites).

    with run_operator(cluster, namespace, webhook_base_url="http://127.0.0.1:8082") as op:
        ...            # op.kill() SIGKILLs it (crash), op.stop() ends it gracefully

`namespace` must exist and the CRD be applied (the `namespace` and `crd` fixtures). The
operator reconciles the channels of that namespace and keeps its sealing keys in
`keys_namespace` (WA_OPERATOR_KEYS_NAMESPACE; it must exist), or without one in `namespace`
itself (the single-namespace layout): read the public key from ConfigMap
`whatsapp-channels-sealing-public` there once the block starts.
`op.log_path` is its log (stdout and stderr). `env` adds or overrides settings, e.g.
{"WA_OPERATOR_LOG_LEVEL": "DEBUG"}.

The operator is live (its /healthz answers) when the block starts and is ended by pid when
it leaves, whatever happens in between.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import Service, running, script, start_service


def start_operator(
    cluster: Cluster,
    namespace: str,
    webhook_base_url: str = "http://127.0.0.1:9",
    env: Mapping[str, str] | None = None,
    *,
    keys_namespace: str | None = None,
) -> Service:
    port = free_port()
    keys = {"WA_OPERATOR_KEYS_NAMESPACE": keys_namespace} if keys_namespace else {}
    return start_service(
        "whatsapp-operator",
        [script("whatsapp-operator")],
        env={
            "KUBECONFIG": str(cluster.kubeconfig),
            "WA_OPERATOR_NAMESPACE": namespace,
            "WA_OPERATOR_WEBHOOK_BASE_URL": webhook_base_url,
            "WA_OPERATOR_LIVENESS_HOST": "127.0.0.1",
            "WA_OPERATOR_LIVENESS_PORT": str(port),
            **keys,
            **(env or {}),
        },
        log_path=Path(cluster.state_dir) / "logs" / f"operator-{namespace}-{port}.log",
        health_url=f"http://127.0.0.1:{port}/healthz",
    )


@contextmanager
def run_operator(
    cluster: Cluster,
    namespace: str,
    webhook_base_url: str = "http://127.0.0.1:9",
    env: Mapping[str, str] | None = None,
    *,
    keys_namespace: str | None = None,
) -> Iterator[Service]:
    started = start_operator(
        cluster, namespace, webhook_base_url, env, keys_namespace=keys_namespace
    )
    with running(started) as service:
        yield service

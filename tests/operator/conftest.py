"""Fixtures the operator's real-cluster suites share: `meta_env` (a receiver for the test's
namespace and the Graph stand-in's settings for the operator, also kept in META_ENV for the
tests that start operators themselves), `operator` (the operator's console script on the
test's namespace, at DEBUG, so the no-secret-in-logs checks cover every level) and `kube`
(the product's client on the cluster).

`meta_env` is not autouse here: a suite that needs it for every test asks for it in an
autouse fixture of its own, so the in-memory suites beside them start nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from localkube import Cluster
from localkube.services import Service
from whatsapp_channel.kube import Kube

from tests.support.graph import shared_standin
from tests.support.processes import log_dir, run_operator, run_receiver

# Where each test's operator sends the webhook (a receiver of the test's namespace) and asks
# Meta (the session's Graph stand-in): set by the fixture `meta_env`.
META_ENV: dict[str, Any] = {}


@pytest.fixture
def meta_env(cluster: Cluster, namespace: str) -> Iterator[dict[str, Any]]:
    """A receiver for the test's namespace, which answers the stand-in's challenge when the
    operator registers a channel's webhook (managed, the default)."""
    with run_receiver(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        forward_url_template="http://127.0.0.1:9/{instance_id}",
    ) as receiver:
        META_ENV.clear()
        META_ENV.update(shared_standin().operator_env(receiver.url))
        yield META_ENV
        META_ENV.clear()


@pytest.fixture
def operator(
    cluster: Cluster, crd: Any, namespace: str, meta_env: dict[str, Any]
) -> Iterator[Service]:
    with run_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **meta_env,
        log_level="DEBUG",
    ) as service:
        yield service


@pytest.fixture
async def kube(cluster: Cluster) -> AsyncIterator[Kube]:
    client = Kube.connect(str(cluster.kubeconfig), user_agent="tests")
    yield client
    await client.close()

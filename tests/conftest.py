"""Fixtures shared by every suite: the real local control plane, started once per session.

Tests that need Kubernetes take `cluster` (and usually `namespace`); the cluster is built and
started on first use and stopped at the end of the session. It never skips: a test that
needs the control plane gets one or fails saying why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from channel_launcher.product import apply_crd
from localkube import Cluster

from tests.support.graph import StandinThread, shared_standin

# The fixtures that start a local control plane; a test that uses one (even through another
# fixture) is marked `cluster`, and `make unit` runs the tests that are not.
CLUSTER_FIXTURES = frozenset({"cluster", "node_cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster.start(tmp_path_factory.mktemp("localkube") / "cluster")
    # Anything the tests start (kubectl, helm, the product's processes) talks to this cluster.
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(started.kubeconfig)
    try:
        yield started
    finally:
        started.stop()
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> Path:
    """The WhatsAppChannel CRD applied and established."""
    return apply_crd(cluster)


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def keys_namespace(cluster: Cluster, namespace: str) -> Iterator[str]:
    """The operator's own namespace beside the channel namespace `namespace`: where its
    sealing keys live (WA_KEYS_NAMESPACE), out of the receiver's reach."""
    name = f"{namespace}-keys"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def graph_standin() -> StandinThread:
    """The Graph API stand-in the operator is pointed at (never the real Meta)."""
    return shared_standin()

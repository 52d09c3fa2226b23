"""The local cluster with a node (localkube.node): containerd, kubelet, kube-proxy and the
cluster DNS in a network namespace of its own, running the image built from the Dockerfile.
One per session, started on first use and stopped by the last node test
(test_node.py's `test_down_leaves_nothing_behind`); the rest of the suite keeps the node-less
`cluster`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from localkube import Cluster


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = Cluster.start(
        tmp_path_factory.mktemp("localkube-node") / "cluster", node=True, timeout=180
    )
    try:
        yield started
    finally:
        started.stop()

"""The rendered ServiceMonitors and PrometheusRule on the real apiserver, with the
prometheus-operator's own CRDs (from its Go module, the release pinned in
controlplane/go/prometheus-operator): accepted as they are, no field pruned as unknown."""

from __future__ import annotations

import json

import pytest
from localkube import Cluster
from localkube.build import prometheus_operator_crds

from tests.monitoring.conftest import MONITORING
from tests.support.chart import kubectl_json, render

KINDS = {"ServiceMonitor": "servicemonitors", "PrometheusRule": "prometheusrules"}


@pytest.fixture(scope="module")
def operator_crds(cluster: Cluster) -> None:
    folder = prometheus_operator_crds()
    for plural in KINDS.values():
        crd = folder / f"monitoring.coreos.com_{plural}.yaml"
        # Server-side: these CRDs are too large for kubectl's last-applied annotation.
        cluster.kubectl("apply", "--server-side", "-f", str(crd))
    for plural in KINDS.values():
        # Listable, so Established (`kubectl wait` errs on a CRD with no status yet).
        cluster.wait_until_served(plural, "default")


def test_the_apiserver_accepts_the_rendered_objects_whole(
    cluster: Cluster, operator_crds: None, namespace: str
) -> None:
    manifests = render(cluster, *MONITORING, namespace=namespace)
    monitoring = [m for m in manifests if m["kind"] in KINDS]
    assert sorted(m["kind"] for m in monitoring) == ["PrometheusRule", *["ServiceMonitor"] * 3]
    listed = {"kind": "List", "apiVersion": "v1", "items": monitoring}
    cluster.kubectl("create", "-f", "-", input=json.dumps(listed))
    for manifest in monitoring:
        name = manifest["metadata"]["name"]
        stored = kubectl_json(cluster, "get", KINDS[manifest["kind"]], name, "-n", namespace)
        # A structural schema drops fields it does not know: the spec comes back whole.
        assert stored["spec"] == manifest["spec"], name
        assert stored["metadata"]["labels"] == manifest["metadata"]["labels"]


def test_the_crds_validate_what_they_store(
    cluster: Cluster, operator_crds: None, namespace: str
) -> None:
    """What the test above proves is worth something: the CRDs refuse what is wrong."""
    manifests = render(cluster, *MONITORING, namespace=namespace)
    monitor = next(m for m in manifests if m["kind"] == "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scheme"] = "gopher"
    refused = cluster.kubectl("create", "-f", "-", input=json.dumps(monitor), check=False)
    assert refused.returncode != 0
    assert "spec.endpoints[0].scheme" in refused.stderr
    rule = next(m for m in manifests if m["kind"] == "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    refused = cluster.kubectl("create", "-f", "-", input=json.dumps(rule), check=False)
    assert refused.returncode != 0
    assert "spec.groups[0].rules[0].for" in refused.stderr

"""The dashboard's queries and the alert rules name only metrics the product exports: the
names are listed from the three processes' own /metrics, each run on the local control plane."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import httpx
import pytest
from localkube import Cluster
from localkube.cluster import free_port
from prometheus_client.parser import text_string_to_metric_families

from tests.monitoring.conftest import DASHBOARD, alerts, panel_queries, variable_metrics
from tests.support.chart import Manifest
from tests.support.facade_app import write_keys_file
from tests.support.processes import log_dir, run_facade, run_operator, run_receiver

# The sample names each metric type exposes beside its family name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}
# Series Prometheus itself makes for every target.
PROMETHEUS_MADE = {"up"}
# PromQL words that are neither a metric nor followed by "(".
KEYWORDS = {"and", "or", "unless", "bool", "offset"}
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"\{[^}]*\}|\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# An identifier not inside a number or a duration (5m, 1e3).
_NAME = re.compile(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label
    matchers, ranges and groupings are out, less functions (a name before "(") and keywords."""
    bare = _GROUPING.sub(" ", _BRACKETS.sub(" ", _STRINGS.sub('""', expr)))
    return {
        m.group()
        for m in _NAME.finditer(bare)
        if m.group() not in KEYWORDS and not bare[m.end() :].lstrip().startswith("(")
    }


def test_metric_names_reads_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(a_bucket{x="y{z}", le!="1"}[5m])))'
        ' / on (job) group_left (kind) b_total offset 5m > bool 0 unless absent(up{job="j"})'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "up"}


def exported(exposition: str) -> set[str]:
    return {
        family.name + suffix
        for family in text_string_to_metric_families(exposition)
        for suffix in SUFFIXES[family.type]
    }


@pytest.fixture(scope="module")
def product_metrics(
    cluster: Cluster, crd: Path, tmp_path_factory: pytest.TempPathFactory
) -> set[str]:
    """Every sample name the operator, the facade and the receiver serve at /metrics."""
    namespace = f"metrics-{free_port()}"
    cluster.kubectl("create", "namespace", namespace)
    folder = tmp_path_factory.mktemp("metrics")
    ports = {name: free_port() for name in ("operator", "facade", "receiver")}
    logs = log_dir(cluster)
    try:
        with (
            run_operator(
                cluster.kubeconfig, logs, namespace=namespace,
                webhook_base_url="https://hooks.example.com", metrics_port=ports["operator"],
            ),
            run_facade(
                cluster.kubeconfig, logs, namespace=namespace,
                api_keys_file=write_keys_file(folder / "api-keys").file,
                metrics_port=ports["facade"],
            ),
            run_receiver(
                cluster.kubeconfig, logs, namespace=namespace,
                forward_url_template="http://127.0.0.1:9/instances/{instance_id}",
                metrics_port=ports["receiver"],
            ),
        ):  # fmt: skip
            names: set[str] = set()
            for component, port in ports.items():
                answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
                assert answer.status_code == 200, component
                served = exported(answer.text)
                assert any(n.startswith(f"whatsapp_{component}_") for n in served), component
                names |= served
            return names
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def read(exprs: Iterable[str]) -> set[str]:
    return {name for expr in exprs for name in metric_names(expr)}


def test_the_dashboard_queries_only_exported_metrics(product_metrics: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    named = read(panel_queries(dashboard)) | set(variable_metrics(dashboard))
    # Every component has its panels.
    for component in ("operator", "facade", "receiver"):
        assert any(n.startswith(f"whatsapp_{component}_") for n in named), component
    assert named - product_metrics == set()


def test_the_alerts_query_only_exported_metrics(
    product_metrics: set[str], monitored: list[Manifest]
) -> None:
    named = read(rule["expr"] for rule in alerts(monitored))
    assert {n for n in named if n.startswith("whatsapp_")}
    assert named - product_metrics - PROMETHEUS_MADE == set()

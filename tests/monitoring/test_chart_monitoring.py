"""The chart's monitoring parts: off by default, each turned on by its own value; the
ServiceMonitors select exactly the metrics Services; the dashboard ConfigMap carries Grafana's
sidecar label and the dashboard file as it is."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from localkube import Cluster

from tests.monitoring.conftest import DASHBOARD, MONITORING, panel_queries
from tests.support.chart import (
    COMPONENTS,
    Manifest,
    component_name,
    one,
    render,
    render_fails,
)

MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule"}


def test_nothing_of_monitoring_is_rendered_by_default(cluster: Cluster) -> None:
    manifests = render(cluster)
    assert not [m for m in manifests if m["kind"] in MONITORING_KINDS]
    assert not [m for m in manifests if m["metadata"]["name"].endswith("-dashboard")]
    assert not [m for m in manifests if m["metadata"]["name"].endswith("-metrics")]


def test_each_part_is_turned_on_by_its_own_value(cluster: Cluster) -> None:
    monitors = render(cluster, "--set", "monitoring.serviceMonitor.enabled=true")
    assert (
        sorted(m["kind"] for m in monitors if m["kind"] in MONITORING_KINDS)
        == ["ServiceMonitor"] * 3
    )
    dashboard = render(cluster, "--set", "monitoring.dashboard.enabled=true")
    assert not [m for m in dashboard if m["kind"] in MONITORING_KINDS]
    one(dashboard, "ConfigMap", "-dashboard")


def test_each_service_monitor_selects_its_metrics_service_only(
    cluster: Cluster, monitored: list[Manifest]
) -> None:
    services = [m for m in monitored if m["kind"] == "Service"]
    for component in COMPONENTS:
        monitor = one(monitored, "ServiceMonitor", f"-{component}")
        assert monitor["metadata"]["namespace"] == "wa"
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["wa"]}
        wanted = monitor["spec"]["selector"]["matchLabels"].items()
        selected = [s for s in services if wanted <= s["metadata"]["labels"].items()]
        assert [s["metadata"]["name"] for s in selected] == [
            f"{component_name('wa', component)}-metrics"
        ]
        ports = {p["name"] for p in selected[0]["spec"]["ports"]}
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
        assert ports == {"metrics"}


def test_service_monitors_need_metrics(cluster: Cluster) -> None:
    refused = render_fails(
        cluster, "--set", "monitoring.serviceMonitor.enabled=true,metrics.enabled=false"
    )
    assert "monitoring.serviceMonitor.enabled needs metrics.enabled" in refused


def test_the_dashboard_config_map_is_what_grafanas_sidecar_loads(
    cluster: Cluster, monitored: list[Manifest]
) -> None:
    config_map = one(monitored, "ConfigMap", "-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == "wa"
    ((name, text),) = config_map["data"].items()
    assert name.endswith(".json")
    assert json.loads(text) == json.loads(DASHBOARD.read_text())

    elsewhere = render(
        cluster, *MONITORING, "--set", "monitoring.dashboard.namespace=grafana",
        "--set", "monitoring.dashboard.labels.dashboards=whatsapp",
        "--set-string", "monitoring.dashboard.annotations.grafana_folder=WhatsApp",
    )  # fmt: skip
    moved = one(elsewhere, "ConfigMap", "-dashboard")
    assert moved["metadata"]["namespace"] == "grafana"
    assert moved["metadata"]["labels"]["dashboards"] == "whatsapp"
    assert moved["metadata"]["annotations"] == {"grafana_folder": "WhatsApp"}


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("monitoring.bogus=1", "additional properties"),
        ("monitoring.serviceMonitor.bogus=1", "additional properties"),
        ("monitoring.serviceMonitor.interval=30 seconds", "interval"),
        ("monitoring.prometheusRule.runbookUrl=docs/monitoring.md", "runbookUrl"),
        ("monitoring.dashboard.namespace=Not_A_Namespace", "namespace"),
    ],
)
def test_the_schema_refuses_unknown_monitoring_keys_and_bad_values(
    cluster: Cluster, setting: str, complaint: str
) -> None:
    refused = render_fails(cluster, "--set", setting)
    assert "schema" in refused
    assert complaint in refused


def test_the_panel_queries_are_promql(promtool: Path) -> None:
    """Each panel's query parses (promtool's PromQL parser), Grafana's variables filled in."""
    exprs = panel_queries(json.loads(DASHBOARD.read_text()))
    assert exprs
    for expr in exprs:
        filled = expr.replace("$__rate_interval", "2m").replace("$namespace", "wa")
        parsed = subprocess.run(
            [str(promtool), "--experimental", "promql", "format", filled],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert parsed.returncode == 0, f"{expr}: {parsed.stderr}"

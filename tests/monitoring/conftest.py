"""The chart's monitoring (charts/whatsapp-channels/templates/monitoring) rendered for the
tests: release "wa" in namespace "wa", every part on, runbooks at RUNBOOK."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from localkube import Cluster
from localkube.build import ensure_promtool

from tests.support.chart import REPO, Manifest, one, render

RUNBOOK = "https://docs.example.com/whatsapp-channels/monitoring.md"
MONITORING = (
    "--set",
    "monitoring.serviceMonitor.enabled=true,monitoring.prometheusRule.enabled=true,"
    f"monitoring.prometheusRule.runbookUrl={RUNBOOK},monitoring.dashboard.enabled=true",
)
DOCS = REPO / "docs" / "monitoring.md"
# A Grafana variable query: label_values(<metric>, <label>).
_LABEL_VALUES = re.compile(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,")
DASHBOARD = (
    REPO / "charts" / "whatsapp-channels" / "files" / "dashboards" / "whatsapp-channels.json"
)


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool built from the pin in controlplane/go/promtool (a cache hit after `make build`)."""
    return ensure_promtool()


@pytest.fixture(scope="module")
def monitored(cluster: Cluster) -> list[Manifest]:
    return render(cluster, *MONITORING)


def rule_spec(manifests: list[Manifest]) -> dict[str, Any]:
    """The PrometheusRule's spec: `groups`, the format of a Prometheus rule file."""
    spec: dict[str, Any] = one(manifests, "PrometheusRule")["spec"]
    return spec


def alerts(manifests: list[Manifest]) -> list[dict[str, Any]]:
    return [rule for group in rule_spec(manifests)["groups"] for rule in group["rules"]]


def panel_queries(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of every panel of a Grafana dashboard."""
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def variable_metrics(dashboard: dict[str, Any]) -> Iterator[str]:
    """The metric of each dashboard variable's label_values() query."""
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            yield from _LABEL_VALUES.findall(query["query"])

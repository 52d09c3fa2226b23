"""The chart's alert rules checked by Prometheus' own promtool (built from its Go module):
`check rules` accepts them, the alert unit tests in alerts_test.yaml pass, and every alert
has a runbook section in docs/monitoring.md that its runbook_url points at."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from localkube import Cluster

from tests.monitoring.conftest import DOCS, MONITORING, RUNBOOK, alerts, rule_spec
from tests.support.chart import Manifest, render, render_fails

UNIT_TESTS = Path(__file__).with_name("alerts_test.yaml")


def promtool_run(promtool: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def write_rules(folder: Path, spec: dict[str, Any], *, annotations: bool = True) -> Path:
    """The rule file promtool reads (alerts_test.yaml names it rules.yaml), with the unit
    tests beside it. The unit tests say when each alert fires and with which labels; its
    annotations are checked below (test_every_alert_has_its_runbook_section_in_the_docs)."""
    shutil.copy(UNIT_TESTS, folder / UNIT_TESTS.name)
    spec = copy.deepcopy(spec)
    if not annotations:
        for group in spec["groups"]:
            for rule in group["rules"]:
                del rule["annotations"]
    rules = folder / "rules.yaml"
    rules.write_text(yaml.safe_dump(spec, sort_keys=False))
    return rules


def test_promtool_checks_the_rendered_rules(
    promtool: Path, monitored: list[Manifest], tmp_path: Path
) -> None:
    write_rules(tmp_path, rule_spec(monitored))
    checked = promtool_run(
        promtool, "check", "rules", "--lint=all", "--lint-fatal", "rules.yaml", cwd=tmp_path
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts(monitored))} rules found" in checked.stdout


def test_promtool_check_refuses_a_broken_expression(promtool: Path, tmp_path: Path) -> None:
    broken = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "sum(rate(x[5m])"}]}]}
    write_rules(tmp_path, broken)
    checked = promtool_run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode != 0
    assert "unclosed left parenthesis" in checked.stdout + checked.stderr


def test_the_alert_unit_tests_pass(
    promtool: Path, monitored: list[Manifest], tmp_path: Path
) -> None:
    write_rules(tmp_path, rule_spec(monitored), annotations=False)
    tested = promtool_run(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_is_unit_tested_firing(monitored: list[Manifest]) -> None:
    tests = yaml.safe_load(UNIT_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert firing == {rule["alert"] for rule in alerts(monitored)}


def test_the_unit_tests_fail_when_an_alert_is_missing(
    promtool: Path, monitored: list[Manifest], tmp_path: Path
) -> None:
    """The unit tests can fail: without WhatsAppNumberBlocked, its expected alert is missed."""
    spec = copy.deepcopy(rule_spec(monitored))
    for group in spec["groups"]:
        group["rules"] = [r for r in group["rules"] if r["alert"] != "WhatsAppNumberBlocked"]
    write_rules(tmp_path, spec, annotations=False)
    tested = promtool_run(promtool, "test", "rules", UNIT_TESTS.name, cwd=tmp_path)
    assert tested.returncode != 0
    assert "WhatsAppNumberBlocked" in tested.stdout + tested.stderr


def test_every_alert_has_its_runbook_section_in_the_docs(monitored: list[Manifest]) -> None:
    documented = set(re.findall(r"^### (WhatsApp\w+)$", DOCS.read_text(), re.MULTILINE))
    names = {rule["alert"] for rule in alerts(monitored)}
    assert documented == names
    for rule in alerts(monitored):
        annotations = rule["annotations"]
        # GitHub's anchor of "### WhatsAppOperatorDown" is #whatsappoperatordown.
        assert annotations["runbook_url"] == f"{RUNBOOK}#{rule['alert'].lower()}"
        assert annotations["summary"]
        assert annotations["description"]
        assert rule["labels"]["severity"] in {"critical", "warning"}


def test_the_rules_select_the_release_and_follow_the_health_period(cluster: Cluster) -> None:
    manifests = render(
        cluster, *MONITORING, "--set", "operator.healthPeriodSeconds=600",
        release="other", namespace="elsewhere",
    )  # fmt: skip
    exprs = "\n".join(rule["expr"] for rule in alerts(manifests))
    assert 'job="other-whatsapp-channels-operator-metrics", namespace="elsewhere"' in exprs
    assert 'job="other-whatsapp-channels-receiver-metrics", namespace="elsewhere"' in exprs
    assert "[1200s]" in exprs
    assert "[7200s]" not in exprs


def test_the_rules_need_a_runbook_url(cluster: Cluster) -> None:
    refused = render_fails(cluster, "--set", "monitoring.prometheusRule.enabled=true")
    assert "monitoring.prometheusRule.runbookUrl is required" in refused

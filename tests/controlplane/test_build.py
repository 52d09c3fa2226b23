"""localkube.build: helm is built as Helm's release builds are, stamped with the Kubernetes
version its client-go is for, so `helm template` without a cluster or --kube-version assumes
the control plane's own Kubernetes, not 1.20 (which the chart's kubeVersion refuses)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from localkube.build import GO_DIR, ensure_built, helm_default_kube_version, pinned_version

from tests.support.chart import CHART, TEST_VALUES

pytestmark = pytest.mark.cluster  # builds the control plane's helm (once per pin)


def helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    helm = ensure_built().helm
    return subprocess.run([str(helm), "template", *args], capture_output=True, text=True)


def test_helm_assumes_the_kubernetes_its_client_go_is_for(tmp_path: Path) -> None:
    chart = tmp_path / "probe"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: probe\nversion: 0.1.0\n")
    (chart / "templates" / "kube.yaml").write_text(
        "kind: Probe\nversion: {{ .Capabilities.KubeVersion.Version | quote }}\n"
    )
    result = helm_template("probe", str(chart))
    assert result.returncode == 0, result.stderr
    major, minor = helm_default_kube_version(GO_DIR / "helm")
    assert yaml.safe_load(result.stdout.split("---", 2)[-1])["version"] == f"v{major}.{minor}.0"
    # ...which is the minor of the kube-apiserver the project builds and tests against.
    kubernetes = pinned_version(GO_DIR / "kube", "k8s.io/kubernetes").lstrip("v").split(".")
    assert [major, minor] == kubernetes[:2]


def test_the_chart_renders_without_a_kube_version() -> None:
    result = helm_template("wa", str(CHART), "-f", str(TEST_VALUES))
    assert result.returncode == 0, result.stderr
    assert "kind: Deployment" in result.stdout

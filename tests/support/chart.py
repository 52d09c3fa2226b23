"""The chart as the tests use it: render it, install it, and act as its service accounts
(`kubectl auth can-i`; a kubeconfig holding one of their tokens is
`localkube.cluster.service_account_kubeconfig`; the chart's identities for the end-to-end
suites are `tests.support.identities`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from localkube import Cluster
from whatsapp_channel.model import GROUP, PLURAL

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "whatsapp-channels"
TEST_VALUES = CHART / "ci" / "test-values.yaml"
CRD_NAME = f"{PLURAL}.{GROUP}"
# `helm template` without a cluster assumes an old Kubernetes; say which one we target.
KUBE_VERSION = "1.34.0"
COMPONENTS = ("operator", "facade", "receiver")

Manifest = dict[str, Any]


def render(
    cluster: Cluster, *args: str, release: str = "wa", namespace: str = "wa"
) -> list[Manifest]:
    """`helm template` with the test values (plus `args`), as a list of objects."""
    result = cluster.helm(
        "template", release, str(CHART), "-n", namespace, "--kube-version", KUBE_VERSION,
        "-f", str(TEST_VALUES), *args,
    )  # fmt: skip
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(manifests: Iterable[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    found = [
        m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)
    ]
    assert len(found) == 1, f"{kind} *{name_suffix}: {[m['metadata']['name'] for m in found]}"
    return found[0]


def component_name(release: str, component: str) -> str:
    return f"{release}-whatsapp-channels-{component}"


def kubectl_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def adopt_crd(cluster: Cluster, release: str, namespace: str) -> None:
    """Let `release` take over a CRD applied before with kubectl (Helm's adoption rule:
    its ownership annotations and label); nothing to do when there is none yet."""
    if cluster.kubectl("get", "crd", CRD_NAME, check=False).returncode != 0:
        return
    cluster.kubectl(
        "annotate", "crd", CRD_NAME, "--overwrite",
        f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
    )  # fmt: skip
    cluster.kubectl("label", "crd", CRD_NAME, "--overwrite", "app.kubernetes.io/managed-by=Helm")


def install(cluster: Cluster, release: str, namespace: str, *args: str) -> str:
    """`helm install` with the test values plus `args`; its output (NOTES included)."""
    return cluster.helm(
        "install", release, str(CHART), "-n", namespace, "-f", str(TEST_VALUES), *args
    ).stdout


def service_account(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def can_i(
    cluster: Cluster,
    who: str,
    verb: str,
    resource: str,
    namespace: str | None,
    subresource: str | None = None,
) -> bool:
    """`kubectl auth can-i` as `who`; `resource` may be `<plural>/<name>`; namespace None
    asks across all namespaces."""
    where = ["--all-namespaces"] if namespace is None else ["-n", namespace]
    if subresource is not None:
        where.append(f"--subresource={subresource}")
    result = cluster.kubectl("auth", "can-i", verb, resource, *where, f"--as={who}", check=False)
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, f"can-i {verb} {resource}: {answer} {result.stderr}"
    return answer == "yes"


# What every authenticated user may do (system:basic-user and friends): not the chart's doing.
BASELINE_RESOURCES = {
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
}


def granted(cluster: Cluster, who: str, namespace: str) -> set[tuple[str, str, str]]:
    """Every (resource, resource name, verb) `who` may use in `namespace`, from
    `kubectl auth can-i --list`, less what every authenticated user may do."""
    listing = cluster.kubectl(
        "auth", "can-i", "--list", "--no-headers", "-n", namespace, f"--as={who}"
    ).stdout
    rules: set[tuple[str, str, str]] = set()
    for line in listing.splitlines():
        # Resources  Non-Resource URLs  Resource Names  Verbs, e.g.
        # secrets    []                 []              [list watch]
        fields = line.split("[")
        resource = fields[0].strip()
        if not resource or resource in BASELINE_RESOURCES:
            continue  # a non-resource URL (/api, /healthz, ...) or the baseline
        names = fields[2].split("]")[0].split()
        verbs = fields[3].split("]")[0].split()
        for verb in verbs:
            for name in names or [""]:
                rules.add((resource, name, verb))
    return rules

"""`helm install`, `helm upgrade` and `helm uninstall` of the chart on the real control plane
(no kubelet here, so pods never run: the objects are what is checked), and its RBAC asked
of the apiserver as each of the chart's service accounts.

One release for the module, in the default layout (the channels in a namespace the chart
creates, the keys in the release namespace), installed with the CRD (taking over the one
earlier suites applied with kubectl, as Helm allows); the last test uninstalls it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from localkube import Cluster
from whatsapp_channel.model import GROUP, PLURAL, SEALING_KEYS_SECRET, SEALING_PUBLIC_CONFIGMAP

from tests.support.chart import (
    CHART,
    COMPONENTS,
    CRD_NAME,
    adopt_crd,
    can_i,
    component_name,
    granted,
    install,
    kubectl_json,
    service_account,
)

CHANNELS = f"{PLURAL}.{GROUP}"
STATUS = f"{PLURAL}.{GROUP}/status"  # as `kubectl auth can-i --list` names it
PUBLIC_KEY = f"configmaps/{SEALING_PUBLIC_CONFIGMAP}"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
TENANT = "497f6eca-6276-4993-bfeb-53cbbbba6f08"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    channels: str  # the channel namespace the chart created
    other_namespace: str
    notes: str

    def account(self, component: str) -> str:
        return service_account(self.namespace, component_name(self.name, component))

    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name}"


@pytest.fixture(scope="module")
def release(cluster: Cluster) -> Iterator[Release]:
    suffix = uuid.uuid4().hex[:8]
    namespace, other = f"wa-install-{suffix}", f"wa-other-{suffix}"
    for ns in (namespace, other):
        cluster.kubectl("create", "namespace", ns)
    name = f"wa{suffix}"
    adopt_crd(cluster, name, namespace)
    notes = install(cluster, name, namespace)
    channels = f"{namespace}-channels"
    yield Release(name, namespace, channels, other, notes)
    cluster.helm("uninstall", name, "-n", namespace, check=False)
    for ns in (namespace, channels, other):  # the channel namespace outlives the release
        cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def names(cluster: Cluster, kind: str, release: Release, namespace: str | None = None) -> set[str]:
    listing = kubectl_json(
        cluster, "get", kind, "-n", namespace or release.namespace, "-l", release.selector()
    )
    return {item["metadata"]["name"] for item in listing["items"]}


def test_install_creates_the_crd_and_every_component(cluster: Cluster, release: Release) -> None:
    expected = {component_name(release.name, c) for c in COMPONENTS}
    assert names(cluster, "deployments", release) == expected
    assert names(cluster, "serviceaccounts", release) == expected
    assert names(cluster, "roles", release, release.channels) == expected
    assert names(cluster, "rolebindings", release, release.channels) == expected
    in_home = {component_name(release.name, r) for r in ("operator-keys", "facade-sealing-key")}
    assert names(cluster, "roles", release) == in_home
    assert names(cluster, "rolebindings", release) == in_home
    channels = kubectl_json(cluster, "get", "namespace", release.channels)
    assert channels["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert channels["metadata"]["annotations"]["meta.helm.sh/release-name"] == release.name
    assert names(cluster, "services", release) == {
        component_name(release.name, c) for c in ("facade", "receiver")
    }
    assert names(cluster, "secrets", release) == {
        component_name(release.name, "api-keys"),
        component_name(release.name, "forward-secret"),
    }
    crd = kubectl_json(cluster, "get", "crd", CRD_NAME)
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release.name
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")

    operator = kubectl_json(
        cluster, "get", "deployment", component_name(release.name, "operator"),
        "-n", release.namespace,
    )  # fmt: skip
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["strategy"]["type"] == "RollingUpdate"
    assert names(cluster, "poddisruptionbudgets", release) == expected
    status = cluster.helm("status", release.name, "-n", release.namespace).stdout
    assert "STATUS: deployed" in status


def test_the_notes_say_how_to_reach_the_api(release: Release) -> None:
    facade = component_name(release.name, "facade")
    assert f"kubectl -n {release.namespace} port-forward svc/{facade} 8080:80" in release.notes
    assert f"get secret {component_name(release.name, 'api-keys')}" in release.notes
    assert "https://hooks.example.com/hooks/whatsapp/<instance id>" in release.notes
    assert f"its channels live in namespace {release.channels}" in release.notes
    assert f"kubectl -n {release.channels} get whatsappchannels" in release.notes
    assert f"--keys-namespace {release.namespace}" in release.notes


# --- RBAC, asked of the apiserver as each service account -------------------------------------


CHART_SECRETS = ("api-keys", "forward-secret")


def test_the_facade_cannot_read_secrets(cluster: Cluster, release: Release) -> None:
    facade = release.account("facade")
    for ns in (release.namespace, release.channels):
        for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
            assert not can_i(cluster, facade, verb, "secrets", ns), (verb, ns)
        # Nor by a detour: a pod mounting one, a token for another account.
        assert not can_i(cluster, facade, "create", "pods", ns)
        assert not can_i(cluster, facade, "create", "serviceaccounts/token", ns)
        assert not can_i(cluster, facade, "list", "configmaps", ns)
    # What it needs: channels, and the one ConfigMap with the sealing public key (read only).
    for verb in ("get", "list", "watch", "create", "update", "delete"):
        assert can_i(cluster, facade, verb, CHANNELS, release.channels), verb
        assert not can_i(cluster, facade, verb, CHANNELS, release.namespace), verb
    assert can_i(cluster, facade, "get", PUBLIC_KEY, release.namespace)
    assert not can_i(cluster, facade, "update", PUBLIC_KEY, release.namespace)
    assert not can_i(cluster, facade, "get", "configmaps/anything-else", release.namespace)
    assert not can_i(cluster, facade, "patch", CHANNELS, release.channels, "status")


def test_the_receiver_cannot_read_the_sealing_keys_the_api_keys_or_the_forward_secret(
    cluster: Cluster, release: Release
) -> None:
    """The receiver faces the internet and may read every Secret of the channel namespace;
    every other secret of the product is in the release namespace, where it may do nothing."""
    receiver, home = release.account("receiver"), release.namespace
    assert granted(cluster, receiver, home) == set()
    secrets = [SEALING_KEYS_SECRET, *(component_name(release.name, s) for s in CHART_SECRETS)]
    for secret in secrets:
        for verb in ("get", "list", "watch"):
            assert not can_i(cluster, receiver, verb, f"secrets/{secret}", home), (verb, secret)
    assert not can_i(cluster, receiver, "list", "secrets", home)
    assert not can_i(cluster, receiver, "list", "secrets", None)  # nor across namespaces
    assert not can_i(cluster, receiver, "get", PUBLIC_KEY, home)
    # Where it does read Secrets, none of those is: the chart put them in the release namespace
    # and the operator its keys (tests/install/test_flow.py runs it).
    assert can_i(cluster, receiver, "list", "secrets", release.channels)
    listing = kubectl_json(cluster, "get", "secrets", "-n", release.channels)
    assert listing["items"] == []
    assert names(cluster, "secrets", release) == {
        component_name(release.name, s) for s in CHART_SECRETS
    }


def test_the_receiver_can_write_nothing_but_channel_status(
    cluster: Cluster, release: Release
) -> None:
    receiver, channels = release.account("receiver"), release.channels
    rules = granted(cluster, receiver, channels)
    assert rules == {
        ("secrets", "", "list"),
        ("secrets", "", "watch"),
        (STATUS, "", "patch"),
    }
    for ns in (channels, release.namespace):
        for resource in ("secrets", "configmaps", CHANNELS, "events", "pods", "deployments"):
            for verb in WRITE_VERBS:
                assert not can_i(cluster, receiver, verb, resource, ns), (verb, resource, ns)
    assert can_i(cluster, receiver, "patch", CHANNELS, channels, "status")
    assert not can_i(cluster, receiver, "update", CHANNELS, channels, "status")


def test_each_account_has_exactly_its_roles_grant(cluster: Cluster, release: Release) -> None:
    """What the apiserver says each may do in each namespace, rule by rule."""
    facade, operator = release.account("facade"), release.account("operator")
    assert granted(cluster, facade, release.channels) == {
        *((CHANNELS, "", v) for v in ("get", "list", "watch", "create", "update", "delete")),
    }
    assert granted(cluster, facade, release.namespace) == {
        ("configmaps", SEALING_PUBLIC_CONFIGMAP, "get"),
    }
    assert granted(cluster, operator, release.channels) == {
        *((CHANNELS, "", v) for v in ("get", "list", "watch", "patch")),
        (STATUS, "", "patch"),
        *(("secrets", "", v) for v in ("get", "list", "watch", "create", "update", "delete")),
        ("events", "", "create"),
    }
    lease = component_name(release.name, "operator")
    assert granted(cluster, operator, release.namespace) == {
        ("secrets", "", "create"),
        *(("secrets", SEALING_KEYS_SECRET, v) for v in ("get", "update", "list", "watch")),
        ("configmaps", "", "create"),
        *(("configmaps", SEALING_PUBLIC_CONFIGMAP, v) for v in ("get", "update", "list", "watch")),
        ("leases.coordination.k8s.io", "", "create"),
        ("leases.coordination.k8s.io", lease, "get"),
        ("leases.coordination.k8s.io", lease, "update"),
    }
    # The one Lease, by name: no other Lease of the namespace can be read or taken over.
    assert can_i(cluster, operator, "update", f"leases/{lease}", release.namespace)
    assert not can_i(cluster, operator, "update", "leases/another", release.namespace)
    assert not can_i(cluster, operator, "get", "leases/another", release.namespace)
    # The operator cannot read the chart's own Secrets either.
    for secret in CHART_SECRETS:
        name = component_name(release.name, secret)
        assert not can_i(cluster, operator, "get", f"secrets/{name}", release.namespace)


def test_the_operator_is_confined_to_its_namespaces(cluster: Cluster, release: Release) -> None:
    operator, other = release.account("operator"), release.other_namespace
    assert can_i(cluster, operator, "create", "secrets", release.channels)
    assert can_i(cluster, operator, "patch", CHANNELS, release.channels, "status")
    assert can_i(cluster, operator, "get", f"secrets/{SEALING_KEYS_SECRET}", release.namespace)
    # Another namespace: nothing at all.
    assert granted(cluster, operator, other) == set()
    for verb in ("get", "list", "watch", "create", "update", "patch", "delete"):
        for resource in ("secrets", "configmaps", CHANNELS, "events"):
            assert not can_i(cluster, operator, verb, resource, other), (verb, resource)
        assert not can_i(cluster, operator, verb, CHANNELS, other, "status"), verb
    # Nor across namespaces, nor cluster-wide objects.
    for verb, resource in (
        ("list", "secrets"),
        ("watch", CHANNELS),
        ("list", "namespaces"),
        ("create", "namespaces"),
        ("update", "customresourcedefinitions"),
        ("create", "clusterrolebindings"),
    ):
        assert not can_i(cluster, operator, verb, resource, None), (verb, resource)


def test_a_pre_created_channel_namespace_gets_the_roles(cluster: Cluster) -> None:
    """channelNamespace.create=false: the namespace exists (made by whoever may), the chart
    only puts its Roles there, and the release namespace stays closed to the receiver."""
    suffix = uuid.uuid4().hex[:8]
    home, channels = f"wa-home-{suffix}", f"wa-tenants-{suffix}"
    for ns in (home, channels):
        cluster.kubectl("create", "namespace", ns)
    name = f"wa{suffix}"
    try:
        install(
            cluster, name, home, "--set", "crds.enabled=false",
            "--set", f"channelNamespace.name={channels},channelNamespace.create=false",
        )  # fmt: skip
        accounts = {c: service_account(home, component_name(name, c)) for c in COMPONENTS}
        assert granted(cluster, accounts["receiver"], home) == set()
        assert not can_i(cluster, accounts["receiver"], "list", "secrets", home)
        assert can_i(cluster, accounts["receiver"], "list", "secrets", channels)
        assert can_i(cluster, accounts["facade"], "create", CHANNELS, channels)
        assert can_i(cluster, accounts["operator"], "create", "secrets", channels)
        assert can_i(cluster, accounts["operator"], "get", f"secrets/{SEALING_KEYS_SECRET}", home)
        namespace = kubectl_json(cluster, "get", "namespace", channels)
        assert "meta.helm.sh/release-name" not in (namespace["metadata"].get("annotations") or {})
    finally:
        cluster.helm("uninstall", name, "-n", home, check=False)
        for ns in (home, channels):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# --- upgrade, then uninstall -------------------------------------------------------------------


def _secret_data(cluster: Cluster, release: Release, what: str) -> dict[str, str]:
    secret = kubectl_json(
        cluster, "get", "secret", component_name(release.name, what), "-n", release.namespace
    )
    data: dict[str, str] = secret["data"]
    return data


def test_upgrade_changes_what_was_asked_and_keeps_generated_secrets(
    cluster: Cluster, release: Release
) -> None:
    keys = _secret_data(cluster, release, "api-keys")
    forward = _secret_data(cluster, release, "forward-secret")
    facade = component_name(release.name, "facade")
    before = kubectl_json(cluster, "get", "deployment", facade, "-n", release.namespace)

    cluster.helm(
        "upgrade", release.name, str(CHART), "-n", release.namespace,
        "--reuse-values", "--set", "facade.replicas=3", "--set", "facade.readyWaitSeconds=9",
    )  # fmt: skip

    after = kubectl_json(cluster, "get", "deployment", facade, "-n", release.namespace)
    assert after["spec"]["replicas"] == 3
    env = {e["name"]: e["value"] for e in after["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WA_FACADE_READY_WAIT_SECONDS"] == "9"
    assert after["spec"]["selector"] == before["spec"]["selector"]
    # The generated API key and forwarding key survive the upgrade (Helm's lookup).
    assert _secret_data(cluster, release, "api-keys") == keys
    assert _secret_data(cluster, release, "forward-secret") == forward
    history = cluster.helm("history", release.name, "-n", release.namespace).stdout
    assert "deployed" in history.splitlines()[-1]
    assert len(history.strip().splitlines()) == 3  # header + two revisions


def test_uninstall_removes_the_release_and_keeps_the_crd(
    cluster: Cluster, release: Release
) -> None:
    # A channel, as a tenant's would be (the operator is not running: no finalizer to wait for).
    channel = {
        "apiVersion": f"{GROUP}/v1alpha1", "kind": "WhatsAppChannel",
        "metadata": {"name": TENANT, "namespace": release.channels},
        "spec": {"instanceId": TENANT, "phoneNumberId": "106540352242922",
                 "secretRef": {"name": "tenant-credentials"}},
    }  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input=json.dumps(channel))
    output = cluster.helm("uninstall", release.name, "-n", release.namespace).stdout
    assert "kept due to the resource policy" in output
    for kind in ("deployments", "services", "serviceaccounts", "roles", "rolebindings", "secrets"):
        assert names(cluster, kind, release) == set(), kind
        assert names(cluster, kind, release, release.channels) == set(), kind
    # The CRD and the channel namespace stay, and with them every channel.
    crd = kubectl_json(cluster, "get", "crd", CRD_NAME)
    assert crd["metadata"].get("deletionTimestamp") is None
    namespace = kubectl_json(cluster, "get", "namespace", release.channels)
    assert namespace["metadata"].get("deletionTimestamp") is None
    assert kubectl_json(cluster, "get", PLURAL, TENANT, "-n", release.channels)
    cluster.wait_until_served(PLURAL, release.namespace)


def test_installing_the_release_again_adopts_the_kept_channel_namespace(
    cluster: Cluster, release: Release
) -> None:
    install(cluster, release.name, release.namespace, "--set", "crds.enabled=false")
    assert names(cluster, "roles", release, release.channels) == {
        component_name(release.name, c) for c in COMPONENTS
    }
    assert kubectl_json(cluster, "get", PLURAL, TENANT, "-n", release.channels)
    cluster.helm("uninstall", release.name, "-n", release.namespace)

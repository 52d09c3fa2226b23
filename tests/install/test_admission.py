"""The chart's ValidatingAdmissionPolicies on the real apiserver (issue 13, item 12): each
attack is made with a token of the component's own chart ServiceAccount, as a compromised
process would make it, and refused by the apiserver; what the component really writes
passes. RBAC alone allowed every one of these attacks.

  operator  may create Secrets (a Role cannot name what is created): it must not mint a
            service-account token, nor write any Secret or ConfigMap but its own.
  receiver  may patch channel status: it must not forge observedGeneration or conditions
            (which make a channel look reconciled and Ready), only its two timestamps."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from channel_operator.desired import ChannelRef, Credentials, build_secret
from channel_operator.keystore import build_keys_secret, build_public_configmap, new_keyring
from localkube import Cluster
from localkube.cluster import service_account_kubeconfig
from whatsapp_channel.channel_secret import secret_name
from whatsapp_channel.kube import Forbidden, Kube, KubeError, channels_path, core_path
from whatsapp_channel.model import (
    API_VERSION,
    KIND,
    SEALING_KEYS_SECRET,
    SEALING_PUBLIC_CONFIGMAP,
    ChannelSpec,
)

from tests.support.chart import CHART, TEST_VALUES, component_name, install, kubectl_json, render

RELEASE = "adm"
TIMEOUT = 60.0
DRY_RUN = {"dryRun": "All"}
SA_TOKEN = "kubernetes.io/service-account-token"


@dataclass(frozen=True)
class Release:
    home: str  # the release namespace: the keys
    channels: str
    folder: Path

    def policy(self, name: str) -> str:
        return f"{RELEASE}-whatsapp-channels-{self.home}-{name}"


@pytest.fixture(scope="module")
def release(
    cluster: Cluster, crd: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    home = f"wa-adm-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", home)
    try:
        install(cluster, RELEASE, home, "--set", "crds.enabled=false")
        yield Release(home, f"{home}-channels", Path(tmp_path_factory.mktemp("admission")))
    finally:
        cluster.helm("uninstall", RELEASE, "-n", home, check=False)
        for ns in (home, f"{home}-channels"):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture
async def as_component(cluster: Cluster, release: Release) -> AsyncIterator[dict[str, Kube]]:
    """A client per component holding a token of that component's chart ServiceAccount."""
    for component in ("operator", "receiver"):
        (release.folder / component).mkdir(exist_ok=True)
    clients = {
        component: Kube.connect(
            str(
                service_account_kubeconfig(
                    cluster,
                    release.home,
                    component_name(RELEASE, component),
                    release.folder / component,
                )
            ),
            user_agent=f"test-admission-{component}",
        )
        for component in ("operator", "receiver")
    }
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.close()


def refused_by(policy: str, exc: KubeError) -> bool:
    return (
        isinstance(exc, Forbidden)
        and "ValidatingAdmissionPolicy" in exc.message
        and (policy in exc.message)
    )


async def until_enforced(policy: str, attempt: Any) -> None:
    """Wait until the apiserver enforces `policy` (it loads new policies within a second or
    so), probing with a dry run that only the policy refuses."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            await attempt()
        except KubeError as exc:
            if refused_by(policy, exc):
                return
            raise
        assert time.monotonic() < deadline, f"{policy} is not enforced"
        await asyncio.sleep(0.2)


def secret(namespace: str, name: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, **extra.pop("metadata", {})},
        **extra,
    }


def token_secret(namespace: str, name: str, account: str) -> dict[str, Any]:
    return secret(
        namespace,
        name,
        type=SA_TOKEN,
        metadata={"annotations": {"kubernetes.io/service-account.name": account}},
    )


# --- the operator -------------------------------------------------------------------------


async def test_the_operator_cannot_mint_a_service_account_token(
    cluster: Cluster, release: Release, as_component: dict[str, Kube]
) -> None:
    operator, policy = as_component["operator"], release.policy("operator-writes")
    receiver_account = component_name(RELEASE, "receiver")
    await until_enforced(
        policy,
        lambda: operator.request(
            "POST",
            core_path("secrets", release.home),
            body=token_secret(release.home, "probe", receiver_account),
            params=DRY_RUN,
        ),
    )
    for namespace, name, account in (
        # The receiver's token would list every channel Secret; the default account's too.
        (release.home, "stolen-receiver-token", receiver_account),
        # Even under the one name it may write there.
        (release.home, SEALING_KEYS_SECRET, receiver_account),
        (release.channels, secret_name(str(uuid.uuid4())), "default"),
    ):
        with pytest.raises(KubeError) as refused:
            await operator.create(
                core_path("secrets", namespace), token_secret(namespace, name, account)
            )
        assert refused_by(policy, refused.value), refused.value
        assert "service-account token" in refused.value.message
        gone = cluster.kubectl("get", "secret", name, "-n", namespace, check=False)
        assert gone.returncode != 0


async def test_the_operator_writes_only_its_own_secrets_and_configmap(
    cluster: Cluster, release: Release, as_component: dict[str, Kube]
) -> None:
    operator, policy = as_component["operator"], release.policy("operator-writes")
    instance = str(uuid.uuid4())
    refused_writes = [
        # Not a channel Secret's name, or not labelled as the operator labels them.
        (
            core_path("secrets", release.channels),
            secret(release.channels, "anything", type="Opaque"),
        ),
        (
            core_path("secrets", release.channels),
            secret(release.channels, secret_name(instance), type="Opaque"),
        ),
        (
            core_path("secrets", release.channels),
            secret(
                release.channels,
                secret_name(instance),
                type="Opaque",
                metadata={
                    "labels": {
                        "app.kubernetes.io/managed-by": "whatsapp-channel-operator",
                        "whatsapp.hydracore.io/instance-id": str(uuid.uuid4()),  # another's
                    }
                },
            ),
        ),
        # In the release namespace, nothing but its keys Secret and public key ConfigMap.
        (core_path("secrets", release.home), secret(release.home, "anything", type="Opaque")),
        (
            core_path("configmaps", release.home),
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "anything"}},
        ),
        (
            core_path("secrets", release.home),
            secret(release.home, secret_name(instance), type="Opaque"),
        ),
    ]
    await until_enforced(
        policy,
        lambda: operator.request(
            "POST", refused_writes[0][0], body=refused_writes[0][1], params=DRY_RUN
        ),
    )
    for path, body in refused_writes:
        with pytest.raises(KubeError) as refused:
            await operator.create(path, body)
        assert refused_by(policy, refused.value), (body["metadata"], refused.value)

    # What the operator itself builds passes, made by its own builders.
    spec = ChannelSpec.model_validate({"instanceId": instance, "phoneNumberId": "106540352242922"})
    ref = ChannelRef(namespace=release.channels, name=instance, uid=str(uuid.uuid4()), generation=1)
    channel_secret = build_secret(
        ref, spec, Credentials("access-token", "app-secret", "verify-token")
    )
    # Its owner is made up here: the garbage collector would delete it mid-test.
    channel_secret["metadata"].pop("ownerReferences")
    created = await operator.create(core_path("secrets", release.channels), channel_secret)
    await operator.replace(
        core_path("secrets", release.channels, secret_name(instance)),
        {
            **channel_secret,
            "metadata": {
                **channel_secret["metadata"],
                "resourceVersion": created["metadata"]["resourceVersion"],
            },
        },
    )
    keyring = new_keyring()
    await operator.create(
        core_path("secrets", release.home), build_keys_secret(release.home, keyring)
    )
    await operator.create(
        core_path("configmaps", release.home), build_public_configmap(release.home, keyring)
    )
    assert kubectl_json(cluster, "get", "secret", SEALING_KEYS_SECRET, "-n", release.home)["data"]
    assert kubectl_json(cluster, "get", "configmap", SEALING_PUBLIC_CONFIGMAP, "-n", release.home)


async def test_the_operator_deletes_only_what_carries_its_labels(
    cluster: Cluster, release: Release, as_component: dict[str, Kube]
) -> None:
    """Issue 21 item 8; fails on the chart before it, where the operator's RBAC let it delete
    any Secret of the channel namespace (users' secretRef Secrets included)."""
    operator, policy = as_component["operator"], release.policy("operator-writes")
    users = secret(release.channels, f"users-{uuid.uuid4().hex[:8]}", type="Opaque")
    cluster.kubectl("apply", "-f", "-", input=json.dumps(users))
    path = core_path("secrets", release.channels, users["metadata"]["name"])
    await until_enforced(policy, lambda: operator.request("DELETE", path, params=DRY_RUN))
    with pytest.raises(KubeError) as refused:
        await operator.delete(path)
    assert refused_by(policy, refused.value), refused.value
    assert kubectl_json(cluster, "get", "secret", users["metadata"]["name"], "-n", release.channels)
    # What carries its labels it may delete: its own channel Secrets, and forged ones.
    instance = str(uuid.uuid4())
    spec = ChannelSpec.model_validate({"instanceId": instance, "phoneNumberId": "106540352242922"})
    ref = ChannelRef(namespace=release.channels, name=instance, uid=str(uuid.uuid4()), generation=1)
    built = build_secret(ref, spec, Credentials("access-token", "app-secret", "verify-token"))
    built["metadata"].pop("ownerReferences")  # a made-up owner: the GC would delete it
    await operator.create(core_path("secrets", release.channels), built)
    await operator.delete(core_path("secrets", release.channels, secret_name(instance)))


async def test_only_the_operator_may_set_its_labels_on_a_secret(
    cluster: Cluster, release: Release
) -> None:
    """Issue 21 item 5; fails on the chart before it: anyone who may create Secrets in the
    channel namespace (which secretRef users need) could write one the receiver routes by.
    Even the cluster's admin is refused (only the operator's account is exempt)."""
    policy = release.policy("operator-labels")
    victim = str(uuid.uuid4())
    labels = {
        "app.kubernetes.io/managed-by": "whatsapp-channel-operator",
        "whatsapp.hydracore.io/instance-id": victim,
    }

    def apply(body: dict[str, Any]) -> Any:
        return cluster.kubectl("apply", "-f", "-", input=json.dumps(body), check=False)

    def refused(result: Any) -> bool:
        return bool(result.returncode != 0 and policy in result.stderr)

    forged = secret(release.channels, "forged", type="Opaque", metadata={"labels": labels})
    deadline = time.monotonic() + TIMEOUT
    while not refused(result := apply(forged)):  # until the policy is loaded
        cluster.kubectl("delete", "secret", "forged", "-n", release.channels, check=False)
        assert time.monotonic() < deadline, result.stderr
        await asyncio.sleep(0.2)
    for one_label in labels.items():
        assert refused(
            apply(secret(release.channels, "forged", metadata={"labels": dict([one_label])}))
        )
    for label in ("phone-number-id", "waba-id"):  # waba-id: account webhooks verify by it
        forged_label = {f"whatsapp.hydracore.io/{label}": "106540352242922"}
        assert refused(apply(secret(release.channels, "forged", metadata={"labels": forged_label})))

    # A user's own Secret: written, relabelled with labels of its own, never with ours.
    own = secret(release.channels, "mine", type="Opaque", metadata={"labels": {"team": "a"}})
    assert apply(own).returncode == 0
    own["metadata"]["labels"] = {"team": "b", "app.kubernetes.io/managed-by": "Helm"}
    assert apply(own).returncode == 0
    own["metadata"]["labels"] = {**own["metadata"]["labels"], **labels}
    assert refused(apply(own))
    found = kubectl_json(cluster, "get", "secret", "mine", "-n", release.channels)
    assert found["metadata"]["labels"] == {"team": "b", "app.kubernetes.io/managed-by": "Helm"}


# --- the receiver -------------------------------------------------------------------------


def channel(cluster: Cluster, namespace: str) -> str:
    """A channel as an operator leaves it: not Ready, generation 1 observed."""
    name = str(uuid.uuid4())
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "instanceId": name,
            "phoneNumberId": "106540352242922",
            "secretRef": {"name": "creds"},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    status = {
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "SecretRefNotFound",
                "message": "no Secret creds",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    cluster.kubectl(
        "patch", "whatsappchannel", name, "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip
    return name


def status_of(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = kubectl_json(cluster, "get", "whatsappchannel", name, "-n", namespace)[
        "status"
    ]
    return found


async def test_the_receivers_times_are_bounded_rfc3339(
    cluster: Cluster, release: Release, as_component: dict[str, Kube]
) -> None:
    """Issue 21 item 7; fails on the CRD before it, which took any string: the receiver
    faces the internet, and the operator reads lastChallengeAt."""
    receiver = as_component["receiver"]
    name = channel(cluster, release.channels)
    path = channels_path(release.channels, name, "status")
    for field in ("lastChallengeAt", "lastEventAt", "lastAccountEventAt"):
        for value in ("x" * 5000, "yesterday", "2026-01-01T00:00:00Z" + " " * 60):
            with pytest.raises(KubeError) as refused:
                await receiver.merge_patch(path, {"status": {field: value}})
            assert refused.value.status == 422, (field, refused.value)
        await receiver.merge_patch(path, {"status": {field: "2026-01-02T00:00:00Z"}})
    status = status_of(cluster, release.channels, name)
    assert status["lastChallengeAt"] == status["lastEventAt"] == "2026-01-02T00:00:00Z"


async def test_the_receiver_cannot_forge_a_channels_status(
    cluster: Cluster, release: Release, as_component: dict[str, Kube]
) -> None:
    receiver, policy = as_component["receiver"], release.policy("receiver-status")
    name = channel(cluster, release.channels)
    path = channels_path(release.channels, name, "status")
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "forged",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 2,
    }
    forgeries: list[dict[str, Any]] = [
        {"observedGeneration": 2},  # "generation 2 is reconciled": Kopf would skip it
        {"conditions": [ready]},  # Ready, as the facade reads it
        {"conditions": None},  # removing what the operator wrote
        {"observedGeneration": None},
        {"webhookUrl": "https://attacker.example/hooks"},
        {"lastEventAt": "2026-01-02T00:00:00Z", "observedGeneration": 2},  # hidden beside its own
    ]

    async def probe() -> object:
        return await receiver.request(
            "PATCH", path, body={"status": forgeries[0]}, params=DRY_RUN,
            content_type="application/merge-patch+json",
        )  # fmt: skip

    await until_enforced(policy, probe)
    before = status_of(cluster, release.channels, name)
    for forged in forgeries:
        with pytest.raises(KubeError) as refused:
            await receiver.merge_patch(path, {"status": forged})
        assert refused_by(policy, refused.value), (forged, refused.value)
        assert "lastChallengeAt, lastEventAt and lastAccountEventAt only" in refused.value.message
    assert status_of(cluster, release.channels, name) == before

    # Its own three fields, as its StatusWriter sends them, pass and change nothing else.
    await receiver.merge_patch(
        path,
        {
            "status": {
                "lastChallengeAt": "2026-01-02T00:00:00Z",
                "lastEventAt": "2026-01-02T00:00:01Z",
                "lastAccountEventAt": "2026-01-02T00:00:03Z",
            }
        },
    )
    await receiver.merge_patch(path, {"status": {"lastEventAt": "2026-01-02T00:00:02Z"}})
    after = status_of(cluster, release.channels, name)
    assert after == {
        **before,
        "lastChallengeAt": "2026-01-02T00:00:00Z",
        "lastEventAt": "2026-01-02T00:00:02Z",
        "lastAccountEventAt": "2026-01-02T00:00:03Z",
    }


async def test_a_channel_without_status_cannot_be_given_one_by_the_receiver(
    cluster: Cluster, release: Release, as_component: dict[str, Kube]
) -> None:
    receiver, policy = as_component["receiver"], release.policy("receiver-status")
    name = str(uuid.uuid4())
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": release.channels},
        "spec": {
            "instanceId": name,
            "phoneNumberId": "106540352242922",
            "secretRef": {"name": "creds"},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
    path = channels_path(release.channels, name, "status")
    forged = {"status": {"observedGeneration": 1}}
    await until_enforced(
        policy,
        lambda: receiver.request(
            "PATCH", path, body=forged, params=DRY_RUN, content_type="application/merge-patch+json"
        ),
    )
    with pytest.raises(KubeError) as refused:
        await receiver.merge_patch(path, forged)
    assert refused_by(policy, refused.value)
    await receiver.merge_patch(path, {"status": {"lastEventAt": "2026-01-02T00:00:00Z"}})
    assert status_of(cluster, release.channels, name) == {"lastEventAt": "2026-01-02T00:00:00Z"}


def test_the_policies_are_rendered_only_when_asked(cluster: Cluster) -> None:
    kinds = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    on = [m for m in render(cluster) if m["kind"] in kinds]
    assert sorted((m["kind"], m["metadata"]["name"]) for m in on) == sorted(
        (kind, f"wa-whatsapp-channels-wa-{policy}")
        for kind in kinds
        for policy in ("operator-writes", "receiver-status", "operator-labels")
    )
    for binding in (m for m in on if m["kind"] == "ValidatingAdmissionPolicyBinding"):
        assert binding["spec"]["validationActions"] == ["Deny"]
        assert binding["spec"]["policyName"] == binding["metadata"]["name"]
    off = render(cluster, "--set", "admissionPolicies.enabled=false")
    assert not [m for m in off if m["kind"] in kinds]


def test_an_older_kubernetes_is_told_to_turn_them_off(cluster: Cluster) -> None:
    args = ("template", "wa", str(CHART), "-n", "wa", "-f", str(TEST_VALUES))
    older = cluster.helm(*args, "--kube-version", "1.29.0", check=False)
    assert older.returncode != 0
    assert "admissionPolicies need Kubernetes 1.30 or newer" in older.stderr
    off = cluster.helm(
        *args, "--kube-version", "1.29.0", "--set", "admissionPolicies.enabled=false"
    )
    assert "ValidatingAdmissionPolicy" not in off.stdout

"""Issue 3 against the real control plane: the operator run as its console script, channels
written with kubectl and the product's client, everything checked in the apiserver.

Each test has its own namespace and its own operator (at DEBUG, so the no-secret-in-logs
check covers every level).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import uuid
from typing import Any

import pytest
import yaml
from channel_launcher.product import OPERATOR
from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import Service, running, script
from whatsapp_channel.channel_secret import (
    DATA_HASH_ANNOTATION,
    ENABLED_ANNOTATION,
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PHONE_NUMBER_ID_LABEL,
    WABA_ID_LABEL,
    WEBHOOK_MODE_ANNOTATION,
)
from whatsapp_channel.channel_secret import SELECTOR as CHANNEL_SECRET_SELECTOR
from whatsapp_channel.kube import JSON, Kube, NotFound, channels_path, core_path
from whatsapp_channel.model import (
    FINALIZER,
    KIND,
    PUBLIC_KEYS_FIELD,
    READY,
    SEALING_KEYS_SECRET,
    SEALING_PUBLIC_CONFIGMAP,
    SECRET_REF_CHANNELS_ANNOTATION,
    ChannelSpec,
    SealedCredentials,
    channel_body,
    find_condition,
    rest_status,
)
from whatsapp_channel.reasons import (
    CHANNEL_DISABLED,
    CHANNEL_READY,
    SEAL_SCOPE_MISMATCH,
    SECRET_REF_NOT_FOUND,
    SECRET_REF_NOT_OPTED_IN,
)
from whatsapp_channel.sealing import PublicSealingKey, published_keys, seal

from tests.operator.conftest import META_ENV
from tests.support.graph import shared_standin
from tests.support.processes import log_dir, run_operator, start_operator
from tests.support.scrape import assert_no_label_holds, scrape
from tests.support.scrape import value as sample
from tests.support.waiting import eventually

PHONE_ID = "106540352242922"


def credentials() -> dict[str, str]:
    """Distinctive values, so a leak anywhere is easy to find."""
    return {
        "access_token": f"EAAG{uuid.uuid4().hex}{uuid.uuid4().hex}",
        "app_secret": f"appsecret{uuid.uuid4().hex}",
        "verify_token": f"verify{uuid.uuid4().hex}",
    }


@pytest.fixture(autouse=True)
def _meta(meta_env: dict[str, Any]) -> dict[str, Any]:
    """Each test's operator asks the Graph stand-in and registers with a receiver of its own
    namespace (`conftest.meta_env`, also in META_ENV for the operators a test starts)."""
    return meta_env


async def public_key(kube: Kube, namespace: str) -> PublicSealingKey:
    data = (await kube.get(core_path("configmaps", namespace, SEALING_PUBLIC_CONFIGMAP)))["data"]
    return published_keys(data).active


def sealed_for(
    key: PublicSealingKey, namespace: str, name: str, values: dict[str, str]
) -> SealedCredentials:
    def one(field: str, secret_key: str) -> str:
        return seal(key, namespace=namespace, name=name, field=field, value=values[secret_key])

    return SealedCredentials(
        access_token=one("accessToken", "access_token"),
        app_secret=one("appSecret", "app_secret"),
        verify_token=one("verifyToken", "verify_token"),
    )


def phone_of(name: str) -> str:
    """A phone number id of the channel's own: one number belongs to one channel."""
    return str(10**14 + int(name.replace("-", "")[:12], 16) % 10**14)


def manifest(
    key: PublicSealingKey,
    namespace: str,
    name: str,
    values: dict[str, str],
    *,
    phone: str | None = None,
    enabled: bool = True,
) -> JSON:
    number = phone or phone_of(name)
    shared_standin().seed(number, values)  # Meta knows the number with these credentials
    spec = ChannelSpec(
        instance_id=name,
        phone_number_id=number,
        display_phone="+61400111222",
        enabled=enabled,
        sealed=sealed_for(key, namespace, name, values),
    )
    return channel_body(namespace=namespace, name=name, spec=spec)


async def get_channel(kube: Kube, namespace: str, name: str) -> JSON:
    return await kube.get(channels_path(namespace, name))


async def get_secret(kube: Kube, namespace: str, name: str) -> JSON | None:
    try:
        return await kube.get(core_path("secrets", namespace, f"whatsapp-{name}"))
    except NotFound:
        return None


def decoded(secret: JSON) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def ready_of(channel: JSON) -> dict[str, Any]:
    ready = find_condition((channel.get("status") or {}).get("conditions") or [], READY)
    return dict(ready or {})


async def wait_ready(
    kube: Kube, namespace: str, name: str, *, status: str = "True", reason: str | None = None
) -> JSON:
    """The channel once its Ready condition speaks of its current generation."""

    async def probe() -> JSON | None:
        channel = await get_channel(kube, namespace, name)
        ready = ready_of(channel)
        current = ready.get("observedGeneration") == channel["metadata"]["generation"]
        if current and ready.get("status") == status and reason in (None, ready.get("reason")):
            return channel
        return None

    return await eventually(probe, f"channel {name} Ready={status} ({reason or 'any reason'})")


async def wait_labelled(kube: Kube, namespace: str, name: str) -> JSON:
    """The channel's Secret once it names the business account the operator found at Meta."""

    async def probe() -> JSON | None:
        secret = await get_secret(kube, namespace, name)
        labels = (secret or {}).get("metadata", {}).get("labels") or {}
        return secret if labels.get(WABA_ID_LABEL) else None

    return await eventually(probe, f"the Secret of {name} names its business account")


def assert_no_secret_leaked(
    service: Service, cluster: Cluster, namespace: str, *values: dict[str, str]
) -> None:
    log = service.log_path.read_text(errors="replace")
    assert "DEBUG" in log  # the check covers the most talkative level
    events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    for value in (v for one in values for v in one.values()):
        assert value not in log, "a credential is in the operator's log"
        assert value not in events, "a credential is in an event"


def our_annotations(obj: JSON) -> list[str]:
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return [a for a in annotations if a.startswith("whatsapp.hydracore.io/")]


# --- create, update, delete -----------------------------------------------------------------


async def test_create_is_ready_with_a_secret_of_exactly_the_unsealed_values(
    cluster: Cluster, operator: Service, namespace: str, kube: Kube
) -> None:
    name = str(uuid.uuid4())
    values = credentials()
    shared_standin().seed(PHONE_ID, values)
    env = {
        **cluster.env(),
        "WA_ACCESS_TOKEN": values["access_token"],
        "WA_APP_SECRET": values["app_secret"],
        "WA_VERIFY_TOKEN": values["verify_token"],
    }
    argv = [script("whatsapp-seal"), "-n", namespace, "--instance-id", name]
    argv += ["--phone-number-id", PHONE_ID, "--display-phone", "+61400111222"]
    sealing = await asyncio.to_thread(
        subprocess.run,
        argv,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    sealed = sealing.stdout
    assert all(v not in sealed for v in values.values())
    cluster.kubectl("apply", "-f", "-", input=sealed)
    waited = cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"whatsappchannel/{name}", "--timeout=60s"
    )
    assert "condition met" in waited.stdout

    channel = await get_channel(kube, namespace, name)
    status = channel["status"]
    assert status["observedGeneration"] == channel["metadata"]["generation"] == 1
    assert status["webhookUrl"] == f"{META_ENV['webhook_base_url']}/hooks/whatsapp/{name}"
    assert status["secretName"] == f"whatsapp-{name}"
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("SecretSynced", "True", "Synced"),
        ("WebhookConfigured", "True", "WebhookEnabled"),
        ("CredentialsValid", "True", "CredentialsAccepted"),
        ("WebhookRegistered", "True", "OverrideRegistered"),
        ("CanSendMessage", "True", "Available"),
        ("Ready", "True", "ChannelReady"),
    ]
    # What the stand-in's number says, and Meta now delivers the number's events to us.
    assert status["verifiedName"] == "Stand-in Business"
    assert (status["qualityRating"], status["phoneStatus"]) == ("GREEN", "CONNECTED")
    assert status["messagingLimit"] == "TIER_1K"
    assert status["checkedAt"]
    assert shared_standin().override(PHONE_ID) == status["webhookUrl"]
    assert rest_status(channel) == "active"
    assert channel["metadata"]["finalizers"] == [FINALIZER]
    assert our_annotations(channel) == []  # no progress left behind

    secret = await get_secret(kube, namespace, name)
    assert secret is not None
    assert decoded(secret) == values
    metadata = secret["metadata"]
    assert metadata["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
    assert metadata["labels"][INSTANCE_LABEL] == name
    assert metadata["labels"][PHONE_NUMBER_ID_LABEL] == PHONE_ID
    assert metadata["annotations"][ENABLED_ANNOTATION] == "true"
    assert metadata["annotations"][DATA_HASH_ANNOTATION].startswith("sha256:")
    (owner,) = metadata["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (KIND, name, channel["metadata"]["uid"])
    assert owner["controller"] is True
    assert owner["blockOwnerDeletion"] is True

    table = cluster.kubectl("get", "wac", "-n", namespace).stdout
    assert table.split("\n")[0].split() == ["NAME", "PHONE", "READY", "REASON", "AGE"]
    assert f"{name}   +61400111222   True    ChannelReady" in table
    assert_no_secret_leaked(operator, cluster, namespace, values)


async def test_update_new_phone_and_rotated_app_secret_then_disable(
    cluster: Cluster, operator: Service, namespace: str, kube: Kube
) -> None:
    key = await public_key(kube, namespace)
    name = str(uuid.uuid4())
    values = credentials()
    await kube.create(channels_path(namespace), manifest(key, namespace, name, values))
    await wait_ready(kube, namespace, name)

    rotated = {**values, "app_secret": f"rotated{uuid.uuid4().hex}"}
    update = manifest(key, namespace, name, rotated, phone="999000111222")
    await kube.merge_patch(channels_path(namespace, name), {"spec": update["spec"]})
    channel = await wait_ready(kube, namespace, name)
    assert channel["metadata"]["generation"] == 2
    assert channel["status"]["observedGeneration"] == 2
    assert ready_of(channel)["observedGeneration"] == 2
    secret = await get_secret(kube, namespace, name)
    assert secret is not None
    assert decoded(secret) == rotated
    assert secret["metadata"]["labels"][PHONE_NUMBER_ID_LABEL] == "999000111222"

    await kube.merge_patch(channels_path(namespace, name), {"spec": {"enabled": False}})
    channel = await wait_ready(kube, namespace, name, reason=CHANNEL_DISABLED)
    assert channel["status"]["observedGeneration"] == 3
    assert rest_status(channel) == "disabled"
    secret = await get_secret(kube, namespace, name)
    assert secret is not None
    assert secret["metadata"]["annotations"][ENABLED_ANNOTATION] == "false"
    assert decoded(secret) == rotated
    assert_no_secret_leaked(operator, cluster, namespace, values, rotated)


async def test_delete_removes_the_secret_and_releases_the_channel(
    cluster: Cluster, operator: Service, namespace: str, kube: Kube
) -> None:
    key = await public_key(kube, namespace)
    name = str(uuid.uuid4())
    await kube.create(channels_path(namespace), manifest(key, namespace, name, credentials()))
    await wait_ready(kube, namespace, name)
    assert await get_secret(kube, namespace, name) is not None

    cluster.kubectl("delete", "-n", namespace, f"whatsappchannel/{name}", "--timeout=60s")
    with pytest.raises(NotFound):
        await get_channel(kube, namespace, name)
    assert await get_secret(kube, namespace, name) is None


# --- drift ------------------------------------------------------------------------------


async def test_a_secret_deleted_or_edited_by_hand_is_put_back(
    cluster: Cluster, operator: Service, namespace: str, kube: Kube
) -> None:
    key = await public_key(kube, namespace)
    name = str(uuid.uuid4())
    values = credentials()
    await kube.create(channels_path(namespace), manifest(key, namespace, name, values))
    await wait_ready(kube, namespace, name)
    path = core_path("secrets", namespace, f"whatsapp-{name}")

    async def restored() -> JSON | None:
        secret = await get_secret(kube, namespace, name)
        if secret is None or decoded(secret) != values:
            return None
        metadata = secret["metadata"]
        labels_ok = metadata["labels"].get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
        enabled_ok = metadata["annotations"].get(ENABLED_ANNOTATION) == "true"
        mode_ok = metadata["annotations"].get(WEBHOOK_MODE_ANNOTATION) == "managed"
        return secret if labels_ok and enabled_ok and mode_ok else None

    original_uid = (await kube.get(path))["metadata"]["uid"]
    await kube.delete(path)
    again = await eventually(restored, "the deleted Secret back", timeout=60)
    assert again["metadata"]["uid"] != original_uid

    tampered = base64.b64encode(b"tampered").decode()
    await kube.merge_patch(path, {"data": {"app_secret": tampered, "extra": tampered}})
    secret = await eventually(restored, "the edited Secret's data back", timeout=60)
    assert set(secret["data"]) == {"access_token", "app_secret", "verify_token"}

    await kube.merge_patch(path, {"metadata": {"annotations": {ENABLED_ANNOTATION: "false"}}})
    await eventually(restored, "the enabled annotation back", timeout=60)

    # Without the mode (as an older operator wrote it): the receiver would note challenges.
    await kube.merge_patch(path, {"metadata": {"annotations": {WEBHOOK_MODE_ANNOTATION: None}}})
    await eventually(restored, "the webhook-mode annotation back", timeout=60)

    await kube.merge_patch(path, {"metadata": {"labels": {MANAGED_BY_LABEL: None}}})
    await eventually(restored, "the managed-by label back", timeout=60)
    assert_no_secret_leaked(operator, cluster, namespace, values)


# --- failures -----------------------------------------------------------------------------


async def test_a_seal_moved_to_another_channel_does_not_open(
    cluster: Cluster, operator: Service, namespace: str, kube: Kube
) -> None:
    key = await public_key(kube, namespace)
    victim, thief = str(uuid.uuid4()), str(uuid.uuid4())
    values = credentials()
    original = manifest(key, namespace, victim, values)
    await kube.create(channels_path(namespace), original)
    await wait_ready(kube, namespace, victim)

    stolen = {
        **original,
        "metadata": {"name": thief, "namespace": namespace},
        "spec": {**original["spec"], "instanceId": thief, "phoneNumberId": phone_of(thief)},
    }
    await kube.create(channels_path(namespace), stolen)
    channel = await wait_ready(kube, namespace, thief, status="False", reason=SEAL_SCOPE_MISMATCH)
    ready = ready_of(channel)
    assert "sealed for another channel" in ready["message"]
    assert rest_status(channel) == "error"
    assert "observedGeneration" not in channel["status"]
    assert await get_secret(kube, namespace, thief) is None
    waited = cluster.kubectl(
        "wait", "-n", namespace, "--for=condition=Ready", f"wac/{thief}", "--timeout=2s",
        check=False,
    )  # fmt: skip
    assert waited.returncode != 0

    async def warned() -> JSON | None:
        events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)
        about = [e for e in events["items"] if e["involvedObject"].get("name") == thief]
        return next((e for e in about if e["reason"] == SEAL_SCOPE_MISMATCH), None)

    event = await eventually(warned, "a Warning event about the seal")
    assert event["type"] == "Warning"
    assert "sealed for another channel" in event["message"]

    # Retries back off (progress in our annotation); a fixed spec is worked on at once anyway.
    async def retried_thrice() -> int | None:
        annotations = (await get_channel(kube, namespace, thief))["metadata"].get("annotations")
        progress = json.loads((annotations or {}).get("whatsapp.hydracore.io/reconcile", "{}"))
        retries = int(progress.get("retries") or 0)
        return retries if retries >= 3 else None

    await eventually(retried_thrice, "three attempts")  # the next one is 20 s away
    fixed = manifest(key, namespace, thief, values)
    await kube.merge_patch(channels_path(namespace, thief), {"spec": fixed["spec"]})
    channel = await wait_ready(kube, namespace, thief)  # not the 20 s retry: the change itself
    assert channel["status"]["observedGeneration"] == 2
    assert our_annotations(channel) == []
    assert_no_secret_leaked(operator, cluster, namespace, values)


async def test_a_missing_secret_ref_is_reported_then_picked_up(
    cluster: Cluster, operator: Service, namespace: str, kube: Kube
) -> None:
    name = str(uuid.uuid4())
    spec: JSON = {"instanceId": name, "phoneNumberId": PHONE_ID, "secretRef": {"name": "my-creds"}}
    body: JSON = {"apiVersion": "whatsapp.hydracore.io/v1alpha1", "kind": KIND}
    body |= {"metadata": {"name": name}, "spec": spec}
    await kube.create(channels_path(namespace), body)
    channel = await wait_ready(kube, namespace, name, status="False", reason=SECRET_REF_NOT_FOUND)
    assert "my-creds" in ready_of(channel)["message"]

    values = credentials()
    shared_standin().seed(PHONE_ID, values)
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    # Issue 13: a Secret is read only when it opts in to the channel; until then, no copy.
    await kube.create(
        core_path("secrets", namespace), {"metadata": {"name": "my-creds"}, "data": data}
    )
    await wait_ready(kube, namespace, name, status="False", reason=SECRET_REF_NOT_OPTED_IN)
    assert await get_secret(kube, namespace, name) is None
    await kube.merge_patch(
        core_path("secrets", namespace, "my-creds"),
        {"metadata": {"annotations": {SECRET_REF_CHANNELS_ANNOTATION: f"other,{name}"}}},
    )
    await wait_ready(kube, namespace, name, reason=CHANNEL_READY)
    secret = await get_secret(kube, namespace, name)
    assert secret is not None
    assert decoded(secret) == values
    assert_no_secret_leaked(operator, cluster, namespace, values)


def test_schema_violations_are_refused_by_the_apiserver(
    cluster: Cluster, crd: Any, namespace: str
) -> None:
    name = str(uuid.uuid4())
    sealed = {"accessToken": "wa1:x:eA==", "appSecret": "wa1:x:eA==", "verifyToken": "wa1:x:eA=="}
    good: JSON = {"instanceId": name, "phoneNumberId": PHONE_ID, "sealed": sealed}

    def apply(metadata_name: str, spec: JSON) -> subprocess.CompletedProcess[str]:
        body: JSON = {"apiVersion": "whatsapp.hydracore.io/v1alpha1", "kind": KIND}
        body |= {"metadata": {"name": metadata_name, "namespace": namespace}, "spec": spec}
        return cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body), check=False)

    refusals: dict[str, tuple[str, JSON, str]] = {
        "another name": (str(uuid.uuid4()), good, "metadata.name must equal spec.instanceId"),
        "both": (name, {**good, "secretRef": {"name": "x"}}, "exactly one way"),
        "neither": (name, {"instanceId": name, "phoneNumberId": PHONE_ID}, "exactly one way"),
        "phone id": (name, {**good, "phoneNumberId": "12ab"}, "spec.phoneNumberId"),
        "display phone": (name, {**good, "displayPhone": "0400 111 222"}, "spec.displayPhone"),
        "empty seal": (
            name,
            {**good, "sealed": {**sealed, "appSecret": ""}},
            "spec.sealed.appSecret",
        ),
        "no phone id": (name, {"instanceId": name, "sealed": sealed}, "phoneNumberId: Required"),
        "upper-case id": (name.upper(), {**good, "instanceId": name.upper()}, "spec.instanceId"),
    }
    for case, (metadata_name, spec, message) in refusals.items():
        result = apply(metadata_name, spec)
        assert result.returncode != 0, f"{case}: accepted"
        assert message in result.stderr, f"{case}: {result.stderr}"

    assert apply(name, good).returncode == 0
    other = str(uuid.uuid4())
    changed = apply(name, {**good, "instanceId": other})
    assert changed.returncode != 0
    assert "instanceId is immutable" in changed.stderr


# --- restarts and crashes -----------------------------------------------------------------


async def test_operator_killed_mid_batch_converges_without_duplicates_or_leftovers(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube
) -> None:
    count = 40
    first = start_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **META_ENV,
        log_level="DEBUG",
    )
    try:
        key = await public_key(kube, namespace)
        names = [str(uuid.uuid4()) for _ in range(count)]
        values = {name: credentials() for name in names}
        await asyncio.gather(
            *(
                kube.create(channels_path(namespace), manifest(key, namespace, n, values[n]))
                for n in names
            )
        )

        async def some_secret() -> list[JSON] | None:
            listing = await kube.get(
                core_path("secrets", namespace), {"labelSelector": CHANNEL_SECRET_SELECTOR}
            )
            return listing["items"] or None

        await eventually(some_secret, "the first Secret", timeout=60)
    finally:
        first.kill()  # SIGKILL: no cleanup, no goodbye
    listing = await kube.get(channels_path(namespace))
    ready_at_kill = sum(1 for c in listing["items"] if ready_of(c).get("status") == "True")
    assert ready_at_kill < count, "the operator finished before it was killed"

    with running(
        start_operator(
            cluster.kubeconfig,
            log_dir(cluster),
            namespace=namespace,
            **META_ENV,
            log_level="DEBUG",
        )
    ) as second:
        for name in names:
            await wait_ready(kube, namespace, name)
        secrets = (
            await kube.get(
                core_path("secrets", namespace), {"labelSelector": CHANNEL_SECRET_SELECTOR}
            )
        )["items"]
        assert sorted(s["metadata"]["name"] for s in secrets) == sorted(
            f"whatsapp-{n}" for n in names
        )
        channels = {
            c["metadata"]["name"]: c for c in (await kube.get(channels_path(namespace)))["items"]
        }
        for secret in secrets:
            name = secret["metadata"]["labels"][INSTANCE_LABEL]
            assert decoded(secret) == values[name]
            (owner,) = secret["metadata"]["ownerReferences"]
            assert owner["uid"] == channels[name]["metadata"]["uid"]
        for channel in channels.values():
            assert channel["metadata"]["finalizers"] == [FINALIZER]
            assert our_annotations(channel) == []
            assert channel["status"]["observedGeneration"] == 1

        await asyncio.gather(*(kube.delete(channels_path(namespace, n)) for n in names))

        async def all_gone() -> bool:
            left = (await kube.get(channels_path(namespace)))["items"]
            generated = (
                await kube.get(
                    core_path("secrets", namespace), {"labelSelector": CHANNEL_SECRET_SELECTOR}
                )
            )["items"]
            return not left and not generated

        await eventually(all_gone, "every channel and Secret gone")
        assert_no_secret_leaked(second, cluster, namespace, *values.values())


async def test_a_channel_deleted_while_the_operator_is_down_is_released_on_restart(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube
) -> None:
    name = str(uuid.uuid4())
    with run_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **META_ENV,
        log_level="DEBUG",
    ):
        key = await public_key(kube, namespace)
        await kube.create(channels_path(namespace), manifest(key, namespace, name, credentials()))
        await wait_ready(kube, namespace, name)
    await kube.delete(channels_path(namespace, name))
    held = await get_channel(kube, namespace, name)  # our finalizer holds it
    assert held["metadata"]["deletionTimestamp"]
    assert await get_secret(kube, namespace, name) is not None

    with run_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **META_ENV,
        log_level="DEBUG",
    ):

        async def released() -> bool:
            try:
                await get_channel(kube, namespace, name)
            except NotFound:
                return await get_secret(kube, namespace, name) is None
            return False

        await eventually(released, "the channel released and its Secret gone")


@pytest.mark.parametrize("streaming", [False, True], ids=["listed", "streamed"])
async def test_a_restart_costs_no_writes_for_unchanged_channels(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube, streaming: bool
) -> None:
    """Restarted, listed (the default) or streamed (`watch_initial_streaming`): every
    channel resumed, nothing written."""
    names = [str(uuid.uuid4()) for _ in range(5)]
    with run_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **META_ENV,
        log_level="DEBUG",
    ):
        key = await public_key(kube, namespace)
        for name in names:
            await kube.create(
                channels_path(namespace), manifest(key, namespace, name, credentials())
            )
        for name in names:
            await wait_ready(kube, namespace, name)
            await wait_labelled(kube, namespace, name)

    async def versions() -> dict[str, str]:
        objects = (await kube.get(channels_path(namespace)))["items"]
        objects += (await kube.get(core_path("secrets", namespace)))["items"]
        objects += (await kube.get(core_path("configmaps", namespace)))["items"]
        return {
            f"{o.get('kind')}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
            for o in objects
        }

    # The picture once the operator's last write of each channel is in (its Secret named the
    # business account found at Meta) and the operator is stopped: nothing else writes them
    # (a receiver notes no challenge of a managed webhook, and no event came).
    before = await versions()
    assert f"Secret/{SEALING_KEYS_SECRET}" in before or any(
        SEALING_KEYS_SECRET in k for k in before
    )
    with run_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **META_ENV,
        log_level="DEBUG",
        watch_initial_streaming=streaming,
    ) as again:

        async def resumed_all() -> int | None:
            # Kopf logs this line once per object once its resume handlers are done.
            done = again.log_path.read_text().count("Resuming is processed")
            return done if done >= len(names) else None

        assert await eventually(resumed_all, "a processed resume for every channel") == len(names)
        assert await versions() == before
        streamed = "taken as a watch's initial events" in again.log_path.read_text()
        assert streamed is streaming


async def test_a_new_channel_costs_the_finalizer_the_secret_and_one_status_patch(
    cluster: Cluster, operator: Service, namespace: str, kube: Kube
) -> None:
    key = await public_key(kube, namespace)
    start = (await kube.get(channels_path(namespace)))["metadata"]["resourceVersion"]
    secrets_start = (await kube.get(core_path("secrets", namespace)))["metadata"]["resourceVersion"]
    name = str(uuid.uuid4())
    await kube.create(channels_path(namespace), manifest(key, namespace, name, credentials()))
    await wait_ready(kube, namespace, name)
    # The operator's last write for a new channel: its Secret names the account found at
    # Meta. Anything later would still show in the watches below (each stays open 2 s).
    await wait_labelled(kube, namespace, name)

    async def watched(path: str, version: str) -> list[tuple[str, JSON]]:
        seen: list[tuple[str, JSON]] = []

        async def collect() -> None:
            async for event in kube.watch(path, resource_version=version, timeout_seconds=2):
                if event["type"] != "BOOKMARK":
                    seen.append((event["type"], event["object"]))

        await asyncio.wait_for(collect(), timeout=10)
        return seen

    # The stand-in called the receiver's challenge during the override call, but the webhook
    # is managed (the operator confirms it at Meta), so the receiver notes it nowhere: the
    # channel is written by the operator only.
    seen = await watched(channels_path(namespace), start)
    assert [kind for kind, _ in seen] == ["ADDED", "MODIFIED", "MODIFIED"]
    assert not any("lastChallengeAt" in (obj.get("status") or {}) for _, obj in seen)
    secret_events = await watched(core_path("secrets", namespace), secrets_start)
    # Created once; written once more only to name the business account found at Meta (the
    # channel has no spec.wabaId): the label account webhooks are verified by (docs/meta.md).
    assert [kind for kind, _ in secret_events] == ["ADDED", "MODIFIED"]
    (_, added), (_, labelled) = secret_events
    assert WABA_ID_LABEL not in added["metadata"]["labels"]
    assert labelled["metadata"]["labels"][WABA_ID_LABEL]
    assert labelled["data"] == added["data"]


async def test_a_rotated_key_seals_new_channels_and_old_seals_still_open(
    cluster: Cluster, operator: Service, namespace: str, kube: Kube
) -> None:
    old_key = await public_key(kube, namespace)
    old_channel = str(uuid.uuid4())
    await kube.create(
        channels_path(namespace), manifest(old_key, namespace, old_channel, credentials())
    )
    await wait_ready(kube, namespace, old_channel)

    rotated = await asyncio.to_thread(
        subprocess.run,
        [script("whatsapp-operator"), "rotate-key", "--keys-namespace", namespace],
        env=cluster.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    new_key = await public_key(kube, namespace)
    assert new_key.key_id == rotated.stdout.strip()
    assert new_key.key_id != old_key.key_id
    published = json.loads(
        (await kube.get(core_path("configmaps", namespace, SEALING_PUBLIC_CONFIGMAP)))["data"][
            PUBLIC_KEYS_FIELD
        ]
    )
    assert set(published) == {old_key.key_id, new_key.key_id}

    new_channel = str(uuid.uuid4())
    values = credentials()
    await kube.create(channels_path(namespace), manifest(new_key, namespace, new_channel, values))
    await wait_ready(kube, namespace, new_channel)
    secret = await get_secret(kube, namespace, new_channel)
    assert secret is not None
    assert decoded(secret) == values

    again = credentials()
    update = manifest(old_key, namespace, old_channel, again)
    await kube.merge_patch(channels_path(namespace, old_channel), {"spec": update["spec"]})
    channel = await wait_ready(kube, namespace, old_channel)
    assert channel["status"]["observedGeneration"] == 2
    secret = await get_secret(kube, namespace, old_channel)
    assert secret is not None
    assert decoded(secret) == again


# --- where the sealing keys live -----------------------------------------------------------


async def names_in(kube: Kube, plural: str, namespace: str) -> set[str]:
    listing = await kube.get(core_path(plural, namespace))
    return {item["metadata"]["name"] for item in listing["items"]}


async def test_the_keys_live_in_the_keys_namespace_never_beside_the_channels(
    cluster: Cluster, crd: Any, namespace: str, keys_namespace: str, kube: Kube
) -> None:
    """The receiver may read every Secret of the channel namespace: the private keys are in
    the operator's own namespace, and `whatsapp-seal` and `rotate-key` find them there."""
    operator_env = {
        **cluster.env(),
        **OPERATOR.env(namespace=namespace, keys_namespace=keys_namespace),
    }
    with run_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **META_ENV,
        log_level="DEBUG",
        keys_namespace=keys_namespace,
    ) as service:
        assert SEALING_KEYS_SECRET in await names_in(kube, "secrets", keys_namespace)
        first_key = await public_key(kube, keys_namespace)

        # A person seals by hand: the public key comes from the keys namespace.
        name = str(uuid.uuid4())
        values = credentials()
        shared_standin().seed(PHONE_ID, values)
        sealing = await asyncio.to_thread(
            subprocess.run,
            [script("whatsapp-seal"), "-n", namespace, "--instance-id", name,
             "--phone-number-id", PHONE_ID],
            env={
                **cluster.env(),
                "WA_KEYS_NAMESPACE": keys_namespace,
                "WA_ACCESS_TOKEN": values["access_token"],
                "WA_APP_SECRET": values["app_secret"],
                "WA_VERIFY_TOKEN": values["verify_token"],
            },
            capture_output=True, text=True, check=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        cluster.kubectl("apply", "-f", "-", input=sealing.stdout)
        await wait_ready(kube, namespace, name)
        secret = await get_secret(kube, namespace, name)
        assert secret is not None
        assert decoded(secret) == values

        # rotate-key, with the operator's environment, rotates the keys where they are.
        rotated = await asyncio.to_thread(
            subprocess.run, [script("whatsapp-operator"), "rotate-key"],
            env=operator_env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        new_key = await public_key(kube, keys_namespace)
        assert new_key.key_id == rotated.stdout.strip() != first_key.key_id
        other = str(uuid.uuid4())
        await kube.create(
            channels_path(namespace), manifest(new_key, namespace, other, credentials())
        )
        await wait_ready(kube, namespace, other)

        # Pointed at the channel namespace by mistake, it refuses and creates nothing.
        refused = await asyncio.to_thread(
            subprocess.run,
            [script("whatsapp-operator"), "rotate-key", "--keys-namespace", namespace],
            env=operator_env, capture_output=True, text=True,
        )  # fmt: skip
        assert refused.returncode == 1
        assert "no sealing keys in namespace" in refused.stderr

        # Beside the channels: their own Secrets, and nothing of the keys.
        assert await names_in(kube, "secrets", namespace) == {
            f"whatsapp-{name}",
            f"whatsapp-{other}",
        }
        assert SEALING_PUBLIC_CONFIGMAP not in await names_in(kube, "configmaps", namespace)
        assert "share namespace" not in service.log_path.read_text()
        assert_no_secret_leaked(service, cluster, namespace, values)


async def test_keys_beside_the_channels_work_and_are_warned_about(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube
) -> None:
    """Without a keys namespace the keys sit beside the channels, where the receiver can read
    them: the operator works, and says so at start."""
    name = str(uuid.uuid4())
    with run_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **META_ENV,
        log_level="DEBUG",
    ) as single:
        key = await public_key(kube, namespace)
        await kube.create(channels_path(namespace), manifest(key, namespace, name, credentials()))
        await wait_ready(kube, namespace, name)
    assert SEALING_KEYS_SECRET in await names_in(kube, "secrets", namespace)
    assert "share namespace" in single.log_path.read_text()


def test_the_operator_exits_cleanly_on_sigterm(cluster: Cluster, crd: Any, namespace: str) -> None:
    service = start_operator(cluster.kubeconfig, log_dir(cluster), namespace=namespace, **META_ENV)
    os.kill(service.pid, 15)
    assert service.process.wait(timeout=30) == 0


# --- metrics ----------------------------------------------------------------------------------


async def test_a_ready_channel_moves_the_counters(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube
) -> None:
    metrics_port = free_port()
    with run_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **META_ENV,
        metrics_port=metrics_port,
    ):
        name, values = str(uuid.uuid4()), credentials()
        key = await public_key(kube, namespace)
        body = manifest(key, namespace, name, values)
        cluster.kubectl("apply", "-f", "-", input=json.dumps(body))
        await wait_ready(kube, namespace, name)
        samples = await scrape(metrics_port)
    reconciles = "whatsapp_operator_reconciles_total"
    assert sample(samples, reconciles, outcome="ready", reason=CHANNEL_READY) >= 1
    assert sample(samples, "whatsapp_operator_secret_writes_total", action="created") == 1
    assert sample(samples, "whatsapp_operator_channels", ready="true") == 1
    assert sample(samples, "whatsapp_operator_channels", ready="false") == 0
    assert ("whatsapp_operator_sealing_key_reloads_total", frozenset({("result", "found")})) in (
        samples
    )
    assert_no_label_holds(samples, name, phone_of(name), *values.values())

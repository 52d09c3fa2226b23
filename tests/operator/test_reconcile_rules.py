"""The decisions inside `channel_operator.reconcile` that need no apiserver (issue 23: the
mutation gate's part of reconcile.py; the handlers' I/O is test_reconcile.py and the cluster
tests): a spec that does not fit names its fields only, which of Meta's conditions warn, what
the metrics count, when the phone claim is proven, who registers the webhook."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any, cast

import pytest
from channel_operator import metrics, reconcile
from channel_operator.desired import ChannelFailure, ChannelRef
from channel_operator.health import HealthSchedule
from channel_operator.platform_app import PlatformApp
from channel_operator.reconcile import Runtime
from prometheus_client import REGISTRY
from whatsapp_channel.kube import channels_path, core_path
from whatsapp_channel.model import (
    CAN_SEND_MESSAGE,
    CREDENTIALS_VALID,
    READY,
    WEBHOOK_REGISTERED,
    SealedCredentials,
)
from whatsapp_channel.reasons import (
    CHANNEL_DISABLED,
    CHANNEL_READY,
    INVALID_SPEC,
    MESSAGING_LIMITED,
    NUMBER_BANNED,
)

from tests.operator.test_reconcile import (
    VALUES,
    channel_body,
    make_runtime,
    public_key,
    sealed_spec,
)
from tests.support.fake_kube import MemoryKube

NS = "wa-unit"
PHONE = "106540352242922"


def rt(**fields: Any) -> Runtime:
    return cast(Runtime, SimpleNamespace(**{"meta": None, "platform_app": None, **fields}))


def condition(kind: str, status: str, reason: str, generation: int = 1) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": f"{kind} is {status} ({reason})",
        "observedGeneration": generation,
    }


def test_the_sealed_values_are_the_ones_given() -> None:
    sealed = SealedCredentials.model_validate({"accessToken": "a", "verifyToken": "v"})
    assert reconcile.sealed_values(sealed) == ("a", "v")
    sealed = SealedCredentials.model_validate(
        {"signupCode": "c", "appSecret": "s", "verifyToken": "v"}
    )
    assert reconcile.sealed_values(sealed) == ("c", "s", "v")


def test_a_spec_that_does_not_fit_names_its_fields_never_its_values() -> None:
    spec = {"instanceId": str(uuid.uuid4()), "phoneNumberId": "EAAG-secret", "enabled": "x"}
    with pytest.raises(ChannelFailure) as failed:
        reconcile.parse_spec(spec)
    assert failed.value.reason == INVALID_SPEC
    assert failed.value.message == "spec does not fit the contract at: enabled, phoneNumberId"
    nested = {**spec, "phoneNumberId": PHONE, "enabled": True, "sealed": {"accessToken": ""}}
    with pytest.raises(ChannelFailure) as failed:
        reconcile.parse_spec(nested)
    assert failed.value.message == (
        "spec does not fit the contract at: sealed.accessToken, sealed.verifyToken"
    )
    parsed = reconcile.parse_spec({"instanceId": spec["instanceId"], "phoneNumberId": PHONE})
    assert parsed.phone_number_id == PHONE


def test_without_meta_the_webhook_is_registered_by_hand() -> None:
    spec = reconcile.parse_spec({"instanceId": str(uuid.uuid4()), "phoneNumberId": PHONE})
    assert reconcile.effective_mode(rt(), spec) == "manual"
    assert reconcile.effective_mode(rt(meta=SimpleNamespace(webhook_mode="managed")), spec) == (
        "managed"
    )


def test_the_platform_apps_secret_only_when_one_is_configured() -> None:
    parts: dict[str, Any] = {"kube": None, "keys": None, "secrets": None}
    assert Runtime(namespace=NS, webhook_base_url="", **parts).platform_app_secret is None
    configured = Runtime(
        namespace=NS, webhook_base_url="", platform_app=PlatformApp("1", "s3cret"), **parts
    )
    assert configured.platform_app_secret == "s3cret"


def warnings(current: list[dict[str, Any]], desired: list[dict[str, Any]]) -> list[str]:
    said: list[str] = []
    reconcile._warn_transitions(
        {"conditions": current},
        {"conditions": desired},
        lambda reason, message: said.append(f"{reason}: {message}"),
    )
    return said


def test_a_warning_when_metas_condition_turns_false_or_changes_its_reason_only() -> None:
    banned = condition(CAN_SEND_MESSAGE, "False", NUMBER_BANNED)
    limited = condition(CAN_SEND_MESSAGE, "False", MESSAGING_LIMITED)
    assert warnings([], [banned]) == [f"{NUMBER_BANNED}: {banned['message']}"]
    assert warnings([condition(CAN_SEND_MESSAGE, "True", "x")], [banned]) == [
        f"{NUMBER_BANNED}: {banned['message']}"
    ]
    assert warnings([banned], [banned]) == []  # still so: said once
    assert warnings([banned], [limited]) == [f"{MESSAGING_LIMITED}: {limited['message']}"]
    assert warnings([], [condition(WEBHOOK_REGISTERED, "True", "Registered")]) == []
    assert warnings([], [condition(READY, "False", "NotReady")]) == []  # not Meta's
    assert warnings([], [condition(CREDENTIALS_VALID, "False", "TokenInvalid")]) == [
        "TokenInvalid: CredentialsValid is False (TokenInvalid)"
    ]
    assert warnings([], []) == []
    # Every one of Meta's conditions is looked at, whatever comes before it.
    registered = condition(WEBHOOK_REGISTERED, "True", "Registered")
    not_ready = condition(READY, "False", "NotReady")
    for first in (registered, not_ready):
        assert warnings([], [first, banned]) == [f"{NUMBER_BANNED}: {banned['message']}"]


def reconciles(outcome: str, reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "whatsapp_operator_reconciles_total", {"outcome": outcome, "reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("ready", "failure", "enabled", "outcome", "reason", "counted_ready"),
    [
        (condition(READY, "True", CHANNEL_READY), None, True, "ready", CHANNEL_READY, True),
        (condition(READY, "False", "MetaX"), None, True, "failed", "MetaX", False),
        (None, None, True, "failed", CHANNEL_READY, False),
        (condition(READY, "True", "x"), None, False, "ready", CHANNEL_DISABLED, True),
        (
            condition(READY, "True", "x"),
            ChannelFailure("SecretNameTaken", "m"),
            True,
            "failed",
            "SecretNameTaken",
            False,
        ),
    ],
)
def test_each_reconcile_is_counted_by_its_outcome_and_reason(
    ready: dict[str, Any] | None,
    failure: ChannelFailure | None,
    enabled: bool,
    outcome: str,
    reason: str,
    counted_ready: bool,
) -> None:
    name = str(uuid.uuid4())
    before = reconciles(outcome, reason)
    desired = {"conditions": [ready] if ready else []}
    reconcile._count(ChannelRef(NS, name, "uid", 1), desired, failure, enabled)
    assert reconciles(outcome, reason) == before + 1
    assert metrics.CHANNELS.ready_by_channel.pop(name) is counted_ready
    assert name not in metrics.CAN_SEND.value_by_channel


@pytest.mark.parametrize(
    ("reason", "value"),
    [(MESSAGING_LIMITED, "LIMITED"), (NUMBER_BANNED, "BLOCKED"), ("Unheard", "unknown")],
)
def test_whether_a_channel_can_send_is_counted_by_metas_word(reason: str, value: str) -> None:
    name = str(uuid.uuid4())
    desired = {"conditions": [condition(CAN_SEND_MESSAGE, "False", reason)]}
    reconcile._count(ChannelRef(NS, name, "uid", 1), desired, None, True)
    assert metrics.CAN_SEND.value_by_channel.pop(name) == value
    metrics.CHANNELS.ready_by_channel.pop(name)


def body(generation: int = 2, status: dict[str, Any] | None = None) -> dict[str, Any]:
    metadata = {"namespace": NS, "name": str(uuid.uuid4()), "uid": "u", "generation": generation}
    return {"metadata": metadata, "spec": {"phoneNumberId": PHONE}, "status": status or {}}


@pytest.mark.parametrize(
    ("meta", "valid", "proven"),
    [
        (False, None, True),  # without Meta: the Secret written is the proof
        (True, condition(CREDENTIALS_VALID, "True", "Valid", generation=2), True),
        (True, condition(CREDENTIALS_VALID, "True", "Valid", generation=1), False),  # stale
        (True, condition(CREDENTIALS_VALID, "False", "TokenInvalid", generation=2), False),
        (True, None, False),
    ],
)
def test_the_phone_claim_is_proven_once_meta_accepted_this_generation(
    meta: bool, valid: dict[str, Any] | None, proven: bool
) -> None:
    desired: dict[str, Any] = {"conditions": [valid] if valid else []}
    runtime = rt(meta=SimpleNamespace(webhook_mode="managed") if meta else None)
    reconcile.record_claim(runtime, body(), desired)
    if proven:
        assert desired["phoneClaim"]["phoneNumberId"] == PHONE
        assert desired["phoneClaim"]["since"].endswith("Z")
    else:
        assert "phoneClaim" not in desired
    recorded = body(status={"phoneClaim": {"phoneNumberId": PHONE, "since": "then"}})
    desired = {"conditions": [valid] if valid else []}
    reconcile.record_claim(runtime, recorded, desired)
    assert "phoneClaim" not in desired  # recorded already: kept as it is


def restored() -> float:
    value = REGISTRY.get_sample_value(
        "whatsapp_operator_secret_writes_total", {"action": "restored"}
    )
    return value or 0.0


async def test_a_repair_restores_and_counts_it_but_never_for_a_channel_being_deleted() -> None:
    kube = MemoryKube()
    runtime = await make_runtime(kube)
    name = str(uuid.uuid4())
    channel = channel_body(name, sealed_spec(public_key(kube), name, VALUES))
    await reconcile.reconcile(runtime, channel, {})
    kube.objects[channels_path(NS, name)] = channel
    secret = core_path("secrets", NS, f"whatsapp-{name}")
    before = restored()
    runtime.secrets._on_event("DELETED", kube.objects.pop(secret))  # by hand
    await reconcile.repair(runtime, name)
    assert secret in kube.objects
    assert restored() == before + 1
    await reconcile.repair(runtime, name)  # nothing to restore: nothing counted
    assert restored() == before + 1

    deleting = {**channel, "metadata": {**channel["metadata"], "deletionTimestamp": "now"}}
    kube.objects[channels_path(NS, name)] = deleting
    runtime.secrets._on_event("DELETED", kube.objects.pop(secret))
    await reconcile.repair(runtime, name)
    assert secret not in kube.objects  # its release deletes it; a repair does not bring it back


async def test_a_repair_waits_for_the_write_of_the_channels_secret_in_flight() -> None:
    kube = MemoryKube()
    runtime = await make_runtime(kube)
    name = str(uuid.uuid4())
    channel = channel_body(name, sealed_spec(public_key(kube), name, VALUES))
    kube.objects[channels_path(NS, name)] = channel
    kube.calls.clear()
    async with runtime.secrets.holding(f"whatsapp-{name}"):
        repairing = asyncio.ensure_future(reconcile.repair(runtime, name))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not repairing.done()
        assert kube.calls == []  # not even the channel is read meanwhile
    await repairing
    assert core_path("secrets", NS, f"whatsapp-{name}") in kube.objects


class Schedule:
    def __init__(self) -> None:
        self.dropped: list[str] = []

    def drop(self, name: str) -> None:
        self.dropped.append(name)


async def test_a_released_channel_leaves_the_health_schedule_and_the_metrics() -> None:
    kube = MemoryKube()
    runtime = await make_runtime(kube)
    schedule = Schedule()
    runtime.health = cast(HealthSchedule, schedule)
    name = str(uuid.uuid4())
    channel = channel_body(name, sealed_spec(public_key(kube), name, VALUES))
    await reconcile.reconcile(runtime, channel, {})
    assert name in metrics.CHANNELS.ready_by_channel
    await reconcile.release(runtime, channel)
    assert schedule.dropped == [name]
    assert name not in metrics.CHANNELS.ready_by_channel

"""Issue 19: what `meta.ask` and `meta.release` do against the stand-in made as strict as
Meta documents (tests/graph/meta_documented.py quotes the sources)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from channel_operator.channel_at_meta import (
    OWNED_BY_OPERATOR,
    PREEXISTING,
    Asked,
    Meta,
    ask,
    release,
    remember,
)
from channel_operator.desired import ChannelRef, Credentials
from channel_operator.graph import GraphClient
from graph_standin import Fault, FaultKind, GraphStandin, NumberSeed
from graph_standin.state import PhoneNumber
from whatsapp_channel import reasons
from whatsapp_channel.model import WEBHOOK_REGISTERED, ChannelSpec, WebhookSpec

from tests.graph.conftest import APP_SECRET, PHONE, TOKEN, VERIFY_TOKEN, WABA, Callback

CREDENTIALS = Credentials(TOKEN, APP_SECRET, VERIFY_TOKEN)


@pytest.fixture
def meta(graph: GraphClient) -> Meta:
    return Meta(graph=graph, callback_retries=())


def override(standin: GraphStandin, phone: str) -> str | None:
    return standin.world.numbers[phone].override_callback_uri


def subscribed(standin: GraphStandin, waba_id: str, app_id: str) -> bool:
    return app_id in standin.world.wabas[waba_id].subscribed_apps


def ignore(reason: str, message: str) -> None:
    return None


def channel(phone: str = PHONE, waba_id: str | None = None) -> tuple[ChannelRef, ChannelSpec]:
    name = str(uuid.uuid4())
    spec = ChannelSpec(instance_id=name, phone_number_id=phone, waba_id=waba_id)
    return ChannelRef("ns", name, f"uid-{name}", 1), spec


async def asked(
    meta: Meta,
    callback: Callback,
    spec: ChannelSpec,
    ref: ChannelRef,
    status: dict[str, Any] | None = None,
) -> Asked:
    return await ask(meta, ref, spec, CREDENTIALS, status or {}, callback.url, ignore)


async def test_the_seeds_own_body_without_waba_id_registers_the_numbers_account(
    meta: Meta, standin: GraphStandin, callback: Callback, number: PhoneNumber
) -> None:
    # The token was also granted a newer account that does not hold the number.
    standin.seed(
        NumberSeed(
            phone_number_id="106540352245555",
            waba_id="102290129345555",
            access_token=TOKEN,
            app_secret=APP_SECRET,
        )
    )
    ref, spec = channel()
    answer = await asked(meta, callback, spec, ref)
    assert answer.report.credentials is not None
    assert answer.report.credentials[:2] == (True, reasons.CREDENTIALS_ACCEPTED)
    assert answer.report.webhook is not None
    assert answer.report.webhook[:2] == (True, reasons.OVERRIDE_REGISTERED)
    assert answer.report.facts is not None
    assert answer.report.facts["wabaId"] == WABA
    # The default version's facts: the limit by its v24.0+ field, name review, throughput.
    assert answer.report.facts["messagingLimit"] == "TIER_1K"
    assert answer.report.facts["nameStatus"] == "APPROVED"
    assert answer.report.facts["throughput"] == "STANDARD"
    assert answer.report.facts["platformType"] == "CLOUD_API"
    assert override(standin, PHONE) == callback.url
    assert subscribed(standin, WABA, number.app_id)
    assert not subscribed(standin, "102290129345555", number.app_id)


async def test_a_given_account_without_the_number_is_refused_with_its_own_reason(
    meta: Meta, standin: GraphStandin, callback: Callback, number: PhoneNumber
) -> None:
    standin.seed(
        NumberSeed(
            phone_number_id="106540352245555",
            waba_id="102290129345555",
            access_token=TOKEN,
            app_secret=APP_SECRET,
        )
    )
    ref, spec = channel(waba_id="102290129345555")
    answer = await asked(meta, callback, spec, ref)
    assert answer.refused
    assert answer.report.credentials is not None
    assert answer.report.credentials[:2] == (False, reasons.PHONE_NUMBER_NOT_IN_ACCOUNT)
    assert standin.calls(call="subscribe") == 0
    assert override(standin, PHONE) is None


async def test_a_restart_over_a_confirmed_account_asks_no_discovery(
    meta: Meta, standin: GraphStandin, callback: Callback, number: PhoneNumber
) -> None:
    ref, spec = channel()
    first = await asked(meta, callback, spec, ref)
    assert first.report.facts is not None
    status = {"wabaId": first.report.facts["wabaId"]}
    again = Meta(graph=meta.graph, callback_retries=())  # a new process: nothing cached
    await asked(again, callback, spec, ref, status)
    assert standin.calls(call="phone_numbers") == 1  # the account: confirmed by the status
    assert standin.calls(call="app") == 1  # the app: named by the check's health_status
    assert standin.calls(call="debug_token") == 2  # the token's own check, once a process-day


async def test_the_token_lifecycle_is_recorded_and_an_expiry_warned(
    meta: Meta, standin: GraphStandin, callback: Callback, number: PhoneNumber
) -> None:
    import time

    standin.world.tokens[TOKEN].expires_at = int(time.time()) + 3 * 86400
    warned: list[tuple[str, str]] = []
    ref, spec = channel(waba_id=WABA)
    answer = await ask(
        meta, ref, spec, CREDENTIALS, {}, callback.url, lambda r, m: warned.append((r, m))
    )
    assert answer.report.facts is not None
    assert answer.report.facts["tokenType"] == "SYSTEM_USER"
    assert answer.report.facts["tokenExpiresAt"].endswith("Z")
    assert answer.report.facts["dataAccessExpiresAt"] == "never"
    assert [reason for reason, _ in warned] == [reasons.TOKEN_EXPIRES_SOON]
    # Once per token and day: the next health check asks debug_token no more.
    await ask(meta, ref, spec, CREDENTIALS, {"wabaId": WABA}, callback.url, ignore)
    assert standin.calls(call="debug_token") == 1


def registered(answer: Asked) -> dict[str, Any]:
    """The status the reconcile writes from a registered channel's answer."""
    assert answer.report.webhook is not None
    assert answer.report.webhook[:2] == (True, reasons.OVERRIDE_REGISTERED)
    assert answer.report.facts is not None
    condition = {"type": WEBHOOK_REGISTERED, "status": "True", "reason": answer.report.webhook[1]}
    return {**answer.report.facts, "conditions": [condition]}


async def test_a_subscription_that_predates_the_operator_and_its_override_are_left_alone(
    meta: Meta, standin: GraphStandin, callback: Callback, number: PhoneNumber
) -> None:
    waba = standin.world.wabas[WABA]
    waba.subscribed_apps.add(number.app_id)
    waba.overrides[number.app_id] = "https://waba-level.example.test/hook"
    ref, spec = channel(waba_id=WABA)
    answer = await asked(meta, callback, spec, ref)
    status = registered(answer)
    assert status["appSubscription"] == PREEXISTING
    assert standin.calls(WABA, "subscriptions") == 1
    assert standin.calls(WABA, "subscribe") == 0  # a body-less POST would clear the override
    assert waba.overrides[number.app_id] == "https://waba-level.example.test/hook"
    # The account's last channel goes: the subscription and the override stay.
    restarted = Meta(graph=meta.graph, callback_retries=())
    await release(restarted, ref, spec, CREDENTIALS, status)
    assert standin.calls(WABA, "unsubscribe") == 0
    assert subscribed(standin, WABA, number.app_id)
    assert waba.overrides[number.app_id] == "https://waba-level.example.test/hook"
    assert override(standin, PHONE) is None  # the number's own override was ours: cleared


async def test_the_operators_own_subscription_goes_with_the_accounts_last_channel(
    meta: Meta, standin: GraphStandin, callback: Callback, number: PhoneNumber
) -> None:
    second = "106540352246666"
    standin.seed(
        NumberSeed(phone_number_id=second, waba_id=WABA, access_token=TOKEN, app_secret=APP_SECRET)
    )
    ref, spec = channel(waba_id=WABA)
    status = registered(await asked(meta, callback, spec, ref))
    assert status["appSubscription"] == OWNED_BY_OPERATOR
    assert standin.calls(WABA, "subscribe") == 1
    # A manual channel of the same account (its own number) is still there.
    manual_ref, manual_spec = channel(second, waba_id=WABA)
    manual_spec = manual_spec.model_copy(update={"webhook": WebhookSpec(mode="manual")})
    manual = await asked(meta, callback, manual_spec, manual_ref)
    assert manual.report.facts is not None
    manual_status = dict(manual.report.facts)
    # A restart: what the operator owns is learned from the statuses alone.
    restarted = Meta(graph=meta.graph, callback_retries=())
    remember(restarted, ref, spec, CREDENTIALS, status)
    remember(restarted, manual_ref, manual_spec, CREDENTIALS, manual_status)
    await release(restarted, ref, spec, CREDENTIALS, status)
    assert standin.calls(WABA, "unsubscribe") == 0
    assert subscribed(standin, WABA, number.app_id)
    # The manual channel goes too: no channel of the account remains, the subscription was ours.
    await release(restarted, manual_ref, manual_spec, CREDENTIALS, manual_status)
    assert standin.calls(WABA, "unsubscribe") == 1
    assert not subscribed(standin, WABA, number.app_id)


@pytest.mark.parametrize(
    ("phone_status", "reason"),
    [
        ("PENDING", reasons.NUMBER_NOT_REGISTERED),
        ("BANNED", reasons.NUMBER_BANNED),
        ("RESTRICTED", reasons.NUMBER_RESTRICTED),
        ("DISCONNECTED", reasons.NUMBER_DISCONNECTED),
        ("FLAGGED", reasons.NUMBER_FLAGGED),
    ],
)
async def test_a_number_status_that_cannot_send_is_can_send_false(
    meta: Meta,
    standin: GraphStandin,
    callback: Callback,
    number: PhoneNumber,
    phone_status: str,
    reason: str,
) -> None:
    number.status = phone_status  # health_status itself still says AVAILABLE
    ref, spec = channel(waba_id=WABA)
    answer = await asked(meta, callback, spec, ref)
    assert answer.report.can_send is not None
    assert answer.report.can_send[:2] == (False, reason)
    assert phone_status in answer.report.can_send[2]


@pytest.mark.parametrize(
    ("fault", "reason", "explained"),
    [
        (FaultKind.AUTH_EXCEPTION, reasons.TOKEN_INVALID, "unable to authenticate"),
        (FaultKind.CAPABILITY_MISSING, reasons.CAPABILITY_MISSING, "Capability"),
        (FaultKind.ASSET_ACCESS_MISSING, reasons.ASSET_ACCESS_MISSING, "Business Settings"),
        (FaultKind.POLICY_BLOCKED, reasons.POLICY_BLOCKED, "platform policy"),
        (FaultKind.ACCOUNT_LOCKED, reasons.ACCOUNT_LOCKED, "unable to verify data"),
    ],
)
async def test_a_refusal_has_its_own_reason_and_metas_explanation(
    meta: Meta,
    standin: GraphStandin,
    callback: Callback,
    number: PhoneNumber,
    fault: FaultKind,
    reason: str,
    explained: str,
) -> None:
    number.faults.append(Fault(kind=fault, times=1))
    ref, spec = channel(waba_id=WABA)
    answer = await asked(meta, callback, spec, ref)
    assert answer.refused
    assert answer.retry is None  # never retried in a loop: the slow refusal period asks again
    assert standin.calls(PHONE, "check") == 1
    assert answer.report.credentials is not None
    state, got, message = answer.report.credentials
    assert (state, got) == (False, reason)
    assert explained in message
    assert TOKEN not in message
    assert APP_SECRET not in message


async def test_a_business_account_id_given_as_the_number_is_the_wrong_object(
    meta: Meta, standin: GraphStandin, callback: Callback, number: PhoneNumber
) -> None:
    ref, spec = channel(phone=WABA)
    answer = await asked(meta, callback, spec, ref)
    assert answer.refused
    assert answer.report.credentials is not None
    assert answer.report.credentials[:2] == (False, reasons.WRONG_OBJECT_TYPE)
    assert standin.calls(WABA, "check") == 1  # not a field-by-field retry


async def test_metas_explanation_is_escaped_and_capped(
    meta: Meta,
    standin: GraphStandin,
    callback: Callback,
    number: PhoneNumber,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from graph_standin import errors

    hostile = "line\nbreak\x1b[31m " + TOKEN + " x" * 900
    monkeypatch.setattr(
        errors, "policy_blocked", lambda: errors.GraphFailure(403, "(#368) b", 368, details=hostile)
    )
    number.faults.append(Fault(kind=FaultKind.POLICY_BLOCKED, times=1))
    ref, spec = channel(waba_id=WABA)
    answer = await asked(meta, callback, spec, ref)
    assert answer.report.credentials is not None
    message = answer.report.credentials[2]
    assert "line\\x0abreak\\x1b" in message  # escaped, visible
    assert "\n" not in message
    assert "\x1b" not in message
    assert TOKEN not in message
    assert "more characters" in message  # capped


async def test_manual_mode_subscribes_the_app_and_needs_both(
    meta: Meta, standin: GraphStandin, callback: Callback, number: PhoneNumber
) -> None:
    ref, spec = channel()  # the seed's body: no waba_id
    spec = spec.model_copy(update={"webhook": WebhookSpec(mode="manual")})
    answer = await asked(meta, callback, spec, ref)
    assert subscribed(standin, WABA, number.app_id)  # else Meta delivers nothing
    assert override(standin, PHONE) is None  # manual: no override
    assert answer.report.webhook is not None
    assert answer.report.webhook[:2] == (None, reasons.AWAITING_CHALLENGE)
    assert answer.report.facts is not None
    assert answer.report.facts["appSubscription"] == OWNED_BY_OPERATOR
    # The challenge answered and the subscription in place, but Meta's read-back does not
    # deliver to the channel yet (issue 21: the receiver's note alone decides nothing).
    challenged = {**answer.report.facts, "lastChallengeAt": "2026-12-07T20:00:00Z"}
    again = await asked(meta, callback, spec, ref, challenged)
    assert again.report.webhook is not None
    assert again.report.webhook[:2] == (None, reasons.AWAITING_CHALLENGE)
    # The person entered the channel's URL as the app's callback: True.
    standin.world.apps[number.app_id].callback_url = callback.url
    again = await asked(meta, callback, spec, ref, challenged)
    assert again.report.webhook is not None
    assert again.report.webhook[:2] == (True, reasons.CHALLENGE_ANSWERED)
    # Meta refuses the subscription: the challenge alone is not enough.
    standin.world.wabas[WABA].subscribed_apps.clear()
    fresh = Meta(graph=meta.graph, callback_retries=())
    number.faults.append(Fault(kind=FaultKind.PERMISSION_DENIED, call="subscribe", times=1))
    refused = await asked(fresh, callback, spec, ref, challenged)
    assert refused.report.webhook is not None
    assert refused.report.webhook[:2] == (False, reasons.APP_NOT_SUBSCRIBED)

"""The rules of `channel_at_meta` that read and write a channel's status (issue 23), without
Meta: when a generation is settled (nothing to ask until the health period), what a restart
learns from a status, CanSendMessage from Meta's health, and the facts and times the status
shows, read the same on a machine whose local time is not UTC."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channel_operator.channel_at_meta import (
    OWNED_BY_OPERATOR,
    Meta,
    can_send,
    checked_ago,
    facts,
    is_settled,
    parse_time,
    remember,
    rfc3339,
    subscription,
    token_facts,
)
from channel_operator.desired import ChannelRef, Credentials
from channel_operator.graph import GraphClient, HealthStatus, PhoneNumberCheck, TokenInfo
from whatsapp_channel import reasons
from whatsapp_channel.model import CREDENTIALS_VALID, WEBHOOK_REGISTERED, ChannelSpec

CREDENTIALS = Credentials("plain-token-1", "plain-secret-1", "verify-1")
WABA = "102290129340398"
APP = "1234567890"


@pytest.fixture
def not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local time five and a half hours off UTC."""
    monkeypatch.setenv("TZ", "IST-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def condition(type_: str, status: str, generation: int = 2, reason: str = "R") -> dict[str, Any]:
    return {"type": type_, "status": status, "observedGeneration": generation, "reason": reason}


def settled(*conditions: dict[str, Any], mode: str = "managed", **status: Any) -> bool:
    return is_settled({"conditions": list(conditions), **status}, 2, mode)  # type: ignore[arg-type]


def test_a_generation_is_settled_once_meta_answered_both_conditions() -> None:
    refused, accepted = condition(CREDENTIALS_VALID, "False"), condition(CREDENTIALS_VALID, "True")
    registered = condition(WEBHOOK_REGISTERED, "True")
    assert settled(refused)  # a refusal needs no webhook answer
    assert settled(accepted, registered)
    assert not settled()
    assert not settled(condition(CREDENTIALS_VALID, "False", generation=1))  # an older spec's
    assert not settled(accepted)
    assert not settled(condition(CREDENTIALS_VALID, "Unknown"), registered)
    assert not settled(accepted, condition(WEBHOOK_REGISTERED, "True", generation=1))
    # Manual: settled when the app's subscription is known, even awaiting the challenge.
    awaiting = condition(WEBHOOK_REGISTERED, "Unknown")
    assert settled(accepted, awaiting, mode="manual", appSubscription=OWNED_BY_OPERATOR)
    assert not settled(accepted, awaiting, mode="manual")
    assert not settled(accepted, awaiting, appSubscription=OWNED_BY_OPERATOR)


def remembered(status: dict[str, Any]) -> Meta:
    meta = Meta(graph=GraphClient())
    ref = ChannelRef("ns", "shop", "uid", 1)
    remember(
        meta,
        ref,
        ChannelSpec(instance_id=str(uuid.uuid4()), phone_number_id="106540352242922"),
        CREDENTIALS,
        status,
    )
    return meta


def test_a_restart_learns_the_account_and_its_subscription_from_the_status() -> None:
    key = subscription(APP, WABA)
    ours = condition(WEBHOOK_REGISTERED, "True", reason=reasons.OVERRIDE_REGISTERED)
    status = {"wabaId": WABA, "appId": APP, "conditions": [ours]}
    meta = remembered({**status, "appSubscription": OWNED_BY_OPERATOR})
    assert (meta.accounts.subscribed, meta.accounts.owned) == ({key}, {key})
    assert meta.accounts.channels == {key: {"shop"}}
    challenged = condition(WEBHOOK_REGISTERED, "True", reason=reasons.CHALLENGE_ANSWERED)
    assert remembered({**status, "conditions": [challenged]}).accounts.subscribed == {key}
    for webhook in (
        condition(WEBHOOK_REGISTERED, "False", reason=reasons.OVERRIDE_REGISTERED),
        condition(WEBHOOK_REGISTERED, "True", reason=reasons.AWAITING_CHALLENGE),
    ):
        meta = remembered({**status, "conditions": [webhook]})
        assert (meta.accounts.subscribed, meta.accounts.owned) == (set(), set())
        assert meta.accounts.channels == {key: {"shop"}}
    assert remembered({"wabaId": WABA, "conditions": [ours]}).accounts.channels == {}


def health(value: str, **entity: Any) -> HealthStatus:
    return HealthStatus.model_validate(
        {
            "can_send_message": value,
            "entities": [
                {"entity_type": "PHONE_NUMBER", "id": "1", "can_send_message": value, **entity}
            ],
        }
    )


def test_can_send_reads_metas_health_and_the_numbers_status() -> None:
    assert can_send(None, CREDENTIALS, "PENDING") == (
        False,
        reasons.NUMBER_NOT_REGISTERED,
        "Meta: status PENDING (the number is not registered for the Cloud API)",
    )
    assert can_send(None, CREDENTIALS, "PENDING", registering=True) == (
        None,
        reasons.NUMBER_REGISTERING,
        "Meta: status PENDING; the operator registers it",
    )
    errors = [
        {"error_code": 141000, "error_description": "limit"},
        {"error_code": 141001, "error_description": "quality"},
    ]
    assert can_send(health("BLOCKED", errors=errors), CREDENTIALS) == (
        False,
        reasons.MESSAGING_BLOCKED,
        "Meta: BLOCKED (141000: limit; 141001: quality)",
    )
    info = ["tier 1", "plain-token-1 seen"]
    assert can_send(health("LIMITED", additional_info=info), CREDENTIALS) == (
        True,
        reasons.MESSAGING_LIMITED,
        "Meta: LIMITED (tier 1; [redacted] seen)",
    )
    assert can_send(health("AVAILABLE"), CREDENTIALS) == (
        True,
        reasons.MESSAGING_AVAILABLE,
        "Meta: AVAILABLE",
    )


def test_the_status_facts_are_named_capped_and_stamped() -> None:
    check = PhoneNumberCheck.model_validate(
        {"id": "1", "verified_name": "V" * 250, "quality_rating": "GREEN", "status": "CONNECTED"}
    )
    found = facts(check, WABA, APP, OWNED_BY_OPERATOR)
    stamped = parse_time(found.pop("checkedAt"))
    assert stamped is not None
    assert abs(stamped - time.time()) < 3600
    assert found == {
        "verifiedName": "V" * 200,
        "qualityRating": "GREEN",
        "phoneStatus": "CONNECTED",
        "wabaId": WABA,
        "appId": APP,
        "appSubscription": OWNED_BY_OPERATOR,
    }
    token = TokenInfo(is_valid=True, type="T" * 50, expires_at=0, data_access_expires_at=86400)
    assert token_facts(token) == {
        "tokenType": "T" * 40,
        "tokenExpiresAt": "never",
        "dataAccessExpiresAt": "1970-01-02T00:00:00Z",
    }
    assert "tokenType" not in token_facts(TokenInfo(is_valid=True))


@pytest.mark.usefixtures("not_utc")
def test_times_are_utc_whatever_the_machines_zone() -> None:
    assert rfc3339(86400) == "1970-01-02T00:00:00Z"
    assert parse_time("1970-01-02T00:00:00Z") == 86400.0
    assert parse_time(86400) is None
    status = {"checkedAt": "1970-01-02T00:00:00Z"}
    assert checked_ago(status, now=86405.0) == 5.0
    assert checked_ago(status, now=86000.0) == 0.0  # a clock behind Meta's answer
    ago = checked_ago({"checkedAt": rfc3339(int(time.time()) - 60)})
    assert ago is not None
    assert 59 <= ago < 3600

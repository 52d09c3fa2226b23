"""The rules of `channel_at_meta` that read and write a channel's status (issue 23), without
Meta: when a generation is settled (nothing to ask until the health period), what a restart
learns from a status, CanSendMessage from Meta's health, and the facts and times the status
shows, read the same on a machine whose local time is not UTC."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from channel_operator.channel_at_meta import (
    OWNED_BY_OPERATOR,
    PREEXISTING,
    Accounts,
    Meta,
    account_confirmed,
    can_send,
    checked_ago,
    facts,
    is_settled,
    manual_webhook,
    parse_time,
    release,
    remember,
    rfc3339,
    subscribe_once,
    subscription,
    subscription_problem,
    token_facts,
    waba_of,
)
from channel_operator.desired import ChannelRef, Credentials
from channel_operator.graph import (
    GraphClient,
    GraphCredentials,
    GraphError,
    GraphErrorKind,
    HealthStatus,
    PhoneNumberCheck,
    TokenInfo,
)
from channel_operator.graph.models import WebhookConfiguration
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


def test_the_numbers_account_is_the_specs_or_the_one_found_at_meta() -> None:
    bare = ChannelSpec(instance_id=str(uuid.uuid4()), phone_number_id="106540352242922")
    named = bare.model_copy(update={"waba_id": WABA})
    assert waba_of(bare, {}) is None  # not found yet: no account at all, not "None"
    assert waba_of(bare, {"wabaId": ""}) is None
    assert waba_of(bare, {"wabaId": WABA}) == WABA
    assert waba_of(named, {"wabaId": "999"}) == WABA
    # Confirmed: the status names the account, and it is the spec's when the spec names one.
    assert account_confirmed(named, {"wabaId": WABA})
    assert not account_confirmed(named, {"wabaId": "999"})
    assert not account_confirmed(named, {})
    assert account_confirmed(bare, {"wabaId": "999"})


def test_accounts_know_each_channels_one_account_and_who_subscribed() -> None:
    accounts = Accounts()
    accounts.bind("shop", "app/1")
    accounts.bind("shop", "app/2")  # the spec moved the number to another account
    assert accounts.channels == {"app/1": set(), "app/2": {"shop"}}
    assert accounts.ownership("app/2") is None  # nothing known of its subscription
    accounts.subscribed.add("app/2")
    assert accounts.ownership("app/2") == PREEXISTING
    accounts.owned.add("app/2")
    assert accounts.ownership("app/2") == OWNED_BY_OPERATOR
    accounts.bind("desk", "app/2")
    assert not accounts.unbind("shop", "app/2")  # desk is still there
    assert accounts.unbind("desk", "app/2")  # the account's last channel
    assert "app/2" not in accounts.channels


def test_a_manual_webhook_says_where_meta_delivers_instead() -> None:
    url = "https://hooks.example/whatsapp/shop"
    waiting = manual_webhook(PhoneNumberCheck(id="1"), {}, url)
    assert waiting == (
        None,
        reasons.AWAITING_CHALLENGE,
        f"enter {url} and the channel's verify token in the Meta app",
    )
    elsewhere = "https://elsewhere.example/" + "x" * 300
    check = PhoneNumberCheck(
        id="1", webhook_configuration=WebhookConfiguration(application=elsewhere)
    )
    state, reason, message = manual_webhook(check, {}, url)
    assert (state, reason) == (None, reasons.AWAITING_CHALLENGE)
    assert message.endswith(
        f"in the Meta app; Meta delivers the number's events to {elsewhere[:200]}"
    )


class RefusingGraph:
    """A Graph that refuses the account's subscription read with the token's permissions."""

    def __init__(self) -> None:
        self.error = GraphError(
            GraphErrorKind.PERMISSION_DENIED,
            "subscriptions",
            message="(#200) the token plain-token-1 lacks whatsapp_business_management",
            code=200,
        )

    async def subscribed_apps(self, *args: Any, **kwargs: Any) -> list[Any]:
        raise self.error


async def test_a_subscription_is_not_asked_for_without_the_account_and_the_app() -> None:
    meta = Meta(graph=RefusingGraph())  # type: ignore[arg-type]
    graph_credentials = GraphCredentials("plain-token-1", "plain-secret-1")
    unknown = (None, reasons.NOT_CHECKED, "the number's account or app is not known")
    for waba, app in ((WABA, None), (None, APP), (None, None)):
        assert (
            await subscription_problem(meta, waba, app, graph_credentials, CREDENTIALS) == unknown
        )
    # Both known: Meta's refusal is the condition's message, the token scrubbed from it.
    problem = await subscription_problem(meta, WABA, APP, graph_credentials, CREDENTIALS)
    assert problem is not None
    state, reason, message = problem
    assert (state, reason) == (False, reasons.APP_NOT_SUBSCRIBED)
    assert "lacks whatsapp_business_management" in message
    assert "code 200" in message
    assert "plain-token-1" not in message


class SharedAccountGraph:
    """Meta for two channels of one account: the first token's subscription read waits, then
    is refused; the second token sees the app already subscribed. Every call is recorded with
    the account whose call budget it spends."""

    def __init__(self, refused: GraphCredentials) -> None:
        self.refused = refused
        self.asked = asyncio.Event()
        self.release = asyncio.Event()
        self.calls: list[tuple[str, str, GraphCredentials, str | None]] = []

    async def subscribed_apps(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> list[Any]:
        self.calls.append(("subscriptions", waba_id, credentials, account))
        self.asked.set()
        if credentials is self.refused:
            await self.release.wait()
            raise RefusingGraph().error
        return [SimpleNamespace(id="999"), SimpleNamespace(id=APP)]

    async def subscribe_app(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> None:
        self.calls.append(("subscribe", waba_id, credentials, account))


async def test_a_refused_shared_read_is_asked_again_with_the_waiting_channels_own_token() -> None:
    first, second = GraphCredentials("token-a", "secret-a"), GraphCredentials("token-b", "secret-b")
    graph = SharedAccountGraph(refused=first)
    meta = Meta(graph=graph)  # type: ignore[arg-type]
    key = subscription(APP, WABA)
    asking = asyncio.create_task(subscribe_once(meta, key, WABA, APP, first))
    await graph.asked.wait()
    waiting = asyncio.create_task(subscribe_once(meta, key, WABA, APP, second))
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(graph.calls) == 1  # the second channel waits for the first one's read
    graph.release.set()
    with pytest.raises(GraphError):
        await asking
    await waiting
    # The second asks again with its own token, on the account's budget, and finds the app
    # already subscribed: no POST (which would drop the account's alternate callback URL).
    assert graph.calls == [
        ("subscriptions", WABA, first, key),
        ("subscriptions", WABA, second, key),
    ]
    assert key in meta.accounts.subscribed
    assert meta.accounts.ownership(key) == PREEXISTING


async def test_the_operators_own_subscription_is_charged_to_the_account() -> None:
    credentials = GraphCredentials("token-b", "secret-b")
    graph = SharedAccountGraph(refused=GraphCredentials("token-a", "secret-a"))
    meta = Meta(graph=graph)  # type: ignore[arg-type]
    key = subscription("555", WABA)  # an app not among the account's subscribers
    await subscribe_once(meta, key, WABA, "555", credentials)
    assert graph.calls == [
        ("subscriptions", WABA, credentials, key),
        ("subscribe", WABA, credentials, key),
    ]
    assert meta.accounts.ownership(key) == OWNED_BY_OPERATOR


class ReleasingGraph:
    """Meta for a deleted channel: records each release call with its account."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    async def clear_webhook_override(
        self, phone_number_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> None:
        self.calls.append(("clear override", phone_number_id, account))

    async def unsubscribe_app(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> None:
        self.calls.append(("unsubscribe", waba_id, account))


async def test_releasing_the_accounts_last_channel_undoes_only_what_the_operator_made() -> None:
    graph = ReleasingGraph()
    meta = Meta(graph=graph)  # type: ignore[arg-type]
    ref = ChannelRef("ns", "shop", "uid", 1)
    spec = ChannelSpec(instance_id=str(uuid.uuid4()), phone_number_id="106540352242922")
    key = subscription(APP, WABA)
    meta.accounts.bind("shop", key)
    meta.accounts.subscribed.add(key)
    meta.accounts.owned.add(key)
    registered = condition(WEBHOOK_REGISTERED, "True", reason=reasons.OVERRIDE_REGISTERED)
    status = {"wabaId": WABA, "appId": APP, "conditions": [registered]}
    await release(meta, ref, spec, CREDENTIALS, status)
    assert graph.calls == [
        ("clear override", "106540352242922", key),
        ("unsubscribe", WABA, key),
    ]
    assert key not in meta.accounts.owned
    assert key not in meta.accounts.subscribed
    assert meta.accounts.ownership(key) is None
    # The app never known (no appId): the override is cleared, on no account's budget, and
    # no subscription is touched.
    graph.calls.clear()
    await release(meta, ref, spec, CREDENTIALS, {"wabaId": WABA, "conditions": [registered]})
    assert graph.calls == [("clear override", "106540352242922", None)]

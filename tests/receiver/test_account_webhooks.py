"""The app's own callback (/hooks/whatsapp-app, issue 19 item 10): Meta sends account
webhooks there (`account_update`, `phone_number_quality_update`, ...), never to a number's
override. The challenge is answered with the platform's app verify token; a POST must be
signed with the app secret of a channel of every known business account it names (the
entry id); it only notes lastAccountEventAt on that account's channels. Every client
mistake is a clear 4xx, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from channel_api.receiver.app import Receiver
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Forwarder
from channel_api.receiver.status import StatusWriter
from graph_standin.account_webhooks import account_notification
from prometheus_client import REGISTRY
from whatsapp_channel.kube import channels_path

from tests.receiver.conftest import FORWARD_SECRET, Harness
from tests.support.payloads import (
    channel_secret,
    meta_bytes,
    new_instance_id,
    notification,
    signed,
    text_change,
)
from tests.support.sink import Sink

APP_PATH = "/hooks/whatsapp-app"
APP_VERIFY_TOKEN = "app-verify-token-0123456789"
SECRET_A = "app-secret-a-0123456789abcdef"
SECRET_B = "app-secret-b-0123456789abcdef"
WABA_A = "102290129340398"
WABA_B = "102290129340399"

# Meta's documented example, quoted as published: "phone_number_quality_update webhook
# reference", https://developers.facebook.com/documentation/business-messaging/whatsapp/
# webhooks/reference/phone_number_quality_update
QUALITY_EXAMPLE: dict[str, Any] = {
    "entry": [
        {
            "id": "102290129340398",
            "time": 1748454394,
            "changes": [
                {
                    "value": {
                        "display_phone_number": "15550783881",
                        "event": "THROUGHPUT_UPGRADE",
                        "current_limit": "TIER_UNLIMITED",
                    },
                    "field": "phone_number_quality_update",
                }
            ],
        }
    ],
    "object": "whatsapp_business_account",
}
# "account_update webhook reference" (same site, .../webhooks/reference/account_update):
# the DISABLED_UPDATE event with its ban_info.
BANNED = account_notification(
    WABA_A,
    "account_update",
    {
        "event": "DISABLED_UPDATE",
        "ban_info": {"waba_ban_state": "DISABLE", "waba_ban_date": "October 9, 2023"},
    },
)


@pytest.fixture
async def app(sink: Sink) -> AsyncIterator[Harness]:
    """A receiver with the app verify token, and channels: two numbers of account A (app
    A), one of account B (app B), one of account A without the waba-id label."""
    patches: list[tuple[str, dict[str, Any]]] = []

    async def record(path: str, body: dict[str, Any]) -> None:
        patches.append((path, body))

    cache = ChannelCache()
    forwarder = Forwarder(sink.url_template, FORWARD_SECRET, timeout=2.0, max_connections=16)
    status = StatusWriter(record, "tests", interval=60.0)
    receiver = Receiver(
        cache,
        forwarder,
        status,
        max_body_bytes=64 * 1024,
        app_verify_token=APP_VERIFY_TOKEN.encode(),
    )
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        harness = Harness(cache, receiver, client, status, patches)
        harness.load(*CHANNELS)
        yield harness
    await forwarder.close()


A1, A2, B1, UNLABELLED = (new_instance_id() for _ in range(4))
CHANNELS = [
    channel_secret(A1, "1065000000001", app_secret=SECRET_A, verify_token="t1", waba_id=WABA_A),
    channel_secret(A2, "1065000000002", app_secret=SECRET_A, verify_token="t2", waba_id=WABA_A),
    channel_secret(B1, "1065000000003", app_secret=SECRET_B, verify_token="t3", waba_id=WABA_B),
    channel_secret(UNLABELLED, "1065000000004", app_secret=SECRET_A, verify_token="t4"),
]


def _challenge(mode: str, token: str) -> dict[str, str]:
    return {"hub.mode": mode, "hub.verify_token": token, "hub.challenge": "42"}


async def noted(harness: Harness) -> dict[str, set[str]]:
    await harness.status.flush(all_pending=True)
    return {path.split("/")[-2]: set(body["status"]) for path, body in harness.patches}


def status_of(instance_id: str) -> str:
    return channels_path("tests", instance_id, "status")


async def post(harness: Harness, body: bytes, secret: str | None) -> httpx.Response:
    headers = signed(secret, body) if secret else {"Content-Type": "application/json"}
    return await harness.client.post(APP_PATH, content=body, headers=headers)


@pytest.mark.parametrize(
    ("query", "status"),
    [
        (
            {"hub.mode": "subscribe", "hub.verify_token": APP_VERIFY_TOKEN, "hub.challenge": "42"},
            200,
        ),
        ({"hub.mode": "subscribe", "hub.verify_token": "t1", "hub.challenge": "42"}, 403),
        (
            {"hub.mode": "unsubscribe", "hub.verify_token": APP_VERIFY_TOKEN, "hub.challenge": "4"},
            403,
        ),
        ({"hub.mode": "subscribe", "hub.challenge": "42"}, 403),
    ],
    ids=["app-token", "a-channels-token", "wrong-mode", "no-token"],
)
async def test_the_challenge_takes_the_app_verify_token_only(
    app: Harness, query: dict[str, str], status: int
) -> None:
    answer = await app.client.get(APP_PATH, params=query)
    assert answer.status_code == status
    if status == 200:
        assert answer.text == "42"
    assert await noted(app) == {}


async def test_without_an_app_verify_token_every_challenge_is_refused(harness: Harness) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "42"}
    assert (await harness.client.get(APP_PATH, params=query)).status_code == 403
    query["hub.verify_token"] = APP_VERIFY_TOKEN
    assert (await harness.client.get(APP_PATH, params=query)).status_code == 403


@pytest.mark.parametrize("event", [BANNED, QUALITY_EXAMPLE], ids=["ban", "meta-example"])
async def test_a_signed_account_event_notes_the_accounts_channels(
    app: Harness, event: dict[str, Any]
) -> None:
    answer = await post(app, meta_bytes(event), SECRET_A)
    assert (answer.status_code, answer.text) == (200, "OK")
    # Both numbers of account A; not account B's, not a channel without the label.
    assert await noted(app) == {A1: {"lastAccountEventAt"}, A2: {"lastAccountEventAt"}}
    assert {path for path, _ in app.patches} == {status_of(A1), status_of(A2)}


async def test_a_signature_of_another_accounts_app_is_refused(app: Harness) -> None:
    body = meta_bytes(BANNED)
    for secret in (SECRET_B, "not-the-app-secret"):
        assert (await post(app, body, secret)).status_code == 403
    assert (await post(app, body, None)).status_code == 401
    assert await noted(app) == {}


async def test_each_known_account_must_vouch(app: Harness) -> None:
    """A batch naming A and B signed with A's secret: B's channels never vouched for it."""
    both = {**BANNED, "entry": BANNED["entry"] + [{**BANNED["entry"][0], "id": WABA_B}]}
    assert (await post(app, meta_bytes(both), SECRET_A)).status_code == 403
    assert await noted(app) == {}


async def test_an_unknown_account_is_refused_and_known_ones_go_on(app: Harness) -> None:
    unknown = {**BANNED, "entry": [{**BANNED["entry"][0], "id": "999999999999"}]}
    assert (await post(app, meta_bytes(unknown), SECRET_A)).status_code == 403
    assert await noted(app) == {}
    mixed = {**BANNED, "entry": BANNED["entry"] + unknown["entry"]}
    assert (await post(app, meta_bytes(mixed), SECRET_A)).status_code == 200
    assert set(await noted(app)) == {A1, A2}


async def test_a_disabled_channel_is_not_noted(app: Harness) -> None:
    app.load(
        channel_secret(
            A1, "1065000000001", app_secret=SECRET_A, verify_token="t1", waba_id=WABA_A,
            enabled=False,
        ),
        *CHANNELS[1:],
    )  # fmt: skip
    assert (await post(app, meta_bytes(BANNED), SECRET_A)).status_code == 200
    assert set(await noted(app)) == {A2}


async def test_a_verified_event_without_account_fields_notes_nothing(app: Harness) -> None:
    """A `messages` change at the app callback (a number without override): verified, and
    not an account change; the receiver does not hand messages on from this URL."""
    event = notification([text_change("1065000000001", "hi")])
    event["entry"][0]["id"] = WABA_A
    assert (await post(app, meta_bytes(event), SECRET_A)).status_code == 200
    assert await noted(app) == {}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"object": "whatsapp_business_account"}',
        b'{"object": "page", "entry": []}',
        b'{"object": "whatsapp_business_account", "entry": [{"changes": []}]}',
        b'{"object": "whatsapp_business_account", "entry": [{"id": 102290129340398}]}',
        b'{"object": "whatsapp_business_account", "entry": [{"id": "../x", "changes": []}]}',
        b'{"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", '
        b'"changes": "x"}]}',
        b'{"object": "whatsapp_business_account", "entry": ["x"]}',
        b"\xff\xfe",
        b"[" * 100_000,
    ],
)
async def test_a_malformed_body_is_a_400_even_when_signed(app: Harness, body: bytes) -> None:
    answer = await post(app, body[: 60 * 1024], SECRET_A)
    assert answer.status_code == 400
    assert await noted(app) == {}


async def test_other_methods_and_oversized_bodies(app: Harness) -> None:
    assert (await app.client.put(APP_PATH)).status_code == 405
    big = meta_bytes(BANNED) + b" " * (64 * 1024)
    assert (await post(app, big, SECRET_A)).status_code == 413
    assert (await app.client.get(APP_PATH + "/x")).status_code == 404


async def test_account_events_are_counted_as_the_apps_not_a_channels(app: Harness) -> None:
    """An account webhook refused before its body is read (no signature) moves the `app`
    endpoint's counter, never the shared or per-channel URLs' ones."""

    def missing(endpoint: str) -> float:
        labels = {"endpoint": endpoint, "outcome": "missing_signature"}
        return REGISTRY.get_sample_value("whatsapp_receiver_webhook_events_total", labels) or 0.0

    before = {endpoint: missing(endpoint) for endpoint in ("app", "shared", "per_channel")}
    assert (await post(app, meta_bytes(BANNED), None)).status_code == 401
    after = {endpoint: missing(endpoint) for endpoint in before}
    assert {e: after[e] - before[e] for e in before} == {"app": 1, "shared": 0, "per_channel": 0}

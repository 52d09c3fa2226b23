"""Issue 15: bots written with WhatsApp Cloud API libraries work unchanged behind the receiver.

Meta's documented webhook examples (meta_examples.py), signed as Meta signs them, are sent
to the receiver on the channel's own URL and on the shared URL (in a batch that also holds
another channel's change); the instance is a real pywa bot and a real whatsapp-api-js bot,
each checking `X-Hub-Signature-256` with the channel's app secret. Their handlers must get
each event as their library types it, with Meta's text, ids and timestamps, and never the
other channel's change. A bot holding the wrong app secret refuses, Meta gets a 5xx and the
event is not counted as delivered.
"""

from __future__ import annotations

import contextlib
import datetime
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from channel_api.receiver.app import Receiver
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Forwarder
from channel_api.receiver.status import StatusWriter
from prometheus_client import REGISTRY

from tests.receiver import meta_examples as meta
from tests.receiver.bots import Bot, Handled, ensure_node_peer, node_bot, pywa_bot
from tests.support.payloads import channel_secret, meta_bytes, meta_signature

FORWARD_SECRET = b"bots-forward-secret-0123456789"
APP_SECRET = "bot-channel-app-secret-0123456789"  # the Meta app's, shared by both channels
PHONE = meta.PHONE_NUMBER_ID  # the bot's channel
OTHER_PHONE = "106540352249555"  # another tenant's channel on the same Meta app
OTHER_WABA = "102290129349999"
NON_ASCII = "Zoë fragt: gibt's das in Grün? ça coûte 10 € 😀"

BotFactory = Callable[[str, str], AbstractAsyncContextManager[Bot]]


def _pywa(instance_id: str, app_secret: str) -> AbstractAsyncContextManager[Bot]:
    return pywa_bot(instance_id, PHONE, app_secret)


@pytest.fixture(params=["pywa", "whatsapp-api-js"])
def bot_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "whatsapp-api-js":
        ensure_node_peer()
    return kind


def _factory(kind: str) -> BotFactory:
    return _pywa if kind == "pywa" else node_bot


class Meta:
    """Meta's side: the receiver (in-process, its real forwarder) reached over ASGI."""

    def __init__(self, client: httpx.AsyncClient, bot: Bot, other_instance: str) -> None:
        self.client = client
        self.bot = bot
        self.other_instance = other_instance

    async def post(self, event: dict[str, Any], *, shared: bool = False) -> httpx.Response:
        body = meta_bytes(event)
        path = "/hooks/whatsapp" if shared else f"/hooks/whatsapp/{self.bot.instance_id}"
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(APP_SECRET.encode(), body),
        }
        return await self.client.post(path, content=body, headers=headers)


@pytest.fixture
def behind_receiver() -> Callable[[Bot], AbstractAsyncContextManager[Meta]]:
    @contextlib.asynccontextmanager
    async def start(bot: Bot) -> AsyncIterator[Meta]:
        other_instance = str(uuid.uuid4())
        cache = ChannelCache()
        secrets = [
            channel_secret(bot.instance_id, PHONE, app_secret=APP_SECRET, verify_token="v1"),
            channel_secret(other_instance, OTHER_PHONE, app_secret=APP_SECRET, verify_token="v2"),
        ]
        cache.apply("SYNC", {"items": secrets})  # as the watch's first list does
        cache.mark_synced()

        async def no_status_writes(path: str, body: dict[str, Any]) -> None:
            return None

        forwarder = Forwarder(bot.url_template, FORWARD_SECRET, timeout=20.0, max_connections=8)
        status = StatusWriter(no_status_writes, "tests", interval=60.0)
        receiver = Receiver(cache, forwarder, status, max_body_bytes=3 * 1024 * 1024)
        transport = httpx.ASGITransport(app=receiver)
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://receiver", timeout=60
            ) as client:
                yield Meta(client, bot, other_instance)
        finally:
            await forwarder.close()

    return start


def _examples() -> list[tuple[str, dict[str, Any]]]:
    non_ascii = meta.for_phone(meta.TEXT, PHONE, body=NON_ASCII)
    non_ascii["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["name"] = "Zoë Müller"
    return [*meta.EXAMPLES.items(), ("non_ascii_text", non_ascii)]


def _utc(timestamp: str) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(int(timestamp), datetime.UTC)


def assert_pywa_typed(handled: Handled, event: dict[str, Any]) -> None:
    """pywa made of the forwarded event what it makes of Meta's: same type, text, ids,
    timestamps."""
    value = meta.change_of(event)["value"]
    update = handled.update
    assert handled.phone_number_id == PHONE
    if "statuses" in value:
        sent = value["statuses"][0]
        assert handled.kind == "status"
        assert update.id == sent["id"]
        assert update.status.value == sent["status"]
        assert update.timestamp == _utc(sent["timestamp"])
        assert update.from_user.wa_id == sent["recipient_id"]
        assert update.from_user.bsuid == value["contacts"][0]["user_id"]
        if "errors" in sent:
            assert update.error is not None
            assert update.error.code == sent["errors"][0]["code"]
        else:
            assert update.error is None
        return
    message = value["messages"][0]
    assert update.id == message["id"]
    assert update.timestamp == _utc(message["timestamp"])
    assert update.from_user.wa_id == message["from"]
    assert update.from_user.name == value["contacts"][0]["profile"]["name"]
    assert update.from_user.bsuid == value["contacts"][0]["user_id"]
    if message["type"] == "interactive":
        assert handled.kind == "callback_button"
        reply = message["interactive"]["button_reply"]
        assert (update.data, update.title) == (reply["id"], reply["title"])
        assert update.reply_to_message.id == message["context"]["id"]
        return
    assert handled.kind == "message"
    assert update.type.value == message["type"]
    if message["type"] == "text":
        assert update.text == message["text"]["body"]
    elif message["type"] == "image":
        image = message["image"]
        assert update.image.id == image["id"]
        assert update.image.sha256 == image["sha256"]
        assert update.image.mime_type == image["mime_type"]
        assert update.caption == image["caption"]
    else:
        assert update.error is not None
        assert update.error.code == message["errors"][0]["code"]


def assert_node_handled(handled: Handled, event: dict[str, Any]) -> None:
    """whatsapp-api-js handed its handler what Meta's event holds."""
    value = meta.change_of(event)["value"]
    said = handled.update
    assert handled.phone_number_id == PHONE
    if "statuses" in value:
        sent = value["statuses"][0]
        assert handled.kind == "status"
        assert (said["id"], said["status"], said["timestamp"], said["phone"]) == (
            sent["id"],
            sent["status"],
            sent["timestamp"],
            sent["recipient_id"],
        )
        assert said["error"] == (sent["errors"][0] if "errors" in sent else None)
        return
    assert handled.kind == "message"
    assert said["message"] == value["messages"][0]  # text, ids, timestamps, all of it
    assert said["from"] == value["contacts"][0]["wa_id"]
    assert said["name"] == value["contacts"][0]["profile"]["name"]


def _assert_typed(kind: str, handled: Handled, event: dict[str, Any]) -> None:
    (assert_pywa_typed if kind == "pywa" else assert_node_handled)(handled, event)


async def test_every_meta_example_on_the_channel_url_reaches_the_bot_typed(
    bot_kind: str, behind_receiver: Callable[[Bot], AbstractAsyncContextManager[Meta]]
) -> None:
    examples = _examples()
    async with _factory(bot_kind)(str(uuid.uuid4()), APP_SECRET) as bot, behind_receiver(bot) as m:
        for n, (name, event) in enumerate(examples, start=1):
            answer = await m.post(event)
            assert answer.status_code == 200, (name, answer.text)
            await bot.wait_for(handled=n, requests=n)
            _assert_typed(bot_kind, bot.handled[-1], event)
            # Byte for byte what Meta sent (pywa's app records the bytes it was given).
            last = bot.to_bot()[-1]
            assert last.status == 200
            if last.body is not None:
                assert last.body == meta_bytes(event)
        assert len(bot.handled) == len(bot.to_bot()) == len(examples)
        assert not bot.to_others()


async def test_a_shared_batch_gives_the_bot_its_change_only_typed_as_from_meta(
    bot_kind: str, behind_receiver: Callable[[Bot], AbstractAsyncContextManager[Meta]]
) -> None:
    examples = _examples()
    async with _factory(bot_kind)(str(uuid.uuid4()), APP_SECRET) as bot, behind_receiver(bot) as m:
        for n, (name, event) in enumerate(examples, start=1):
            # The other channel's change first: a library reads entry[0].changes[0].
            other = meta.for_phone(event, OTHER_PHONE)
            other["entry"][0]["id"] = OTHER_WABA
            batch = {
                "object": "whatsapp_business_account",
                "entry": other["entry"] + event["entry"],
            }
            answer = await m.post(batch, shared=True)
            assert answer.status_code == 200, (name, answer.text)
            await bot.wait_for(handled=n, requests=2 * n)
            _assert_typed(bot_kind, bot.handled[-1], event)
            to_others = bot.to_others()
            assert len(to_others) == n
            assert to_others[-1].path == f"/agents/{m.other_instance}/whatsapp"
            assert to_others[-1].body is not None
            assert PHONE not in to_others[-1].body.decode()
            last = bot.to_bot()[-1]
            assert last.status == 200
            if last.body is not None:  # re-encoded as Meta encodes: ASCII, \\u escapes
                assert OTHER_PHONE.encode() not in last.body
                assert last.body.isascii()
        assert len(bot.handled) == len(bot.to_bot()) == len(examples)
        assert all(h.phone_number_id == PHONE for h in bot.handled)


def _count(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_bot_with_another_app_secret_refuses_and_meta_gets_a_5xx(
    bot_kind: str, behind_receiver: Callable[[Bot], AbstractAsyncContextManager[Meta]]
) -> None:
    events = "whatsapp_receiver_webhook_events_total"
    failures = "whatsapp_receiver_forward_failures_total"
    async with (
        _factory(bot_kind)(str(uuid.uuid4()), "not-the-channel-app-secret") as bot,
        behind_receiver(bot) as m,
    ):
        for shared in (False, True):
            endpoint = "shared" if shared else "per_channel"
            forwarded = _count(events, endpoint=endpoint, outcome="forwarded")
            refused = _count(events, endpoint=endpoint, outcome="forward_refused")
            failed = _count(failures, reason="refused")
            answer = await m.post(meta.TEXT, shared=shared)
            assert answer.status_code == 502
            assert _count(events, endpoint=endpoint, outcome="forwarded") == forwarded
            assert _count(events, endpoint=endpoint, outcome="forward_refused") == refused + 1
            assert _count(failures, reason="refused") == failed + 1
        await bot.wait_for(requests=2)
        refusal = 403 if bot_kind == "pywa" else 401  # each library's answer to a bad signature
        assert [r.status for r in bot.to_bot()] == [refusal, refusal]
        assert not bot.handled

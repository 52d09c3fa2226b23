"""Each refusal and failure the receiver tells Meta apart only in its metrics is counted under
its own outcome, once (issue 14): foreign_phone, too_large, not_ready, forward_timed_out;
and a receiver made from default settings refuses bodies over 3 MiB.

The counters are process-wide (prometheus_client's registry), so each check reads them
before and after its own requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from channel_api.receiver.app import Receiver, create_app
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Forwarder
from channel_api.receiver.settings import ReceiverSettings
from channel_api.receiver.status import StatusWriter
from prometheus_client import REGISTRY
from whatsapp_channel.kube import Kube, KubeConfig

from tests.receiver.conftest import FORWARD_SECRET
from tests.support.payloads import (
    channel_secret,
    fill_cache,
    meta_bytes,
    new_instance_id,
    notification,
    signed,
    text_change,
)
from tests.support.sink import Sink

APP_SECRET = "metric-outcomes-app-secret-0123456789"
VERIFY_TOKEN = "metric-outcomes-verify-token"
PHONE = "106540352247001"
EVENTS = "whatsapp_receiver_webhook_events_total"
FAILURES = "whatsapp_receiver_forward_failures_total"
DEFAULT_LIMIT = 3 * 1024 * 1024


def counted(outcome: str, endpoint: str = "per_channel") -> float:
    return REGISTRY.get_sample_value(EVENTS, {"endpoint": endpoint, "outcome": outcome}) or 0.0


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value(FAILURES, {"reason": reason}) or 0.0


class Moved:
    """How far each events counter moved while the block ran."""

    def __init__(self) -> None:
        self.outcomes = (
            "forwarded",
            "forward_refused",
            "forward_timed_out",
            "bad_signature",
            "missing_signature",
            "unknown_channel",
            "foreign_phone",
            "malformed",
            "too_large",
            "not_ready",
        )
        self.before: dict[tuple[str, str], float] = {}
        self.after: dict[tuple[str, str], float] = {}

    def _read(self) -> dict[tuple[str, str], float]:
        return {
            (endpoint, outcome): counted(outcome, endpoint)
            for endpoint in ("per_channel", "shared")
            for outcome in self.outcomes
        }

    def __enter__(self) -> Moved:
        self.before = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        self.after = self._read()

    def changes(self) -> dict[tuple[str, str], float]:
        return {
            key: self.after[key] - self.before[key]
            for key in self.before
            if self.after[key] != self.before[key]
        }


@pytest.fixture
async def receiving(sink: Sink) -> AsyncIterator[tuple[httpx.AsyncClient, ChannelCache, str]]:
    async def record(path: str, body: object) -> None:
        return None

    cache = ChannelCache()
    forwarder = Forwarder(sink.url_template, FORWARD_SECRET, timeout=0.5, max_connections=4)
    receiver = Receiver(
        cache, forwarder, StatusWriter(record, "t", interval=60), max_body_bytes=4096
    )
    instance = new_instance_id()
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield client, cache, instance
    await forwarder.close()


def ready(cache: ChannelCache, instance: str) -> None:
    fill_cache(
        cache, [channel_secret(instance, PHONE, app_secret=APP_SECRET, verify_token=VERIFY_TOKEN)]
    )
    cache.mark_synced()


async def test_foreign_phone(receiving: tuple[httpx.AsyncClient, ChannelCache, str], sink: Sink):
    client, cache, instance = receiving
    ready(cache, instance)
    body = meta_bytes(notification([text_change("999999999999", "not this channel's")]))
    with Moved() as moved:
        answer = await client.post(
            f"/hooks/whatsapp/{instance}", content=body, headers=signed(APP_SECRET, body)
        )
    assert (answer.status_code, answer.text) == (403, "Forbidden")
    assert moved.changes() == {("per_channel", "foreign_phone"): 1}
    assert sink.received == []


@pytest.mark.parametrize("endpoint", ["per_channel", "shared"])
async def test_too_large_by_its_length_or_as_it_streams(
    receiving: tuple[httpx.AsyncClient, ChannelCache, str], endpoint: str
):
    client, cache, instance = receiving
    ready(cache, instance)
    url = f"/hooks/whatsapp/{instance}" if endpoint == "per_channel" else "/hooks/whatsapp"
    body = b"x" * 4097

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(5):
            yield b"x" * 1000

    with Moved() as moved:
        declared = await client.post(url, content=body, headers=signed(APP_SECRET, body))
        assert (declared.status_code, declared.text) == (413, "Payload too large")
    assert moved.changes() == {(endpoint, "too_large"): 1}
    with Moved() as moved:
        chunked = await client.post(url, content=streamed(), headers=signed(APP_SECRET, body))
        assert chunked.status_code == 413
    assert moved.changes() == {(endpoint, "too_large"): 1}


async def test_not_ready(receiving: tuple[httpx.AsyncClient, ChannelCache, str]):
    client, _, instance = receiving
    body = meta_bytes(notification([text_change(PHONE, "too early")]))
    with Moved() as moved:
        early = await client.post(
            f"/hooks/whatsapp/{instance}", content=body, headers=signed(APP_SECRET, body)
        )
        shared = await client.post(
            "/hooks/whatsapp", content=body, headers=signed(APP_SECRET, body)
        )
    assert (early.status_code, early.text) == (503, "Not ready")
    assert shared.status_code == 503
    assert moved.changes() == {("per_channel", "not_ready"): 1, ("shared", "not_ready"): 1}


async def test_forward_timed_out(
    receiving: tuple[httpx.AsyncClient, ChannelCache, str], sink: Sink
):
    client, cache, instance = receiving
    ready(cache, instance)
    sink.delay = 2.0  # the forwarder gives up after 0.5 s, before any answer can come
    body = meta_bytes(notification([text_change(PHONE, "nobody answers")]))
    timed_out = failures("timed_out")
    with Moved() as moved:
        answer = await client.post(
            f"/hooks/whatsapp/{instance}", content=body, headers=signed(APP_SECRET, body)
        )
    assert (answer.status_code, answer.text) == (504, "Instance did not answer in time")
    assert moved.changes() == {("per_channel", "forward_timed_out"): 1}
    assert failures("timed_out") == timed_out + 1


@pytest.fixture
def default_receiver(tmp_path: Path) -> Receiver:
    secret = tmp_path / "forward-secret"
    secret.write_bytes(FORWARD_SECRET)
    settings = ReceiverSettings(
        forward_url_template="http://127.0.0.1:9/{instance_id}", forward_secret_file=secret
    )
    assert settings.max_body_bytes == DEFAULT_LIMIT
    # Its lifespan (the watch) is never run: the cache stays unsynced, which the size check
    # comes before.
    return create_app(settings, Kube(KubeConfig(server="https://127.0.0.1:9")))


async def test_the_default_body_limit_is_3_mib(default_receiver: Receiver):
    instance = new_instance_id()
    transport = httpx.ASGITransport(app=default_receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        over = b"x" * (DEFAULT_LIMIT + 1)
        at = b"x" * DEFAULT_LIMIT
        with Moved() as moved:
            refused = await client.post(
                f"/hooks/whatsapp/{instance}", content=over, headers=signed(APP_SECRET, over)
            )
            taken = await client.post(
                f"/hooks/whatsapp/{instance}", content=at, headers=signed(APP_SECRET, at)
            )
    assert refused.status_code == 413
    assert taken.status_code == 503  # read whole, then: not ready (no watch runs here)
    assert moved.changes() == {("per_channel", "too_large"): 1, ("per_channel", "not_ready"): 1}

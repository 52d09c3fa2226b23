"""Fixtures for the receiver's tests: a sink standing in for the instances, and a receiver
whose cache is fed Secrets directly (the watch itself is tested against the real apiserver)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from channel_api.receiver.app import Receiver
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Forwarder
from channel_api.receiver.status import StatusWriter

from tests.support.sink import Sink

FORWARD_SECRET = b"forward-secret-for-tests-0123456789"


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    server = Sink()
    await server.start()
    yield server
    await server.stop()


@dataclass
class Harness:
    cache: ChannelCache
    receiver: Receiver
    client: httpx.AsyncClient
    status: StatusWriter
    patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def load(self, *secrets: dict[str, Any]) -> None:
        self.cache.apply("SYNC", {"items": list(secrets)})  # as the watch's first list does
        self.cache.mark_synced()


@pytest.fixture
async def harness(sink: Sink) -> AsyncIterator[Harness]:
    patches: list[tuple[str, dict[str, Any]]] = []

    async def record(path: str, body: dict[str, Any]) -> None:
        patches.append((path, body))

    cache = ChannelCache()
    forwarder = Forwarder(sink.url_template, FORWARD_SECRET, timeout=2.0, max_connections=16)
    status = StatusWriter(record, "tests", interval=60.0)
    receiver = Receiver(cache, forwarder, status, max_body_bytes=64 * 1024)
    transport = httpx.ASGITransport(app=receiver)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield Harness(cache, receiver, client, status, patches)
    await forwarder.close()

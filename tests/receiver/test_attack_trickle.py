"""Issue 21, item 3, against a real receiver process: on the shared URL nothing is known
before the body, so connections trickling bodies (reopened after each 408) held every request
slot, and honest signed events got 503. Expected: one client address holds at most its share
of the slots (the TCP peer's address; behind a trusted proxy the one it forwarded, and a
forwarded address from anyone else is ignored), and the shared URL and the per-channel URLs
have slots of their own."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from localkube.services import Service

from tests.receiver.standalone_receiver import started
from tests.support.payloads import (
    channel_secret,
    meta_bytes,
    new_instance_id,
    notification,
    signed,
    text_change,
)
from tests.support.raw_http import MIB, ending
from tests.support.sink import Sink
from tests.support.waiting import eventually

APP_SECRET = "trickle-app-secret-0123456789"
PHONE = "106540352240031"
SLOTS = 64
PER_CLIENT = 8
TRICKLERS = 100  # from one address: more than all the slots
PROXY = "127.0.0.4"
HONEST = "127.0.0.3"


@pytest.fixture
def receiver(sink: Sink, tmp_path: Path) -> Iterator[tuple[Service, str]]:
    instance = new_instance_id()
    secrets = [channel_secret(instance, PHONE, app_secret=APP_SECRET, verify_token="k" * 20)]
    env = {
        "WA_RECEIVER_MAX_CONCURRENT_REQUESTS": str(SLOTS),
        "WA_RECEIVER_MAX_REQUESTS_PER_CLIENT": str(PER_CLIENT),
        # Long enough that each trickler holds its slot while honest events are sent.
        "WA_RECEIVER_BODY_TIMEOUT_SECONDS": "8",
        "WA_RECEIVER_TRUSTED_PROXIES": PROXY,
    }
    with started(tmp_path, sink.url_template, secrets, env) as service:
        yield service, instance


async def _trickle(
    port: int, source: str, path: str, forwarded: str | None, seen: Counter[str]
) -> None:
    """Bodies declared 3 MiB, sent a byte at a time; each connection reopened once the
    receiver ends it; until cancelled. `seen` counts how each was ended."""
    while True:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        head = (
            f"POST {path} HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
            f"X-Hub-Signature-256: sha256={'0' * 64}\r\nContent-Length: {3 * MIB}\r\n"
        )
        if forwarded:
            head += f"X-Forwarded-For: {forwarded}\r\n"
        writer.write(head.encode() + b"\r\n{")
        ended = asyncio.ensure_future(ending(reader))
        try:
            while not ended.done():
                await asyncio.wait([ended], timeout=0.5)
                if not writer.is_closing():
                    writer.write(b" ")
            seen[ended.result()] += 1
        finally:
            ended.cancel()
            writer.close()


@asynccontextmanager
async def _trickling(
    service: Service, sources: list[str], paths: list[str], forwarded: list[str | None]
) -> AsyncIterator[Counter[str]]:
    """`TRICKLERS` tricklers per source, spread over `paths` and `forwarded` addresses; once
    the receiver has refused one of them (a client's share, or a pool, is full)."""
    port = int(service.url.rsplit(":", 1)[1])
    seen: Counter[str] = Counter()
    tasks = [
        asyncio.create_task(
            _trickle(port, source, paths[n % len(paths)], forwarded[n % len(forwarded)], seen)
        )
        for source in sources
        for n in range(TRICKLERS // len(sources))
    ]

    async def refused() -> bool:
        for task in tasks:
            assert not task.done(), task.exception()
        return seen["503"] > 0

    try:
        await eventually(refused, "a trickler refused")
        yield seen
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _client(service: Service, source: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=service.url, transport=transport, timeout=60)


async def _honest(
    http: httpx.AsyncClient, path: str, text: str, headers: dict[str, str] | None = None
) -> int:
    body = meta_bytes(notification([text_change(PHONE, text)]))
    answer = await http.post(
        path, content=body, headers={**signed(APP_SECRET, body), **(headers or {})}
    )
    return answer.status_code


async def test_one_address_trickling_bodies_cannot_hold_the_slots(
    receiver: tuple[Service, str], sink: Sink
) -> None:
    service, instance = receiver
    paths = ["/hooks/whatsapp", f"/hooks/whatsapp/{instance}"]
    # A made-up X-Forwarded-For from a peer that is not a trusted proxy changes nothing.
    spoofed: list[str | None] = [f"10.0.{n}.1" for n in range(TRICKLERS)]
    async with (
        _trickling(service, ["127.0.0.2"], paths, spoofed) as seen,
        _client(service, HONEST) as http,
    ):
        statuses = [await _honest(http, paths[n % 2], f"honest {n}") for n in range(10)]
        assert statuses == [200] * 10
    assert set(seen) <= {"408", "503", "closed"}, seen

    # Behind the trusted proxy, each client counts by the address it forwarded.
    async with (
        _trickling(service, [PROXY], paths, ["203.0.113.9"]),
        _client(service, PROXY) as http,
    ):
        forwarded = {"X-Forwarded-For": "198.51.100.7"}
        statuses = [await _honest(http, paths[n % 2], f"proxied {n}", forwarded) for n in range(10)]
        assert statuses == [200] * 10
    assert len(sink.received) == 20


async def test_the_shared_url_and_the_channel_urls_have_slots_of_their_own(
    receiver: tuple[Service, str], sink: Sink
) -> None:
    service, instance = receiver
    # Enough addresses to take every slot of the shared URL.
    sources = [f"127.0.1.{n}" for n in range(1, SLOTS // PER_CLIENT + 3)]
    async with (
        _trickling(service, sources, ["/hooks/whatsapp"], [None]),
        _client(service, HONEST) as http,
    ):
        # Until the shared URL's slots are all taken (each taker holds its slot for seconds).
        probes = [await _honest(http, "/hooks/whatsapp", "probe") for _ in range(3)]
        while probes[-1] != 503:
            assert len(probes) < 500, probes
            probes.append(await _honest(http, "/hooks/whatsapp", "probe"))
        statuses = [
            await _honest(http, f"/hooks/whatsapp/{instance}", f"own URL {n}") for n in range(10)
        ]
        assert statuses == [200] * 10

"""Issue 21, item 2, against a real receiver process (uvicorn with httptools, as deployed):
request heads had no bound. 10 MiB of small header lines on one connection took the receiver
from 65 to 307 MiB, past the chart's 256Mi limit, before admission control saw anything, and
3,000 half-sent heads were all still open 40 s later. Expected: a head past its cap is cut off
(431) with the process's memory barely moved; half-sent heads are closed at their deadline
(408), connections past the process's cap are refused, and honest events are answered all
along."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
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
from tests.support.raw_http import (
    LONG_HEAD_LINES,
    MIB,
    ending,
    half_heads,
    long_head,
    memory_bytes,
)
from tests.support.sink import Sink

APP_SECRET = "heads-app-secret-0123456789"
PHONE = "106540352240021"
MEMORY_LIMIT = 256 * MIB  # the chart's resources.limits.memory for the receiver
HALF_HEADS = 3000
EXTRA = 200  # connections opened past the half-heads, beyond the cap
MAX_CONNECTIONS = HALF_HEADS + 100
# Long enough that the half-heads are surely held while honest events are sent.
HEAD_TIMEOUT = 12


@pytest.fixture
def receiver(sink: Sink, tmp_path: Path) -> Iterator[tuple[Service, str]]:
    instance = new_instance_id()
    secrets = [channel_secret(instance, PHONE, app_secret=APP_SECRET, verify_token="h" * 20)]
    env = {
        "WA_RECEIVER_HEAD_TIMEOUT_SECONDS": str(HEAD_TIMEOUT),
        "WA_RECEIVER_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    with started(tmp_path, sink.url_template, secrets, env) as service:
        yield service, instance


async def _honest(http: httpx.AsyncClient, instance: str, text: str) -> None:
    body = meta_bytes(notification([text_change(PHONE, text)]))
    answer = await http.post(
        f"/hooks/whatsapp/{instance}", content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 200, answer.text


async def test_ten_mib_heads_are_cut_off_and_memory_stays_put(
    receiver: tuple[Service, str],
) -> None:
    service, instance = receiver
    pid = service.process.pid
    port = int(service.url.rsplit(":", 1)[1])
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        for n in range(5):  # warm-up: every code path of an honest event has run once
            await _honest(http, instance, f"before {n}")
        rss_before = memory_bytes("VmRSS", pid)
        endings = await asyncio.gather(*(long_head(port, line) for line in LONG_HEAD_LINES))
        # The 431 is written, but a client still sending meets the close's reset first.
        assert set(endings) <= {"431", "closed"}, endings
        for n in range(5):
            await _honest(http, instance, f"after {n}")
    peak = memory_bytes("VmHWM", pid)
    assert peak < MEMORY_LIMIT
    assert peak - rss_before < 32 * MIB, (
        f"peak RSS {peak / MIB:.0f} MiB, {(peak - rss_before) / MIB:.0f} MiB over "
        f"{rss_before / MIB:.0f} MiB before the attack"
    )


@pytest.mark.parametrize(
    "head",
    [
        b"X-Big: " + b"b" * (17 * 1024) + b"\r\n",  # past 16 KiB
        b"".join(b"X-F%d: 1\r\n" % n for n in range(101)),  # past 100 fields
    ],
    ids=["bytes", "fields"],
)
async def test_a_head_past_its_cap_is_answered_431(
    receiver: tuple[Service, str], head: bytes
) -> None:
    service, instance = receiver
    port = int(service.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n" + head + b"\r\n")
    assert await asyncio.wait_for(ending(reader), timeout=60) == "431"
    writer.close()
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        answer = await http.get("/healthz", headers={f"X-F{n}": "1" for n in range(50)})
        assert answer.status_code == 200
        await _honest(http, instance, "a head of an ordinary size")


async def test_half_heads_are_closed_at_their_deadline_and_honest_events_pass(
    receiver: tuple[Service, str], sink: Sink
) -> None:
    service, instance = receiver
    pid = service.process.pid
    port = int(service.url.rsplit(":", 1)[1])
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        await _honest(http, instance, "before")
        connections = await half_heads(port, HALF_HEADS)
        attack = [asyncio.create_task(ending(reader)) for reader, _ in connections]
        for n in range(5):
            await _honest(http, instance, f"meanwhile {n}")
        assert not all(task.done() for task in attack), "answered before the honest events"

        # Past the process's connection cap (the half-heads and this client's one), a new
        # connection is closed at once, long before the head deadline.
        connections += await half_heads(port, EXTRA)
        refused = [asyncio.create_task(ending(reader)) for reader, _ in connections[HALF_HEADS:]]
        done, _ = await asyncio.wait(refused, timeout=HEAD_TIMEOUT / 2)
        closed_at_once = [task.result() for task in done]
        assert closed_at_once.count("closed") >= EXTRA - (MAX_CONNECTIONS - HALF_HEADS)

        endings = await asyncio.wait_for(asyncio.gather(*attack, *refused), timeout=120)
        assert endings[:HALF_HEADS] == ["408"] * HALF_HEADS
        assert set(endings[HALF_HEADS:]) <= {"408", "closed"}
        await _honest(http, instance, "after")
    for _, writer in connections:
        writer.close()
    assert memory_bytes("VmHWM", pid) < MEMORY_LIMIT
    assert len(sink.received) == 7

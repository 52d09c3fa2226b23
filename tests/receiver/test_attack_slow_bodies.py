"""Issue 13, attack 1 against a real receiver process (uvicorn, as deployed): many clients
send a known channel's URL, or the shared URL, a 3 MiB body with a made-up signature, all of
it but the last byte, and then hold the connection. Today each such connection kept ~3 MiB
for as long as it liked. Expected: the process's memory stays within its byte budget, each
attacker is answered (408 once the body deadline passes, 503 past the budget) or cut off, and
honest, signed events are served all along. Also attack 4 at the HTTP level: deeply nested
JSON gets 400, and nothing ever logs a traceback."""

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
from tests.support.raw_http import memory_bytes
from tests.support.sink import Sink

APP_SECRET = "slow-bodies-app-secret-0123456789"
PHONE = "106540352240001"
MIB = 1024 * 1024
ATTACKERS = 60
ATTACK_BODY = 3 * MIB
BUDGET = 16 * MIB
# Honest events always fit beside the attack: large bodies may fill 3/4 of the budget, and
# the attackers' first 64 KiB each (60 x 64 KiB) stay under the last quarter.
assert ATTACKERS * 64 * 1024 < BUDGET // 4 - 64 * 1024
# What the attack may add to the receiver's peak RSS: its byte budget, uvicorn's per-
# connection buffers and allocator slack. Unbounded, 60 such bodies are ~180 MiB.
RSS_BOUND = 64 * MIB


@pytest.fixture
def receiver(sink: Sink, tmp_path: Path) -> Iterator[tuple[Service, str]]:
    instance = new_instance_id()
    secrets = [channel_secret(instance, PHONE, app_secret=APP_SECRET, verify_token="t" * 20)]
    env = {
        "WA_RECEIVER_MAX_BUFFERED_BYTES": str(BUDGET),
        "WA_RECEIVER_MAX_CONCURRENT_REQUESTS": "256",
        # Long enough that the attack is still held while honest events are sent.
        "WA_RECEIVER_BODY_TIMEOUT_SECONDS": "8",
    }
    with started(tmp_path, sink.url_template, secrets, env) as service:
        yield service, instance


class _Attack:
    def __init__(self) -> None:
        self.sent: list[int] = []  # one entry per attacker done sending (or cut off)
        self.all_sent = asyncio.Event()
        self.ended: list[str] = []  # how the receiver ended each: a status, or "closed"

    def done_sending(self) -> None:
        self.sent.append(1)
        if len(self.sent) == ATTACKERS:
            self.all_sent.set()


async def _attack(port: int, path: str, attack: _Attack) -> None:
    """One slow body: the head, all of the body but its last byte, then nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sending = True
    head = (
        f"POST {path} HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"
        f"X-Hub-Signature-256: sha256=anything\r\nContent-Length: {ATTACK_BODY}\r\n\r\n"
    )
    try:
        writer.write(head.encode())
        chunk = b"{" * (256 * 1024)
        sent = 0
        while sent < ATTACK_BODY - 1:
            piece = chunk[: ATTACK_BODY - 1 - sent]
            writer.write(piece)
            await writer.drain()
            sent += len(piece)
        sending = False
        attack.done_sending()
        answer = await reader.read(64)
        attack.ended.append(answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else "closed")
    except ConnectionError:
        attack.ended.append("closed")
    finally:
        if sending:
            attack.done_sending()
        writer.close()


async def test_slow_bodies_keep_memory_bounded_and_honest_events_flowing(
    receiver: tuple[Service, str], sink: Sink
) -> None:
    service, instance = receiver
    pid = service.process.pid
    port = int(service.url.rsplit(":", 1)[1])
    body = meta_bytes(notification([text_change(PHONE, "honest")]))
    async with httpx.AsyncClient(base_url=service.url, timeout=60) as http:
        for _ in range(5):  # warm-up: every code path of an honest event has run once
            answer = await http.post(
                f"/hooks/whatsapp/{instance}", content=body, headers=signed(APP_SECRET, body)
            )
            assert answer.status_code == 200, answer.text
        rss_before = memory_bytes("VmRSS", pid)

        state = _Attack()
        paths = [f"/hooks/whatsapp/{instance}", "/hooks/whatsapp"]
        attack = [asyncio.create_task(_attack(port, paths[n % 2], state)) for n in range(ATTACKERS)]
        # Every attacker has sent its body, or was cut off, before honest traffic starts.
        await asyncio.wait_for(state.all_sent.wait(), timeout=120)
        for n in range(20):
            honest = meta_bytes(notification([text_change(PHONE, f"honest {n}")]))
            answer = await http.post(
                f"/hooks/whatsapp/{instance}", content=honest, headers=signed(APP_SECRET, honest)
            )
            assert answer.status_code == 200, answer.text
        peak = memory_bytes("VmHWM", pid)
        assert peak - rss_before < RSS_BOUND, (
            f"peak RSS {peak / MIB:.0f} MiB, {(peak - rss_before) / MIB:.0f} MiB over "
            f"{rss_before / MIB:.0f} MiB before the attack"
        )

        # Nothing is held for ever: each attacker is answered or cut off.
        await asyncio.wait_for(asyncio.gather(*attack), timeout=120)
        assert len(state.ended) == ATTACKERS
        assert set(state.ended) <= {"408", "503", "closed"}, state.ended

        # Nesting deeper than the JSON parser goes: 400, on either URL, never a 500.
        deep = b"[" * 5000
        for path in paths:
            answer = await http.post(
                path, content=deep, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64}
            )
            assert answer.status_code in (400, 403), answer.text
        answer = await http.post(
            "/hooks/whatsapp", content=deep, headers={"X-Hub-Signature-256": "sha256=0"}
        )
        assert answer.status_code == 400

    assert len(sink.received) == 25
    log = service.log_path.read_text()
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log

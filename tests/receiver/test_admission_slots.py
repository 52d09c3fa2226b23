"""Request slots given back and body reads on a new event loop (no cluster): a released
slot is free again, exactly one per release, and one Admission reads bodies on whatever
loop runs it (a restarted server's, a test's)."""

from __future__ import annotations

import asyncio
from typing import Any

from channel_api.receiver.admission import CHANNEL_POOL, Admission


def test_a_released_slot_is_free_again_and_only_that_one() -> None:
    single = Admission(max_requests=1, max_buffered_bytes=1024, body_timeout=30.0)
    assert single.admit("192.0.2.1", CHANNEL_POOL)
    single.release("192.0.2.1", CHANNEL_POOL, 0)
    assert single.admit("192.0.2.2", CHANNEL_POOL)

    pair = Admission(max_requests=2, max_buffered_bytes=1024, body_timeout=30.0)
    assert pair.admit("192.0.2.1", CHANNEL_POOL)
    assert pair.admit("192.0.2.2", CHANNEL_POOL)
    pair.release("192.0.2.1", CHANNEL_POOL, 0)
    assert pair.admit("192.0.2.3", CHANNEL_POOL)
    assert not pair.admit("192.0.2.4", CHANNEL_POOL)
    assert pair.in_flight == 2


def test_one_admission_reads_concurrent_bodies_on_each_new_loop() -> None:
    admission = Admission(max_requests=4, max_buffered_bytes=1024, body_timeout=30.0)

    async def read(data: bytes) -> bytes:
        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0)  # the other read runs meanwhile
            return {"type": "http.request", "body": data, "more_body": False}

        return await admission.read_body(receive, 1024, len(data))

    async def both(first: bytes, second: bytes) -> list[bytes]:
        return list(await asyncio.gather(read(first), read(second)))

    assert asyncio.run(both(b"a1", b"a2")) == [b"a1", b"a2"]
    assert asyncio.run(both(b"b1", b"b2")) == [b"b1", b"b2"]
    assert admission.buffered == 8  # the caller releases what was read

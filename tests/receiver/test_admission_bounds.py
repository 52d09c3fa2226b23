"""How the receiver reads a body (`Admission.read_body`, issue 13's memory bound), at its
exact edges, held by the mutation gate of issue 14: a body that fills the byte budget exactly
is taken and one byte more is not; a body of exactly `SMALL_BODY_BYTES` still counts as small,
and a large one may fill exactly its share; the per-request limit is inclusive; a client gone
away is told apart from an empty body; a message without `body` is an empty piece (ASGI)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channel_api.receiver.admission import (
    BODY_TIMEOUT_FLOOR,
    CHANNEL_POOL,
    LARGE_SHARE,
    SMALL_BODY_BYTES,
    Admission,
    BodyTimedOut,
    BodyTooLarge,
    Disconnected,
    OverBudget,
)

KIB = 1024
NO_LIMIT = 16 * 1024 * KIB


async def _read(admission: Admission, *messages: dict[str, Any], max_body: int = NO_LIMIT):
    """The body read from these ASGI messages, in order."""
    pending = list(messages)

    async def receive() -> dict[str, Any]:
        assert pending, "read past the end of the body"
        return pending.pop(0)

    body = await admission.read_body(receive, max_body, None)
    assert not pending, "stopped reading before the end of the body"
    return body


CLIENT = "192.0.2.1"


def _piece(data: bytes, *, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


def _admission(budget: int) -> Admission:
    return Admission(max_requests=4, max_buffered_bytes=budget, body_timeout=30.0)


async def _fits(admission: Admission, size: int) -> bool:
    """Whether a body of `size` bytes is taken; the budget is given back either way."""
    assert admission.admit(CLIENT, CHANNEL_POOL)
    try:
        body = await _read(admission, _piece(b"x" * size))
    except OverBudget:
        admission.release(CLIENT, CHANNEL_POOL, 0)
        assert admission.buffered == 0
        return False
    assert (len(body), admission.buffered) == (size, size)
    admission.release(CLIENT, CHANNEL_POOL, len(body))  # as the receiver does once it has answered
    assert admission.in_flight == admission.buffered == 0
    return True


async def test_a_body_that_fills_the_budget_exactly_is_taken_one_byte_more_is_not():
    admission = _admission(1000)
    assert await _fits(admission, 1000)
    assert not await _fits(admission, 1001)


async def test_a_body_of_exactly_the_small_size_may_use_the_whole_budget():
    # Past SMALL_BODY_BYTES a body may fill only 75 % of the budget (60 KiB of 80 KiB here).
    admission = _admission(80 * KIB)
    assert await _fits(admission, SMALL_BODY_BYTES)
    assert not await _fits(admission, SMALL_BODY_BYTES + 1)


async def test_a_large_body_may_fill_its_share_exactly():
    admission = _admission(100 * KIB)
    share = int(100 * KIB * LARGE_SHARE)
    assert share > SMALL_BODY_BYTES  # so a body of `share` bytes is a large one
    assert await _fits(admission, share)
    assert not await _fits(admission, share + 1)


async def test_the_per_request_limit_is_inclusive_over_every_piece():
    admission = _admission(NO_LIMIT)
    assert await _read(admission, _piece(b"a" * 100), max_body=100) == b"a" * 100
    assert admission.buffered == 100
    with pytest.raises(BodyTooLarge):
        await _read(admission, _piece(b"a" * 101), max_body=100)
    with pytest.raises(BodyTooLarge):
        await _read(admission, _piece(b"a" * 60, more=True), _piece(b"b" * 41), max_body=100)
    assert admission.buffered == 100  # what a refused read had counted is given back


async def test_a_client_gone_away_is_not_an_empty_body():
    admission = _admission(NO_LIMIT)
    with pytest.raises(Disconnected):
        await _read(admission, {"type": "http.disconnect"})
    with pytest.raises(Disconnected):
        await _read(admission, _piece(b"{", more=True), {"type": "http.disconnect"})
    assert admission.buffered == 0


async def test_a_message_without_a_body_is_an_empty_piece():
    admission = _admission(NO_LIMIT)
    assert await _read(admission, {"type": "http.request"}) == b""
    assert await _read(admission, _piece(b"{}", more=True), {"type": "http.request"}) == b"{}"
    assert admission.buffered == 2


def test_the_body_deadline_is_exactly_the_configured_one():
    """Issue 23 item 4: the deadline a body gets is the setting itself for the largest body
    (and for one of unsaid length), its share for a smaller one, never under the floor nor
    over the setting (a break multiplying the deadline passed the wall-clock tests)."""
    admission = Admission(max_requests=4, max_buffered_bytes=NO_LIMIT, body_timeout=30.0)
    assert admission.body_deadline(1000, 1000) == 30.0
    assert admission.body_deadline(1000, None) == 30.0
    assert admission.body_deadline(1000, 500) == 15.0
    assert admission.body_deadline(1000, 100) == 3.0
    assert admission.body_deadline(1000, 10) == BODY_TIMEOUT_FLOOR  # 0.3 s: the floor
    assert admission.body_deadline(1000, 0) == BODY_TIMEOUT_FLOOR
    assert admission.body_deadline(1000, 5000) == 30.0  # more than allowed: not more time
    quick = Admission(max_requests=4, max_buffered_bytes=NO_LIMIT, body_timeout=1.0)
    assert quick.body_deadline(1000, 10) == 1.0  # a setting under the floor wins
    assert quick.body_deadline(1000, None) == 1.0


async def test_a_read_is_given_its_body_deadline_from_the_head():
    """The deadline a read is held to is `body_deadline`'s, counted from when the read began:
    a read stalled for good ends BodyTimedOut no sooner than that (loop time; no upper
    bound, which a loaded machine could break)."""
    admission = Admission(max_requests=4, max_buffered_bytes=NO_LIMIT, body_timeout=0.5)
    loop = asyncio.get_running_loop()

    async def stalled() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    began = loop.time()
    with pytest.raises(BodyTimedOut):
        await asyncio.wait_for(admission.read_body(stalled, 1000, None), timeout=60)
    assert loop.time() - began >= 0.5

"""The receiver's byte budget at its exact edges (issue 13's memory bound, held by the
mutation gate of issue 14): a body that fills the budget exactly is taken, one byte more is
not; a body of exactly `SMALL_BODY_BYTES` still counts as small."""

from __future__ import annotations

from typing import Any

import pytest
from channel_api.receiver.admission import SMALL_BODY_BYTES, Admission, OverBudget

KIB = 1024


async def _read(admission: Admission, size: int) -> bytes:
    """A body of `size` bytes, arriving in one piece."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        assert not sent, "read past the end of the body"
        sent = True
        return {"type": "http.request", "body": b"x" * size, "more_body": False}

    return await admission.read_body(receive, max_body=16 * 1024 * KIB)


async def test_a_body_that_fills_the_budget_exactly_is_taken_one_byte_more_is_not():
    admission = Admission(max_requests=4, max_buffered_bytes=1000, body_timeout=30.0)
    assert admission.admit()
    body = await _read(admission, 1000)
    assert (len(body), admission.buffered) == (1000, 1000)
    admission.release(len(body))  # as the receiver does once it has answered
    assert admission.admit()
    with pytest.raises(OverBudget):
        await _read(admission, 1001)
    assert admission.buffered == 0


async def test_a_body_of_exactly_the_small_size_may_use_the_whole_budget():
    # Past SMALL_BODY_BYTES a body may fill only 75 % of the budget (60 KiB of 80 KiB here).
    admission = Admission(max_requests=4, max_buffered_bytes=80 * KIB, body_timeout=30.0)
    assert admission.admit()
    body = await _read(admission, SMALL_BODY_BYTES)
    assert (len(body), admission.buffered) == (SMALL_BODY_BYTES, SMALL_BODY_BYTES)
    admission.release(len(body))
    assert admission.admit()
    with pytest.raises(OverBudget):
        await _read(admission, SMALL_BODY_BYTES + 1)
    assert admission.buffered == 0

"""What one receiver process takes on at once: its bound against memory exhaustion.

A webhook POST that passed the checks needing no body (its path, its signature header, on a
per-channel URL its channel) is admitted here before its body is read, and released once it
is answered:

- at most `max_requests` are admitted at once; past that, 503 with `Retry-After`;
- the body bytes held by all admitted requests together stay within `max_buffered_bytes`;
  a chunk that would pass it gets the request 503 with `Retry-After`. Bytes of one request
  past its first `SMALL_BODY_BYTES` may fill only `LARGE_SHARE` of the budget, so events
  of ordinary size (Meta's are a few KB) are still admitted while large bodies fill the rest;
- the whole body must arrive within `body_timeout` seconds of the request's head; past
  that, 408.

Every refusal here is answered with `Connection: close`, so the unread rest of a body is
never read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# A request's first bytes are "small" and may use the whole budget (Meta's notifications are
# a few KB); what one request holds beyond them may fill only this share of it.
SMALL_BODY_BYTES = 64 * 1024
LARGE_SHARE = 0.75


class BodyTooLarge(Exception):
    """The body is longer than the per-request limit (413)."""


class OverBudget(Exception):
    """The process holds as many body bytes as it may (503)."""


class BodyTimedOut(Exception):
    """The body did not arrive in time (408)."""


class Disconnected(Exception):
    """The client went away before its body was read."""


class Admission:
    """Per-process counters; every method is synchronous except `read_body`, so the counts
    are exact on the one event loop."""

    __slots__ = (
        "_large_limit",
        "body_timeout",
        "buffered",
        "in_flight",
        "max_buffered_bytes",
        "max_requests",
    )

    def __init__(self, *, max_requests: int, max_buffered_bytes: int, body_timeout: float) -> None:
        self.max_requests = max_requests
        self.max_buffered_bytes = max_buffered_bytes
        self.body_timeout = body_timeout
        self._large_limit = int(max_buffered_bytes * LARGE_SHARE)
        self.in_flight = 0
        self.buffered = 0

    def admit(self) -> bool:
        """Take a request slot; False when every slot is taken."""
        if self.in_flight >= self.max_requests:
            return False
        self.in_flight += 1
        return True

    def release(self, held: int) -> None:
        """Give back an admitted request's slot and the body bytes `read_body` counted."""
        self.in_flight -= 1
        self.buffered -= held

    def _take(self, held: int, more: int) -> bool:
        total = self.buffered + more
        if total > self.max_buffered_bytes or (
            held + more > SMALL_BODY_BYTES and total > self._large_limit
        ):
            return False
        self.buffered = total
        return True

    async def read_body(self, receive: Receive, max_body: int) -> bytes:
        """The whole body, counted against the budget (the caller releases `len(body)`).
        Raises BodyTooLarge, OverBudget, BodyTimedOut or Disconnected, having given back
        whatever it had counted."""
        chunks: list[bytes] = []
        held = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise Disconnected
                    chunk: bytes = message.get("body", b"")
                    if held + len(chunk) > max_body:
                        raise BodyTooLarge
                    if chunk:
                        if not self._take(held, len(chunk)):
                            raise OverBudget
                        held += len(chunk)
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            self.buffered -= held
            raise BodyTimedOut from None
        except BaseException:
            self.buffered -= held
            raise
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

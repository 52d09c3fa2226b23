"""What one receiver process takes on at once: its bound against memory exhaustion.

A webhook POST that passed the checks needing no body (its path, its signature header, on a
per-channel URL its channel) is admitted here before its body is read, and released once it
is answered:

- at most `max_requests` are admitted at once on the shared URL, and as many again on the
  per-channel URLs of known channels (separate slots: a flood of the one cannot starve the
  other); past that, 503 with `Retry-After`;
- at most `max_per_client` of them from one client address (an IPv6 address counts by its
  /64, what one host is routed), so no single client can hold the slots; its address is
  the TCP peer's, or the one a trusted proxy forwarded (uvicorn's proxy headers, only for
  the proxies the settings name);
- the body bytes held by all admitted requests together stay within `max_buffered_bytes`;
  a chunk that would pass it gets the request 503 with `Retry-After`. Bytes of one request
  past its first `SMALL_BODY_BYTES` may fill only `LARGE_SHARE` of the budget, so events
  of ordinary size (Meta's are a few KB) are still admitted while large bodies fill the rest;
- the whole body must arrive within a deadline scaled to its declared length: a body of
  `max_body` bytes gets `body_timeout` seconds from the request's head, a smaller one its
  share of that but at least `BODY_TIMEOUT_FLOOR` (without a declared length, the whole
  `body_timeout`); past it, 408. A client trickling small bodies holds its slots briefly.

Every refusal here is answered with `Connection: close`, so the unread rest of a body is
never read.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

# A request's first bytes are "small" and may use the whole budget (Meta's notifications are
# a few KB); what one request holds beyond them may fill only this share of it.
SMALL_BODY_BYTES = 64 * 1024
LARGE_SHARE = 0.75
# The least time any body gets (Meta's events are a few KB and arrive in one read).
BODY_TIMEOUT_FLOOR = 2.0
SHARED_POOL, CHANNEL_POOL = 0, 1


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
        "_by_client",
        "_expired",
        "_in_pool",
        "_large_limit",
        "_loop",
        "_reading",
        "_reaper",
        "body_timeout",
        "buffered",
        "in_flight",
        "max_buffered_bytes",
        "max_per_client",
        "max_requests",
    )

    def __init__(
        self,
        *,
        max_requests: int,
        max_buffered_bytes: int,
        body_timeout: float,
        max_per_client: int | None = None,
    ) -> None:
        self.max_requests = max_requests
        self.max_per_client = max_requests if max_per_client is None else max_per_client
        self.max_buffered_bytes = max_buffered_bytes
        self.body_timeout = body_timeout
        self._large_limit = int(max_buffered_bytes * LARGE_SHARE)
        self.in_flight = 0  # in both pools
        self._in_pool = [0, 0]  # SHARED_POOL, CHANNEL_POOL
        self._by_client: dict[str, int] = {}
        self.buffered = 0
        # The body deadline: one periodic check over the requests reading a body, instead of
        # a timer per request (asyncio.timeout costs ~6 us a request; this, well under 1).
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._reaper: asyncio.TimerHandle | None = None
        # The loop of the last body read: `asyncio.current_task()` without one asks for the
        # running loop, a getpid() syscall each time on Python 3.11.
        self._loop: asyncio.AbstractEventLoop | None = None

    def admit(self, client: str, pool: int) -> bool:
        """Take a slot of `pool` for `client` (`client_of`); False when the pool's slots or
        the client's share are all taken."""
        mine = self._by_client.get(client, 0)
        if self._in_pool[pool] >= self.max_requests or mine >= self.max_per_client:
            return False
        self._in_pool[pool] += 1
        self._by_client[client] = mine + 1
        self.in_flight += 1
        return True

    def release(self, client: str, pool: int, held: int) -> None:
        """Give back an admitted request's slot and the body bytes `read_body` counted."""
        self.in_flight -= 1
        self._in_pool[pool] -= 1
        left = self._by_client[client] - 1
        if left:
            self._by_client[client] = left
        else:
            del self._by_client[client]
        self.buffered -= held

    def _take(self, held: int, more: int) -> bool:
        total = self.buffered + more
        if total > self.max_buffered_bytes or (
            held + more > SMALL_BODY_BYTES and total > self._large_limit
        ):
            return False
        self.buffered = total
        return True

    async def read_body(self, receive: Receive, max_body: int, declared: int | None) -> bytes:
        """The whole body (of `declared` length, when the head said), counted against the
        budget (the caller releases `len(body)`). Raises BodyTooLarge, OverBudget,
        BodyTimedOut or Disconnected, having given back whatever it had counted."""
        chunks: list[bytes] = []
        held = 0
        loop = self._loop
        task = asyncio.current_task(loop) if loop is not None else None
        if loop is None or task is None:  # the first body read, or one on another loop
            task = asyncio.current_task()
            assert task is not None
            loop = self._loop = task.get_loop()
        self._reading[task] = loop.time() + self.body_deadline(max_body, declared)
        if self._reaper is None:
            self._reaper = loop.call_later(self._reap_interval(), self._reap, loop)
        try:
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
        except asyncio.CancelledError:
            self.buffered -= held
            if task in self._expired:  # cancelled by `_reap`, not by anyone else
                self._expired.discard(task)
                task.uncancel()
                raise BodyTimedOut from None
            raise
        except BaseException:
            self.buffered -= held
            raise
        finally:
            del self._reading[task]
            if self._expired:
                self._expired.discard(task)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def body_deadline(self, max_body: int, declared: int | None) -> float:
        """Seconds a body of `declared` length (None: not said) has to arrive whole, from
        the request's head: `body_timeout` for the largest, its share for a smaller one, but
        never less than BODY_TIMEOUT_FLOOR nor more than `body_timeout`."""
        if declared is None:
            return self.body_timeout
        share = self.body_timeout * declared / max_body
        return min(self.body_timeout, max(BODY_TIMEOUT_FLOOR, share))

    def _reap_interval(self) -> float:
        return min(self.body_timeout, BODY_TIMEOUT_FLOOR) / 4

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancels every body read past its deadline (each such task is inside `read_body`,
        which turns that cancellation into BodyTimedOut); runs while any body is read."""
        now = loop.time()
        for task, deadline in self._reading.items():
            if deadline <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._reaper = (
            loop.call_later(self._reap_interval(), self._reap, loop) if self._reading else None
        )


def client_of(scope: MutableMapping[str, Any]) -> str:
    """The key a request's client is counted by: its address (uvicorn puts a trusted proxy's
    forwarded one there), an IPv6 address by its /64."""
    client = scope.get("client")
    if not client:
        return ""
    host: str = client[0]
    if ":" not in host:
        return host
    try:
        return str(ipaddress.IPv6Network((host, 64), strict=False).network_address)
    except ValueError:
        return host

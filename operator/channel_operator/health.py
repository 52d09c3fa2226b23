"""Each channel is checked at Meta again on a jittered period (issue 11), by one task of the
operator's own, not a Kopf timer per channel: a restart over thousands of channels makes no
Graph call for those checked within the period (`status.checkedAt` says when), and the
per-account call budget (`graph.CallBudget`) bounds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

JITTER = 0.1  # +-10% of the period, so channels created together spread out
MAX_PARALLEL = 8


class HealthSchedule:
    """When each channel is due for its next check; `run()` calls `recheck(name)` for the
    due ones, which answers the delay until the next (None: none until the channel changes)."""

    def __init__(
        self,
        period: float,
        recheck: Callable[[str], Awaitable[float | None]],
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.period = period
        self._recheck = recheck
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_PARALLEL)
        self._tasks: set[asyncio.Task[None]] = set()

    def jittered(self, seconds: float) -> float:
        return max(seconds * self._rng.uniform(1 - JITTER, 1 + JITTER), 0.0)

    def after(self, name: str, seconds: float | None) -> None:
        """Check `name` again in about `seconds` (None: not again until it changes)."""
        if seconds is None:
            self.drop(name)
            return
        due = self._clock() + self.jittered(seconds)
        self._due[name] = due
        heapq.heappush(self._heap, (due, name))
        self._wake.set()

    def drop(self, name: str) -> None:
        self._due.pop(name, None)

    def due_in(self, name: str) -> float | None:
        due = self._due.get(name)
        return None if due is None else due - self._clock()

    def __len__(self) -> int:
        return len(self._due)

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                now = self._clock()
                while self._heap and self._heap[0][0] <= now:
                    due, name = heapq.heappop(self._heap)
                    if self._due.get(name) != due:
                        continue  # rescheduled or dropped since
                    del self._due[name]
                    await self._slots.acquire()
                    task = asyncio.create_task(self._one(name), name=f"health {name}")
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                wait = self._heap[0][0] - now if self._heap else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            for task in list(self._tasks):
                task.cancel()

    async def _one(self, name: str) -> None:
        try:
            delay = await self._recheck(name)
        except Exception:  # a bug or an apiserver failure: try again later, never stop
            log.exception("channel %s: health check failed", name)
            delay = min(self.period, 300.0)
        finally:
            self._slots.release()
        if delay is not None and name not in self._due:
            self.after(name, delay)

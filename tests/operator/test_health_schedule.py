"""The health schedule (issue 23): what the operator relies on from it, each test written
against a one-line break that the schedule's other tests let through (`make mutate`).

The other schedule tests (test_channel_at_meta.py) drive a fake clock and wake the loop by
hand; here the loop also runs on the real clock, alone, as in the operator, where nothing
but the next due check wakes it.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channel_operator.health import HealthSchedule


class NoJitter(random.Random):
    """Jitter at its midpoint, so a test can name the exact second a check is due."""

    def uniform(self, a: float, b: float) -> float:
        return 1.0


@asynccontextmanager
async def running(schedule: HealthSchedule) -> AsyncIterator[asyncio.Task[None]]:
    """The schedule's loop as the operator runs it; any error the loop lets escape into
    asyncio's exception handler (a callback that raised) fails the test."""
    loop = asyncio.get_running_loop()
    escaped: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))
    runner = asyncio.create_task(schedule.run())
    try:
        yield runner
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        loop.set_exception_handler(previous)
    assert escaped == []


async def turns(n: int = 20) -> None:
    """A bounded number of event-loop turns: enough for the loop to act, no real I/O."""
    for _ in range(n):
        await asyncio.sleep(0)


def recorder(delay: float | None) -> tuple[list[str], Callable[[str], Awaitable[float | None]]]:
    checked: list[str] = []

    async def recheck(name: str) -> float | None:
        checked.append(name)
        return delay

    return checked, recheck


async def test_the_loop_wakes_by_itself_when_the_next_check_is_due() -> None:
    """Nothing but the next due check wakes the operator's loop: a channel is checked again
    and again, each time once its (short) period is up, with no change to poke the loop, and
    whether the schedule started empty or not."""
    period = 0.05
    times: list[float] = []
    three = asyncio.Event()

    async def recheck(name: str) -> float | None:
        times.append(time.monotonic())
        if len(times) == 3:
            three.set()
        return period

    schedule = HealthSchedule(period, recheck)  # as startup builds it: the real clock, any rng
    async with running(schedule) as runner:
        await turns()  # the loop idles on an empty schedule first
        assert not runner.done()
        started = time.monotonic()
        schedule.after("only", period)
        await asyncio.wait_for(three.wait(), 30)
        assert not runner.done()
    assert times[0] >= started + 0.9 * period  # never before it is due


async def test_a_check_due_this_very_second_is_made() -> None:
    now = [1000.0]
    checked, recheck = recorder(None)
    schedule = HealthSchedule(3600, recheck, clock=lambda: now[0], rng=NoJitter())
    async with running(schedule):
        schedule.after("a", 3600)
        assert schedule.due_in("a") == 3600
        now[0] = 4600.0  # exactly its due time
        schedule.after("wake", 10**9)  # the fake clock does not wake the loop itself
        await turns()
        assert checked == ["a"]


async def test_a_check_asked_now_is_made_now() -> None:
    """`after(name, 0)` (a changed channel, an account webhook) is due at once, jitter or
    not: it waits for no clock tick at all."""
    now = [50.0]
    checked, recheck = recorder(None)
    schedule = HealthSchedule(3600, recheck, clock=lambda: now[0])
    async with running(schedule):
        schedule.after("changed", 0)
        assert schedule.due_in("changed") == 0
        await turns()
        assert checked == ["changed"]


def test_the_jitter_spreads_checks_ten_percent_either_side_of_the_period() -> None:
    schedule = HealthSchedule(100, recorder(None)[1], rng=random.Random(3))
    draws = [schedule.jittered(100) for _ in range(2000)]
    assert all(90 <= d <= 110 for d in draws)
    assert min(draws) < 91
    assert max(draws) > 109


async def test_a_failed_check_is_retried_in_five_minutes_not_a_full_period() -> None:
    now = [0.0]
    failed = asyncio.Event()

    async def recheck(name: str) -> float | None:
        failed.set()
        raise RuntimeError("the apiserver did not answer")

    schedule = HealthSchedule(6 * 3600, recheck, clock=lambda: now[0], rng=NoJitter())
    async with running(schedule):
        schedule.after("a", 0)
        await asyncio.wait_for(failed.wait(), 10)
        await turns()
        assert schedule.due_in("a") == 300
    short = HealthSchedule(60, recheck, clock=lambda: now[0], rng=NoJitter())
    failed.clear()
    async with running(short):
        short.after("b", 0)
        await asyncio.wait_for(failed.wait(), 10)
        await turns()
        assert short.due_in("b") == 60  # never later than the period itself


@pytest.mark.parametrize("answer", [None, 100.0])
async def test_a_channel_changed_while_its_check_runs_keeps_its_new_schedule(
    answer: float | None,
) -> None:
    """A reconcile reschedules a channel while its check is at Meta: what the reconcile
    decided stands, whatever the finished check answers (None: a refusal, not again until it
    changes; a delay: the next period)."""
    now = [0.0]
    at_meta = asyncio.Event()
    release = asyncio.Event()

    async def recheck(name: str) -> float | None:
        at_meta.set()
        await release.wait()
        return answer

    schedule = HealthSchedule(100, recheck, clock=lambda: now[0], rng=NoJitter())
    async with running(schedule):
        schedule.after("a", 0)
        await asyncio.wait_for(at_meta.wait(), 10)
        schedule.after("a", 7)  # the reconcile's word
        release.set()
        await turns()
        assert schedule.due_in("a") == 7


def test_dropping_a_channel_never_scheduled_is_harmless() -> None:
    """A channel deleted or disabled before its first check: nothing to drop, no error."""
    schedule = HealthSchedule(100, recorder(None)[1])
    schedule.drop("never-checked")
    schedule.after("never-checked", None)
    assert len(schedule) == 0
    assert schedule.due_in("never-checked") is None


async def test_stopping_the_schedule_stops_the_checks_in_flight() -> None:
    at_meta = asyncio.Event()
    stopped = asyncio.Event()

    async def recheck(name: str) -> float | None:
        at_meta.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise
        return None

    schedule = HealthSchedule(100, recheck)
    runner = asyncio.create_task(schedule.run())
    schedule.after("a", 0)
    await asyncio.wait_for(at_meta.wait(), 10)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    await asyncio.wait_for(stopped.wait(), 10)

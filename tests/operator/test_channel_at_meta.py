"""Issue 11 without a cluster: Ready from Meta's conditions (a flap never turns a Ready
channel into an error), the health schedule (jittered, no call before it is due), and what
a restart asks Meta (nothing for channels answered within the period)."""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from typing import cast

from channel_operator.channel_at_meta import Meta, checked_ago, is_settled
from channel_operator.desired import ChannelRef, MetaReport, build_status
from channel_operator.graph import GraphClient
from channel_operator.health import HealthSchedule
from whatsapp_channel import reasons
from whatsapp_channel.model import (
    CAN_SEND_MESSAGE,
    READY,
    find_condition,
    now_rfc3339,
    rest_status,
)

BASE = "https://hooks.example.test"


def accepted() -> MetaReport:
    return MetaReport(
        credentials=(True, reasons.CREDENTIALS_ACCEPTED, "ok"),
        webhook=(True, reasons.OVERRIDE_REGISTERED, "ok"),
        facts={"checkedAt": now_rfc3339()},
    )


UNAVAILABLE = MetaReport(credentials=(None, reasons.META_UNAVAILABLE, "Graph check failed: 503"))
EXPIRED = MetaReport(credentials=(False, reasons.TOKEN_EXPIRED, "Graph check failed: 190/463"))


def ref(generation: int = 1) -> ChannelRef:
    return ChannelRef("ns", str(uuid.uuid4()), "uid", generation)


def status(current: dict[str, object], r: ChannelRef, meta: MetaReport) -> dict[str, object]:
    changes = build_status(current, r, webhook_base_url=BASE, enabled=True, failure=None, meta=meta)
    return {**current, **changes}


def view(r: ChannelRef, st: dict[str, object]) -> str:
    return rest_status({"metadata": {"generation": r.generation}, "spec": {}, "status": st})


def test_unknown_before_a_first_answer_is_pending_and_a_refusal_is_an_error() -> None:
    r = ref()
    first = status({}, r, UNAVAILABLE)
    ready = find_condition(first["conditions"], READY)  # type: ignore[arg-type]
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("Unknown", reasons.META_UNAVAILABLE)
    assert view(r, first) == "pending"
    assert view(r, status(first, r, EXPIRED)) == "error"


def test_a_flap_keeps_a_ready_channel_ready_and_a_refusal_does_not() -> None:
    r = ref()
    ready = status({}, r, accepted())
    assert view(r, ready) == "active"
    flapped = status(ready, r, UNAVAILABLE)
    assert view(r, flapped) == "active"
    assert "Meta's last answer" in find_condition(flapped["conditions"], READY)["message"]  # type: ignore[arg-type,index]
    assert view(r, status(flapped, r, EXPIRED)) == "error"
    # A new generation (say, new credentials) is not Ready on an old generation's word.
    assert view(ref(2), status(ready, ref(2), UNAVAILABLE)) == "pending"


def test_a_restart_asks_nothing_of_a_channel_answered_within_the_period() -> None:
    r = ref()
    answered = status({}, r, accepted())
    ago = checked_ago(answered)
    assert ago is not None
    assert ago < 3600  # within the health period
    assert is_settled(answered, r.generation, "managed")
    assert not is_settled(answered, r.generation + 1, "managed")
    assert not is_settled(status({}, r, UNAVAILABLE), r.generation, "managed")


async def test_the_schedule_checks_each_channel_when_due_and_never_before() -> None:
    now = [1000.0]
    checked: list[str] = []
    done = asyncio.Event()

    async def recheck(name: str) -> float | None:
        checked.append(name)
        done.set()
        return None

    schedule = HealthSchedule(3600, recheck, clock=lambda: now[0], rng=random.Random(1))
    runner = asyncio.create_task(schedule.run())
    try:
        schedule.after("a", 3600)
        schedule.after("b", 7200)
        due = schedule.due_in("a")
        assert due is not None
        assert 3600 * 0.9 <= due <= 3600 * 1.1  # jittered
        await asyncio.sleep(0)
        assert checked == []
        now[0] += 3600 * 1.1
        schedule.after("c", 100_000)  # any change wakes the loop (the clock here is fake)
        await asyncio.wait_for(done.wait(), 10)
        assert checked == ["a"]
        assert schedule.due_in("b") is not None
        schedule.after("c", None)  # not again until it changes
        assert len(schedule) == 1
    finally:
        runner.cancel()


async def test_each_channel_is_checked_every_period_and_never_before_it_is_due() -> None:
    """Issue 23: the schedule over many periods, with channels leaving it every way they can
    (dropped by a reconcile, their check answering None as for a deleted or refused channel,
    `after(None)` as for a disabled one), while the others keep being checked on time."""
    period, step = 100.0, 5.0
    now = [0.0]
    checks: dict[str, list[float]] = {}
    due_at: dict[str, float] = {}
    gone = {"deleted"}  # their check answers None: not again until they change
    failing = {"failing"}  # its first check fails (an apiserver error): retried, not lost
    early: list[tuple[str, float]] = []

    async def recheck(name: str) -> float | None:
        if now[0] < due_at[name]:
            early.append((name, now[0]))
        checks.setdefault(name, []).append(now[0])
        if name in failing:
            failing.discard(name)
            raise RuntimeError("the apiserver did not answer")
        return None if name in gone else period

    schedule = HealthSchedule(period, recheck, clock=lambda: now[0], rng=random.Random(7))
    runner = asyncio.create_task(schedule.run())

    def note_dues() -> None:
        for name in names:
            due = schedule.due_in(name)
            if due is not None:
                due_at[name] = now[0] + due

    async def settle() -> None:
        for _ in range(50):  # no real I/O: a bounded number of loop turns
            await asyncio.sleep(0)

    names = [f"c{i}" for i in range(12)] + ["failing", "deleted", "dropped", "disabled"]
    try:
        for name in names:
            schedule.after(name, period)
        note_dues()
        for tick in range(int(10 * period / step)):
            now[0] += step
            schedule.after("wake", 10**9)  # wakes the loop (the clock is fake)
            await settle()
            note_dues()
            if tick == 30:
                schedule.drop("dropped")
                schedule.after("disabled", None)
                # A reconcile moves c0's next check later: the earlier entry is stale now.
                schedule.after("c0", 3 * period)
                note_dues()
        assert not runner.done()
        assert early == []
        for name in names[1:13]:
            times = checks[name]
            assert len(times) >= 9, (name, times)
            for earlier, later in itertools.pairwise(times):
                assert 0.9 * period - step <= later - earlier <= 1.1 * period + step
        assert len(checks["c0"]) >= 6
        assert len(checks["deleted"]) == 1
        for name in ("dropped", "disabled"):
            assert all(t <= 31 * step for t in checks.get(name, []))
        assert set(names) - {"deleted", "dropped", "disabled"} <= set(checks)
    finally:
        runner.cancel()


def test_ready_means_the_number_can_send() -> None:
    """Issue 19: CanSendMessage=False (BLOCKED, or a number status that cannot send) takes
    Ready to False with its own reason; LIMITED still sends."""
    r = ref()
    for can_send in (
        (False, reasons.MESSAGING_BLOCKED, "Meta: BLOCKED (141006: payment method)"),
        (False, reasons.NUMBER_BANNED, "Meta: status BANNED"),
        (False, reasons.NUMBER_NOT_REGISTERED, "Meta: status PENDING"),
    ):
        report = MetaReport(
            credentials=(True, reasons.CREDENTIALS_ACCEPTED, "ok"),
            webhook=(True, reasons.OVERRIDE_REGISTERED, "ok"),
            can_send=can_send,
            facts={"checkedAt": now_rfc3339()},
        )
        st = status({}, r, report)
        ready = find_condition(st["conditions"], READY)  # type: ignore[arg-type]
        assert ready is not None
        assert (ready["status"], ready["reason"]) == ("False", can_send[1])
        assert view(r, st) == "error"
        # ... and back to Ready once Meta says it can send again.
        fine = MetaReport(can_send=(True, reasons.MESSAGING_AVAILABLE, "Meta: AVAILABLE"))
        healed = status(st, r, fine)
        assert view(r, healed) == "active"
    limited = status({}, r, accepted())
    limited = status(
        limited, r, MetaReport(can_send=(True, reasons.MESSAGING_LIMITED, "Meta: LIMITED"))
    )
    assert view(r, limited) == "active"
    assert find_condition(limited["conditions"], CAN_SEND_MESSAGE) is not None  # type: ignore[arg-type]


def test_a_refusal_is_asked_again_on_the_slow_period() -> None:
    """Issue 19: most refusals are fixed in Business Settings, not in the spec: a refused
    channel is asked again after `refusal_period` (hours), an accepted one after the health
    period."""
    meta = Meta(graph=cast(GraphClient, None), health_period=3600, refusal_period=6 * 3600)
    r = ref()
    assert meta.next_check(status({}, r, EXPIRED), r.generation) == 6 * 3600
    assert meta.next_check(status({}, r, accepted()), r.generation) == 3600

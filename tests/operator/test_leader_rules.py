"""The leader election's rules, on the in-memory apiserver with short timings (the real
apiserver and two operator processes: test_leader_election.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from channel_operator import leader
from channel_operator.leader import Election, LeadershipLost, lease_path

from tests.support.fake_kube import MemoryKube

NS = "wa-unit"
LEASE = "whatsapp-channels-operator"
# Lease 3 s, renew deadline 1 s, retry 0.1 s: the same proportions as the defaults' spirit
# (renew deadline well inside the lease), short enough for a unit test.
TIMING = {"lease_duration": 3.0, "renew_deadline": 1.0, "retry_period": 0.1}


def election(kube: MemoryKube, identity: str) -> Election:
    return Election(kube=kube, namespace=NS, name=LEASE, identity=identity, **TIMING)


def spec(kube: MemoryKube) -> dict[str, object]:
    return dict(kube.objects[lease_path(NS, LEASE)]["spec"])


async def test_one_holder_and_a_released_lease_is_taken_at_once() -> None:
    kube = MemoryKube()
    one, two = election(kube, "one"), election(kube, "two")
    assert await one.attempt()
    assert not await two.attempt()
    assert two.holder == "one"
    assert spec(kube)["holderIdentity"] == "one"
    assert spec(kube)["leaseDurationSeconds"] == 3
    assert await one.attempt()  # a renewal keeps acquireTime and the transitions
    acquired = spec(kube)["acquireTime"]

    await one.release()
    assert not spec(kube).get("holderIdentity")
    assert await two.attempt(), "a released Lease is free at once"
    assert spec(kube)["holderIdentity"] == "two"
    assert spec(kube)["leaseTransitions"] == 1
    assert spec(kube)["acquireTime"] != acquired
    await two.release()
    await one.release()  # not the holder: nothing written
    assert not spec(kube).get("holderIdentity")


async def test_a_silent_leaders_lease_is_taken_only_after_its_duration() -> None:
    kube = MemoryKube()
    one, two = election(kube, "one"), election(kube, "two")
    assert await one.attempt()  # and then never renews (killed)
    started = time.monotonic()
    assert await two.acquire(asyncio.Event())
    assert time.monotonic() - started >= TIMING["lease_duration"]
    assert spec(kube)["holderIdentity"] == "two"
    assert not await one.attempt(), "the old leader does not take it back"


async def test_a_silent_leaders_lease_is_taken_when_it_lapses_not_a_retry_period_later() -> None:
    # A retry period long beside the lease: the standby's tries at 0 s and 2 s find it held;
    # it lapses at 3 s by the standby's clock, and the next retry would only come at 4 s.
    timing = {"lease_duration": 3.0, "renew_deadline": 2.5, "retry_period": 2.0}
    kube = MemoryKube()
    one, two = (Election(kube=kube, namespace=NS, name=LEASE, identity=i, **timing) for i in "12")
    assert await one.attempt()  # and then never renews (killed)
    started = time.monotonic()
    assert await two.acquire(asyncio.Event())
    took = time.monotonic() - started
    assert timing["lease_duration"] <= took < timing["lease_duration"] + timing["retry_period"] / 4


async def test_a_leader_that_cannot_renew_gives_up_before_its_lease_lapses() -> None:
    kube = MemoryKube()
    one = election(kube, "one")
    assert await one.attempt()
    renewed = time.monotonic()
    kube.down = True
    with pytest.raises(LeadershipLost):
        await one.hold()
    gave_up = time.monotonic() - renewed
    assert TIMING["renew_deadline"] <= gave_up < TIMING["lease_duration"]


async def test_a_leader_whose_lease_someone_else_took_gives_up() -> None:
    kube = MemoryKube()
    one = election(kube, "one")
    assert await one.attempt()
    await kube.delete(lease_path(NS, LEASE))
    assert await election(kube, "two").attempt()
    with pytest.raises(LeadershipLost, match="held by two"):
        await one.hold()


async def test_lead_runs_the_work_only_once_elected_and_releases_after_it() -> None:
    kube = MemoryKube()
    assert await election(kube, "one").attempt()
    two = election(kube, "two")
    worked = asyncio.Event()

    async def work() -> None:
        assert spec(kube)["holderIdentity"] == "two"
        worked.set()

    lost: list[BaseException] = []
    running = asyncio.create_task(leader.lead(two, work, health=None, on_lost=lost.append))
    await asyncio.sleep(TIMING["retry_period"] * 5)
    assert not worked.is_set(), "a standby worked"
    await running  # "one" never renews: "two" takes over after the lease's duration
    assert worked.is_set()
    assert not spec(kube).get("holderIdentity"), "the Lease was not released"
    assert lost == []


async def test_lead_calls_on_lost_when_renewals_fail() -> None:
    kube = MemoryKube()
    one = election(kube, "one")
    lost: list[BaseException] = []
    gone = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_lost(reason: BaseException) -> None:  # called from the renewal's thread
        lost.append(reason)
        loop.call_soon_threadsafe(gone.set)

    async def work() -> None:
        kube.down = True
        await stop.wait()

    running = asyncio.create_task(leader.lead(one, work, health=None, on_lost=on_lost))
    await asyncio.wait_for(gone.wait(), timeout=TIMING["lease_duration"] * 5)
    assert isinstance(lost[0], LeadershipLost)
    stop.set()
    await running


async def test_a_leader_whose_loop_is_busy_keeps_renewing() -> None:
    """The renewal runs on a thread of its own: the operator's loop held for twice the renew
    deadline (as thousands of channels at a restart hold it) costs no lost leadership, and
    the Lease is renewed meanwhile."""
    kube = MemoryKube()
    one = election(kube, "one")
    lost: list[BaseException] = []
    renewals: list[object] = []

    async def work() -> None:
        await asyncio.sleep(TIMING["retry_period"] * 3)
        before = spec(kube)["renewTime"]
        time.sleep(TIMING["renew_deadline"] * 2)  # noqa: ASYNC251 - the loop gets no turn
        renewals.extend([before, spec(kube)["renewTime"]])
        await asyncio.sleep(TIMING["retry_period"] * 3)

    await leader.lead(one, work, health=None, on_lost=lost.append)
    assert lost == []
    before, during = renewals
    assert during != before, "the Lease was not renewed while the loop was busy"
    assert not spec(kube).get("holderIdentity"), "the Lease was not released"


async def test_the_holder_renews_with_one_write_and_reads_after_a_conflict() -> None:
    """client-go's fast path: a renewal is one conditional write on the Lease as last
    written (no read: half the round trips when the apiserver is slow); someone else's write
    makes it conflict, and the holder then reads and finds it lost."""
    kube = MemoryKube()
    one = election(kube, "one")
    assert await one.attempt()
    kube.calls.clear()
    assert await one.attempt()
    assert kube.calls == [("PUT", lease_path(NS, LEASE))]
    assert spec(kube)["holderIdentity"] == "one"

    await kube.delete(lease_path(NS, LEASE))
    assert await election(kube, "two").attempt()
    kube.calls.clear()
    assert not await one.attempt()
    assert [method for method, _ in kube.calls] == ["PUT", "GET"]
    assert one.holder == "two"

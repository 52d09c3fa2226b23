"""What the leader election writes on the Lease and when a candidate tries again, without
waiting out any lease (issue 23: the mutation gate's fast half of `leader.py`; the timed
behaviour is test_leader_rules.py, the real apiserver test_leader_election.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from channel_operator.leader import Election, LeadershipLost, lease_path, micro_time
from whatsapp_channel.kube import JSON, Conflict, KubeError, Unavailable

from tests.support.fake_kube import MemoryKube

NS = "wa-unit"
LEASE = "whatsapp-channels-operator"
PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{LEASE}"


class Faulty(MemoryKube):
    """A `MemoryKube` whose next call of a method fails once as given."""

    def __init__(self) -> None:
        super().__init__()
        self.once: dict[str, KubeError] = {}

    async def request(self, method: str, path: str, **kwargs: Any) -> JSON:
        if method in self.once:
            raise self.once.pop(method)
        return await super().request(method, path, **kwargs)


def election(kube: MemoryKube, identity: str, lease: float = 15.0) -> Election:
    return Election(kube=kube, namespace=NS, name=LEASE, identity=identity, lease_duration=lease)


def spec(kube: MemoryKube) -> JSON:
    return dict(kube.objects[PATH]["spec"])


def test_the_lease_path_and_kubernetes_microtime(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lease_path(NS) == f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"
    assert lease_path(NS, LEASE) == PATH
    moment = datetime(2026, 12, 8, 1, 2, 3, 45, tzinfo=UTC)
    east = moment.astimezone(timezone(timedelta(hours=2)))
    monkeypatch.setenv("TZ", "Asia/Kolkata")  # the machine's zone is not UTC: still UTC
    time.tzset()
    try:
        assert micro_time(moment) == "2026-12-08T01:02:03.000045Z"
        assert micro_time(east) == "2026-12-08T01:02:03.000045Z"
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("retry", "renew", "lease"),
    [(0.0, 10.0, 15.0), (2.0, 2.0, 15.0), (2.0, 15.0, 15.0), (3.0, 2.0, 15.0), (2.0, 16.0, 15.0)],
)
def test_timings_must_be_retry_then_renew_deadline_then_lease(
    retry: float, renew: float, lease: float
) -> None:
    with pytest.raises(
        ValueError, match=r"^leader election needs retry period < renew deadline < lease$"
    ):
        Election(MemoryKube(), NS, LEASE, "one", lease, renew, retry)


def test_valid_timings_and_no_holder_before_any_read() -> None:
    one = Election(MemoryKube(), NS, LEASE, "one", 3.0, 2.0, 1.0)
    assert one.holder == ""
    assert one.next_try_in() == 1.0


async def test_the_first_candidate_creates_the_lease_as_client_go_does() -> None:
    kube = MemoryKube()
    before = micro_time(datetime.now(UTC))
    assert await election(kube, "one", lease=15.4).attempt()
    lease = kube.objects[PATH]
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    assert lease["kind"] == "Lease"
    assert (lease["metadata"]["name"], lease["metadata"]["namespace"]) == (LEASE, NS)
    written = spec(kube)
    assert written["holderIdentity"] == "one"
    assert written["leaseDurationSeconds"] == 15
    assert written["leaseTransitions"] == 0
    assert written["acquireTime"] == written["renewTime"]
    assert before <= written["acquireTime"] <= micro_time(datetime.now(UTC))


async def test_a_second_creator_loses_and_reads_the_holder_next_time() -> None:
    kube = Faulty()
    kube.once["POST"] = Conflict(409, "AlreadyExists", "exists")
    two = election(kube, "two")
    assert not await two.attempt()
    assert await election(kube, "one").attempt()
    assert not await two.attempt()
    assert two.holder == "one"


async def test_renewing_keeps_the_acquire_time_and_a_takeover_counts_a_transition() -> None:
    kube = MemoryKube()
    one = election(kube, "one", lease=16.0)
    assert await one.attempt()
    acquired = spec(kube)["acquireTime"]
    renewed = spec(kube)["renewTime"]
    time.sleep(0.002)  # noqa: ASYNC251 - two microtimes apart
    assert await one.attempt()
    assert spec(kube)["acquireTime"] == acquired
    assert spec(kube)["renewTime"] > renewed
    assert spec(kube)["leaseTransitions"] == 0
    assert spec(kube)["leaseDurationSeconds"] == 16
    one._written = None  # renewing through a read (as after a restart): the same rules
    assert await one.attempt()
    assert (spec(kube)["acquireTime"], spec(kube)["leaseTransitions"]) == (acquired, 0)

    # A lapsed Lease (by the candidate's clock) is taken: a new acquire time, one transition.
    two = election(kube, "two")
    assert not await two.attempt()
    two._observed_at -= 16.0
    assert await two.attempt()
    assert spec(kube)["holderIdentity"] == "two"
    assert spec(kube)["acquireTime"] != acquired
    assert spec(kube)["leaseTransitions"] == 1
    assert two.holder == "two"


async def test_a_candidate_that_took_the_lease_must_renew_it_within_the_deadline() -> None:
    kube = MemoryKube()
    timing = {"lease_duration": 0.3, "renew_deadline": 0.2, "retry_period": 0.05}
    one, two = (Election(kube=kube, namespace=NS, name=LEASE, identity=i, **timing) for i in "12")
    assert await one.attempt()
    assert not await two.attempt()
    two._observed_at -= 1.0  # lapsed by its clock
    assert await two.attempt()  # taken through a read and a write
    kube.down = True
    with pytest.raises(LeadershipLost, match="not renewed for 0s"):
        await two.hold()


async def test_a_lease_is_held_for_the_duration_it_states_not_the_candidates() -> None:
    kube = MemoryKube()
    assert await election(kube, "one", lease=40.0).attempt()
    two = election(kube, "two", lease=15.0)
    assert not await two.attempt()
    two._observed_at -= 20.0  # past our 15 s, within the holder's 40 s
    assert not await two.attempt()
    two._observed_at -= 25.0
    assert await two.attempt()


async def test_an_unchanged_lease_lapses_from_when_it_was_first_seen() -> None:
    kube = MemoryKube()
    assert await election(kube, "one").attempt()
    two = election(kube, "two")
    assert not await two.attempt()
    seen = two._observed_at
    assert not await two.attempt()  # the same spec read again: the clock is not restarted
    assert two._observed_at == seen


async def test_a_lease_changed_or_gone_between_read_and_write_is_not_taken() -> None:
    kube = Faulty()
    assert await election(kube, "one").attempt()
    await kube.request("DELETE", PATH)
    for error in (Conflict(409, "Conflict", "modified"), KubeError(404, "NotFound", "gone")):
        assert await election(kube, "one").attempt()
        two = election(kube, "two")
        two._observed, two._observed_at = {"holderIdentity": "one"}, time.monotonic() - 100
        assert not await two.attempt()
        two._observed_at -= 100
        kube.once["PUT"] = error
        assert not await two.attempt()
        await kube.request("DELETE", PATH)


async def test_an_apiserver_error_is_no_lease_not_a_crash() -> None:
    kube = Faulty()
    kube.once["GET"] = Unavailable(503, "Unavailable", "down")
    assert not await election(kube, "one").attempt()


def test_a_candidate_tries_again_when_the_lease_it_saw_lapses() -> None:
    two = election(MemoryKube(), "two", lease=20.0)
    two._observed = {"holderIdentity": "one", "leaseDurationSeconds": 3}
    two._observed_at = time.monotonic() - 2.95  # lapses in 0.05 s, before a retry period
    assert 0 < two.next_try_in() <= 0.05
    two._observed_at = time.monotonic() - 0.5  # lapses in 2.5 s: the retry period first
    assert two.next_try_in() == 2.0
    two._observed_at = time.monotonic() - 3.5  # lapsed (the try failed anyway): a period
    assert two.next_try_in() == 2.0
    two._observed = {"holderIdentity": "one"}  # no duration stated: ours (20 s)
    two._observed_at = time.monotonic() - 2.95
    assert two.next_try_in() == 2.0
    two._observed_at = time.monotonic() - 19.95
    assert 0 < two.next_try_in() <= 0.05
    two._observed = {"holderIdentity": "two", "leaseDurationSeconds": 20}
    assert two.next_try_in() == 2.0  # our own, about to lapse: a renewal every period


async def test_release_frees_the_lease_only_when_we_hold_it() -> None:
    kube = Faulty()
    one, two = election(kube, "one"), election(kube, "two")
    assert await two.attempt()
    await two.release()
    assert await one.attempt()  # the first transition
    await two.release()  # not the holder: nothing written
    assert spec(kube)["holderIdentity"] == "one"
    before = micro_time(datetime.now(UTC))
    await one.release()
    released = spec(kube)
    assert "holderIdentity" not in released
    assert released["leaseDurationSeconds"] == 1
    assert released["leaseTransitions"] == 1  # kept: the count of holders so far
    assert released["acquireTime"] == released["renewTime"]
    assert before <= released["renewTime"] <= micro_time(datetime.now(UTC))
    assert await two.attempt()
    assert spec(kube)["leaseTransitions"] == 2
    kube.once["PUT"] = Unavailable(503, "Unavailable", "down")
    await two.release()  # it expires by itself: no error
    assert spec(kube)["holderIdentity"] == "two"

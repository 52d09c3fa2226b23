"""`channel_operator.channel_secrets` alone, on the in-memory apiserver (issue 23: the gate
found most of it reached only through reconcile's happy paths): what the watch-fed cache
holds, which changes are someone else's (drift) and which are the operator's own, how a write
copes with an apiserver that moved meanwhile, and what is deleted (only what is ours)."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
from channel_operator import channel_secrets
from channel_operator.channel_secrets import REPAIR_ATTEMPTS, ChannelSecrets
from channel_operator.desired import ChannelFailure, ChannelRef
from whatsapp_channel import channel_secret
from whatsapp_channel.channel_secret import ChannelSecret
from whatsapp_channel.kube import JSON, Conflict, Invalid, KubeError, NotFound, core_path
from whatsapp_channel.reasons import APISERVER_ERROR, SECRET_NAME_TAKEN

from tests.support.fake_kube import MemoryKube

NS = "wa-unit"


class Faulty(MemoryKube):
    """A `MemoryKube` whose next call of a method fails once as given (`once`), and which
    records the label selectors it was asked for (the real apiserver applies them)."""

    def __init__(self) -> None:
        super().__init__()
        self.once: dict[str, list[KubeError]] = {}
        self.selectors: list[str | None] = []

    async def request(self, method: str, path: str, **kwargs: Any) -> JSON:
        if method == "GET" and path == core_path("secrets", NS):
            self.selectors.append((kwargs.get("params") or {}).get("labelSelector"))
        errors = self.once.get(method)
        if errors:
            self.calls.append((method, path))
            raise errors.pop(0)
        return await super().request(method, path, **kwargs)

    async def watch(self, path: str, **kwargs: Any) -> AsyncIterator[JSON]:
        self.selectors.append(kwargs.get("label_selector"))
        async for event in super().watch(path, **kwargs):
            yield event


def ref_of(name: str, generation: int = 1, uid: str | None = None) -> ChannelRef:
    return ChannelRef(NS, name, uid or f"uid-{name}", generation)


def desired(ref: ChannelRef, token: str | None = None) -> JSON:
    return channel_secret.build(
        ChannelSecret(
            namespace=NS,
            channel=ref.name,
            channel_uid=ref.uid,
            instance_id=ref.name,
            phone_number_id="106540352242922",
            enabled=True,
            access_token=token or "EAAG-token-1",
            app_secret="secret-1",
            verify_token="verify-1",
        )
    )


def path(name: str) -> str:
    return core_path("secrets", NS, channel_secret.secret_name(name))


async def synced(kube: MemoryKube) -> ChannelSecrets:
    """Secrets whose cache was filled by a listing, as the watch's start does."""
    secrets = ChannelSecrets(kube, NS)
    secrets._on_event("SYNC", await kube.get(core_path("secrets", NS)))
    secrets.synced.set()
    return secrets


def reports(secrets: ChannelSecrets) -> list[str]:
    reported: list[str] = []

    async def on_drift(channel: str) -> None:
        reported.append(channel)

    secrets._on_drift = on_drift
    return reported


async def repairs(secrets: ChannelSecrets) -> None:
    """Let every scheduled repair run to its end."""
    while secrets._tasks:
        await asyncio.gather(*list(secrets._tasks))


async def test_the_watch_holds_our_secrets_knows_our_writes_and_reports_others() -> None:
    kube = Faulty()
    secrets = ChannelSecrets(kube, NS)
    drifted: asyncio.Queue[str] = asyncio.Queue()

    async def on_drift(channel: str) -> None:
        drifted.put_nowait(channel)

    watching = asyncio.create_task(secrets.run(on_drift))
    async with asyncio.timeout(10):
        await secrets.synced.wait()
        name = str(uuid.uuid4())
        ref = ref_of(name)
        assert await secrets.ensure(ref, desired(ref)) == "created"
        assert await secrets.delivered(channel_secret.secret_name(name), timeout=10)
        assert secrets.is_delivered(channel_secret.secret_name(name))
        assert len(secrets) == 1
        assert secrets.get(channel_secret.secret_name(name)) == kube.objects[path(name)]

        edited = copy.deepcopy(kube.objects[path(name)])
        edited["data"]["app_secret"] = "dGFtcGVyZWQ="
        await kube.replace(path(name), edited)  # by hand
        assert await drifted.get() == name
        await kube.delete(path(name))  # by hand
        assert await drifted.get() == name
    assert drifted.empty()
    # Only the generated Secrets are listed and watched, never the namespace's others.
    assert kube.selectors[:2] == [channel_secret.SELECTOR] * 2
    watching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watching


async def test_delivered_waits_for_the_watch_to_reach_our_write() -> None:
    secrets = ChannelSecrets(MemoryKube(), NS)
    assert await secrets.delivered("whatsapp-never-written", timeout=0)  # nothing to wait for
    secrets._ours["whatsapp-first"] = 1  # the apiserver's first version: not yet seen
    assert not secrets.is_delivered("whatsapp-first")
    secrets._on_event("SYNC", {"metadata": {"resourceVersion": "1"}, "items": []})
    assert secrets.is_delivered("whatsapp-first")  # a listing at its version includes it
    assert await secrets.delivered("whatsapp-first", timeout=0)
    assert secrets.is_delivered("whatsapp-never-written")
    assert await secrets.delivered("whatsapp-never-written", timeout=0)
    secrets._ours["whatsapp-a"], secrets._ours["whatsapp-b"] = 5, 7
    secrets._watched_up_to(4)
    assert not secrets.is_delivered("whatsapp-a")
    assert not await secrets.delivered("whatsapp-a", timeout=0.01)  # not in time
    a = asyncio.create_task(secrets.delivered("whatsapp-a", timeout=10))
    b = asyncio.create_task(secrets.delivered("whatsapp-b", timeout=10))
    await asyncio.sleep(0)
    secrets._watched_up_to(5)  # our write of a, not yet b's
    assert await a
    assert secrets.is_delivered("whatsapp-a")
    assert not secrets.is_delivered("whatsapp-b")
    assert not b.done()
    secrets._watched_up_to(3)  # an older version never moves it back
    assert secrets.is_delivered("whatsapp-a")
    secrets._on_event("MODIFIED", {"metadata": {"name": "other", "resourceVersion": "9"}})
    assert await b
    assert secrets._waiting == []


async def test_an_older_event_never_replaces_a_newer_one() -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    reports(secrets)
    ref = ref_of(str(uuid.uuid4()))
    await secrets.ensure(ref, desired(ref))
    name = channel_secret.secret_name(ref.name)
    newest = copy.deepcopy(secrets.get(name))
    assert newest is not None
    older = copy.deepcopy(newest)
    older["metadata"]["resourceVersion"] = "0"
    secrets._on_event("MODIFIED", older)
    assert secrets.get(name) == newest
    opaque = copy.deepcopy(newest)
    opaque["metadata"]["resourceVersion"] = "not-a-number"  # opaque: taken as 0, not newer
    secrets._on_event("MODIFIED", opaque)
    assert secrets.get(name) == newest
    await secrets.close()


async def test_a_relist_after_a_gap_reports_what_moved_meanwhile_and_only_that() -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    reported = reports(secrets)
    refs = [ref_of(str(uuid.uuid4())) for _ in range(3)]
    for ref in refs:
        await secrets.ensure(ref, desired(ref))
    kept, edited, deleted = refs
    moved = copy.deepcopy(kube.objects[path(edited.name)])
    moved["data"]["app_secret"] = "dGFtcGVyZWQ="
    await kube.replace(path(edited.name), moved)
    await kube.delete(path(deleted.name))
    secrets._on_event("SYNC", await kube.get(core_path("secrets", NS)))
    await repairs(secrets)
    assert sorted(reported) == sorted([edited.name, deleted.name])
    assert secrets.get(channel_secret.secret_name(deleted.name)) is None
    assert secrets.get(channel_secret.secret_name(kept.name)) is not None
    assert len(secrets) == 2


def forged(name: str) -> JSON:
    """Our labels on a Secret we did not write: no owner."""
    body = desired(ref_of(name))
    body["metadata"]["name"] = "looks-like-ours"
    return body


@pytest.mark.parametrize("listed", [True, False])
async def test_a_forged_secret_is_deleted_never_cached_or_taken_for_drift(listed: bool) -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    reported = reports(secrets)
    planted = await kube.create(core_path("secrets", NS), forged(str(uuid.uuid4())))
    if listed:
        secrets._on_event("SYNC", await kube.get(core_path("secrets", NS)))
    else:
        secrets._on_event("ADDED", planted)
    assert secrets.get("looks-like-ours") is None
    await repairs(secrets)
    assert core_path("secrets", NS, "looks-like-ours") not in kube.objects
    delete = json.loads(kube.bodies[-1])
    assert delete == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"uid": planted["metadata"]["uid"]},
    }
    secrets._on_event("DELETED", planted)  # its own deletion: not drift, not deleted again
    await repairs(secrets)
    assert reported == []
    assert [m for m, _ in kube.writes].count("DELETE") == 1


async def test_a_forged_secret_that_cannot_be_deleted_is_left_for_the_next_try() -> None:
    kube = Faulty()
    secrets = await synced(kube)
    planted = await kube.create(core_path("secrets", NS), forged(str(uuid.uuid4())))
    kube.once["DELETE"] = [KubeError(500, "InternalError", "etcd is down")]
    secrets._on_event("ADDED", planted)
    await repairs(secrets)  # the failure is logged, not raised
    assert core_path("secrets", NS, "looks-like-ours") in kube.objects
    secrets._on_event("MODIFIED", planted)
    await repairs(secrets)
    assert core_path("secrets", NS, "looks-like-ours") not in kube.objects


async def test_only_our_own_delete_is_not_drift() -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    reported = reports(secrets)
    ref = ref_of(str(uuid.uuid4()))
    await secrets.ensure(ref, desired(ref))
    ours = copy.deepcopy(kube.objects[path(ref.name)])
    await secrets.delete(ref)
    assert path(ref.name) not in kube.objects
    assert secrets.get(channel_secret.secret_name(ref.name)) is None
    secrets._on_event("DELETED", ours)  # ours
    await repairs(secrets)
    assert reported == []
    secrets._on_event("DELETED", ours)  # again: someone else's (recreated and deleted)
    await repairs(secrets)
    assert reported == [ref.name]


@pytest.mark.parametrize("error", [NotFound(404, "NotFound", "gone"), Conflict(409, "C", "uid")])
async def test_a_delete_that_did_not_happen_leaves_the_next_delete_event_as_drift(
    error: KubeError,
) -> None:
    kube = Faulty()
    secrets = await synced(kube)
    reported = reports(secrets)
    ref = ref_of(str(uuid.uuid4()))
    await secrets.ensure(ref, desired(ref))
    theirs = copy.deepcopy(kube.objects[path(ref.name)])
    kube.once["DELETE"] = [error]
    await secrets.delete(ref)
    secrets._on_event("DELETED", theirs)
    await repairs(secrets)
    assert reported == [ref.name]


async def test_a_delete_forgets_what_was_written_so_the_channel_may_be_written_afresh() -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    second = ref_of(str(uuid.uuid4()), generation=2)
    name = channel_secret.secret_name(second.name)
    await secrets.ensure(second, desired(second))
    secrets._ours[name] = 10**9  # as if the watch had not delivered our write yet
    await secrets.delete(second)
    assert secrets.is_delivered(name)  # nothing of ours left to wait for
    first = ref_of(second.name, generation=1)  # e.g. the channel made anew
    assert await secrets.ensure(first, desired(first)) == "created"


async def test_before_the_watch_synced_the_apiserver_is_read_instead() -> None:
    kube = MemoryKube()
    secrets = ChannelSecrets(kube, NS)  # not synced: nothing cached
    ref = ref_of(str(uuid.uuid4()))
    assert await secrets.ensure(ref, desired(ref)) == "created"
    update = ref_of(ref.name, generation=2)
    again = ChannelSecrets(kube, NS)  # e.g. after a restart, before its listing
    assert await again.ensure(update, desired(update, token="EAAG-2")) == "updated"
    await ChannelSecrets(kube, NS).delete(update)
    assert path(ref.name) not in kube.objects


async def test_a_cached_secret_is_deleted_with_one_request_and_leaves_nothing_behind() -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    ref = ref_of(str(uuid.uuid4()))
    await secrets.ensure(ref, desired(ref))
    kube.calls.clear()
    await secrets.delete(ref)
    assert kube.calls == [("DELETE", path(ref.name))]
    assert secrets._locks == {}  # no lock per deleted channel left behind


async def test_our_delete_seen_while_the_fresh_write_is_in_flight_is_not_drift() -> None:
    class LateDelete(Faulty):
        """Delivers the DELETED event of our delete only while the next create is asked."""

        deleted: JSON | None = None

        async def request(self, method: str, path: str, **kwargs: Any) -> JSON:
            answer = await super().request(method, path, **kwargs)
            if method == "DELETE":
                self.deleted = answer
            return answer

        async def create(self, path: str, body: JSON) -> JSON:
            if self.deleted is not None:
                secrets._on_event("DELETED", self.deleted)
                self.deleted = None
            return await super().create(path, body)

    kube = LateDelete()
    secrets = await synced(kube)
    reported = reports(secrets)
    ref = ref_of(str(uuid.uuid4()))
    await secrets.ensure(ref, desired(ref))
    update = ref_of(ref.name, generation=2)
    kube.once["PUT"] = [Invalid(422, "Invalid", "field is immutable")]
    assert await secrets.ensure(update, desired(update, token="EAAG-2")) == "created"
    await repairs(secrets)
    assert reported == []


@pytest.mark.parametrize("work", ["ensure", "delete", "sweep", "delete_orphan", "forged"])
async def test_every_write_of_a_secret_waits_for_the_one_in_flight(work: str) -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    ref = ref_of(str(uuid.uuid4()))
    await secrets.ensure(ref, desired(ref))
    name = channel_secret.secret_name(ref.name)
    update = ref_of(ref.name, generation=2)
    if work == "forged":
        name = "looks-like-ours"
        planted = await kube.create(core_path("secrets", NS), forged(ref.name))
    calls: dict[str, Coroutine[Any, Any, object]] = {
        "ensure": secrets.ensure(update, desired(update, token="EAAG-2")),
        "delete": secrets.delete(ref),
        "sweep": secrets.sweep([]),
        "delete_orphan": secrets.delete_orphan(ref.name),
    }
    writes = len(kube.writes)
    waiting: asyncio.Future[Any]
    async with secrets.holding(name):
        if work == "forged":
            secrets._on_event("ADDED", planted)
            [waiting] = secrets._tasks
        else:
            waiting = asyncio.ensure_future(calls.pop(work))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()
        assert len(kube.writes) == writes
    await waiting
    assert len(kube.writes) == writes + 1
    for call in calls.values():
        call.close()  # the other kinds: not asked


async def test_a_foreign_secret_of_the_name_is_neither_written_nor_deleted() -> None:
    kube = MemoryKube()
    ref = ref_of(str(uuid.uuid4()))
    foreign = {"metadata": {"name": channel_secret.secret_name(ref.name)}, "data": {}}
    await kube.create(core_path("secrets", NS), foreign)
    secrets = ChannelSecrets(kube, NS)  # not synced: reads from the apiserver
    with pytest.raises(ChannelFailure) as failed:
        await secrets.ensure(ref, desired(ref))
    assert failed.value.reason == SECRET_NAME_TAKEN
    assert failed.value.message == (
        f"a Secret named whatsapp-{ref.name} exists and is not this channel's; delete or rename it"
    )
    await secrets.delete(ref)
    assert path(ref.name) in kube.objects
    await secrets.delete(ref_of("never-written"))  # nothing there: nothing done
    assert [m for m, _ in kube.writes] == ["POST"]


async def test_an_older_generation_is_not_written_over_a_newer_one() -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    name = str(uuid.uuid4())
    newer, older = ref_of(name, generation=3), ref_of(name, generation=2)
    await secrets.ensure(newer, desired(newer, token="EAAG-new"))
    kube.writes.clear()
    assert await secrets.ensure(older, desired(older, token="EAAG-old")) is None
    assert kube.writes == []
    again = ref_of(name, generation=3)  # the same generation again: written
    assert await secrets.ensure(again, desired(again, token="EAAG-again")) == "updated"
    other_uid = ref_of(name, generation=1, uid="uid-made-anew")  # another channel of the name
    made_anew = desired(other_uid, token="EAAG-anew")
    assert await secrets.ensure(other_uid, made_anew) == "updated"
    anew_2 = ref_of(name, 2, "uid-made-anew")
    assert await secrets.ensure(anew_2, desired(anew_2, token="EAAG-anew-2")) == "updated"
    kube.writes.clear()
    assert await secrets.ensure(other_uid, made_anew) is None  # its older generation
    assert kube.writes == []
    assert kube.objects[path(name)]["data"] == desired(anew_2, token="EAAG-anew-2")["data"]


async def test_a_write_copes_with_an_apiserver_that_moved_meanwhile() -> None:
    kube = Faulty()
    secrets = await synced(kube)
    ref = ref_of(str(uuid.uuid4()))
    # Created by someone else's earlier write the cache has not seen: read and replaced.
    await kube.create(core_path("secrets", NS), desired(ref, token="EAAG-old"))
    assert await secrets.ensure(ref, desired(ref)) == "updated"
    assert kube.objects[path(ref.name)]["data"] == desired(ref)["data"]
    # Changed since we looked: read again and replaced.
    update = ref_of(ref.name, generation=2)
    kube.once["PUT"] = [Conflict(409, "Conflict", "modified")]
    assert await secrets.ensure(update, desired(update, token="EAAG-2")) == "updated"
    assert kube.objects[path(ref.name)]["data"] == desired(update, token="EAAG-2")["data"]
    # Gone since we looked: created.
    update = ref_of(ref.name, generation=3)
    kube.once["PUT"] = [NotFound(404, "NotFound", "gone")]
    await kube.delete(path(ref.name))
    assert await secrets.ensure(update, desired(update, token="EAAG-3")) == "created"
    # Made immutable by hand: deleted and written afresh.
    update = ref_of(ref.name, generation=4)
    kube.once["PUT"] = [Invalid(422, "Invalid", "field is immutable")]
    uid = kube.objects[path(ref.name)]["metadata"]["uid"]
    assert await secrets.ensure(update, desired(update, token="EAAG-4")) == "created"
    assert kube.objects[path(ref.name)]["data"] == desired(update, token="EAAG-4")["data"]
    assert kube.objects[path(ref.name)]["metadata"]["uid"] != uid


async def test_a_secret_that_keeps_changing_is_an_apiserver_error_after_four_tries() -> None:
    kube = Faulty()
    secrets = await synced(kube)
    ref = ref_of(str(uuid.uuid4()))
    await secrets.ensure(ref, desired(ref))
    update = ref_of(ref.name, generation=2)
    kube.once["PUT"] = [Conflict(409, "Conflict", "modified") for _ in range(4)]
    kube.calls.clear()
    with pytest.raises(ChannelFailure) as failed:
        await secrets.ensure(update, desired(update, token="EAAG-2"))
    assert failed.value.reason == APISERVER_ERROR
    assert failed.value.message == (
        f"Secret whatsapp-{ref.name} kept changing while being written; will retry"
    )
    assert [m for m, _ in kube.calls] == ["PUT", "GET"] * 4
    kube.once["PUT"] = [Conflict(409, "Conflict", "modified") for _ in range(3)]
    assert await secrets.ensure(update, desired(update, token="EAAG-2")) == "updated"


async def test_a_drift_burst_is_one_repair_and_a_failing_repair_backs_off_then_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    ref = ref_of(str(uuid.uuid4()))
    await secrets.ensure(ref, desired(ref))
    theirs = copy.deepcopy(kube.objects[path(ref.name)])
    theirs["metadata"]["resourceVersion"] = "1000"
    slept: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        slept.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", sleep)  # the repair's back-off, not waited
    calls: list[str] = []
    failures = [KubeError(500, "InternalError", "busy")]

    async def on_drift(channel: str) -> None:
        calls.append(channel)
        if failures:
            raise failures.pop()

    secrets._on_drift = on_drift
    secrets._on_event("MODIFIED", theirs)
    secrets._on_event("MODIFIED", theirs)  # a burst: one repair
    assert len(secrets._tasks) == 1
    await repairs(secrets)
    assert calls == [ref.name, ref.name]  # failed once, retried
    assert slept == [channel_secrets.DRIFT_DEBOUNCE, 1]
    secrets._on_event("MODIFIED", theirs)  # after the repair: a new one
    slept.clear()
    failures[:] = [KubeError(500, "InternalError", "busy")] * REPAIR_ATTEMPTS
    await repairs(secrets)
    assert calls == [ref.name] * (2 + REPAIR_ATTEMPTS)  # then gives up
    assert slept == [channel_secrets.DRIFT_DEBOUNCE, 1, 2, 4, 8, 16, 30]


async def test_no_repair_without_a_handler_or_an_instance() -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    secrets._on_event("MODIFIED", {"metadata": {"name": "x", "resourceVersion": "3"}})
    ref = ref_of(str(uuid.uuid4()))
    secrets._on_event("MODIFIED", desired(ref) | {"metadata": {"name": "y", "labels": {}}})
    theirs = await kube.create(core_path("secrets", NS), desired(ref))
    secrets._on_event("MODIFIED", theirs)  # drift, before the watch has a handler
    reports(secrets)
    secrets._on_event("MODIFIED", {"metadata": {"name": "z", "labels": {}}})
    assert secrets._tasks == set()


async def test_startup_deletes_only_our_secrets_whose_channel_is_gone() -> None:
    kube = MemoryKube()
    alive, gone, theirs = (ref_of(str(uuid.uuid4())) for _ in range(3))
    for ref in (alive, gone):
        await kube.create(core_path("secrets", NS), desired(ref))
    unmanaged = desired(theirs)
    del unmanaged["metadata"]["labels"][channel_secret.MANAGED_BY_LABEL]
    await kube.create(core_path("secrets", NS), unmanaged)
    secrets = await synced(kube)
    assert await secrets.sweep([alive.name]) == 1
    assert path(gone.name) not in kube.objects
    assert path(alive.name) in kube.objects
    assert path(theirs.name) in kube.objects
    assert await secrets.sweep([alive.name]) == 0

    await secrets.delete_orphan(theirs.name)  # not ours: stays
    assert path(theirs.name) in kube.objects
    await secrets.delete_orphan(alive.name)
    assert path(alive.name) not in kube.objects


async def test_close_ends_every_task_it_started() -> None:
    kube = MemoryKube()
    secrets = await synced(kube)
    reports(secrets)
    ref = ref_of(str(uuid.uuid4()))
    await secrets.ensure(ref, desired(ref))
    theirs = copy.deepcopy(kube.objects[path(ref.name)])
    theirs["metadata"]["resourceVersion"] = "1000"
    secrets._on_event("MODIFIED", theirs)
    [task] = secrets._tasks
    await secrets.close()
    assert task.cancelled()

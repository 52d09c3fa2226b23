"""The generated Secrets: a watch-fed cache, the writes, and drift detection.

One list+watch with a server-side label selector keeps every generated Secret of the
namespace in memory: reconciling compares against it instead of reading each Secret, so an
unchanged channel costs no request. Any change the operator did not make itself (a Secret
deleted or edited by hand, or a gap in the watch) is handed to `on_drift` with the channel's
name, within a second or so. Nothing here logs a Secret's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Literal

from whatsapp_channel import channel_secret
from whatsapp_channel.kube import Conflict, Invalid, Kube, KubeError, NotFound, core_path, reflect
from whatsapp_channel.reasons import APISERVER_ERROR, SECRET_NAME_TAKEN
from whatsapp_channel.untrusted import shown

from channel_operator.desired import (
    ChannelFailure,
    ChannelRef,
    is_managed,
    may_write,
    merged_secret,
    secret_is_current,
)

log = logging.getLogger(__name__)

WRITE_ATTEMPTS = 4
DRIFT_DEBOUNCE = 0.2
REPAIR_ATTEMPTS = 6

JSON = dict[str, Any]
Written = Literal["created", "updated"]
DriftHandler = Callable[[str], Awaitable[None]]


def _version(obj: JSON | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:  # opaque by contract; etcd's are integers
        return 0


def _name(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _is_forged(obj: JSON) -> bool:
    """Selected by our labels (managed-by, instance id), yet not what we write."""
    labelled = is_managed(obj) and channel_secret.instance_of(obj) is not None
    return labelled and not channel_secret.is_generated(obj)


class ChannelSecrets:
    def __init__(self, kube: Kube, namespace: str) -> None:
        self._kube = kube
        self._namespace = namespace
        self._cache: dict[str, JSON] = {}
        self._ours: dict[str, int] = {}  # name -> resourceVersion of our own last write
        self._deleted_by_us: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        # name -> (channel uid, generation) of the newest spec a write made current
        self._applied: dict[str, tuple[str, int]] = {}
        self._pending: set[str] = set()
        # name -> the watch events that arrived while our write of it was in flight
        self._writing: dict[str, list[tuple[str, JSON]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_drift: DriftHandler | None = None
        self.synced = asyncio.Event()
        # The newest resourceVersion the watch delivered (an event's, or a listing's), and
        # who waits for it to reach a version: (version, tie-breaker, future), oldest first.
        self._watched = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._tie = itertools.count()

    # --- the cache ----------------------------------------------------------------------

    def get(self, name: str) -> JSON | None:
        return self._cache.get(name)

    def __len__(self) -> int:
        return len(self._cache)

    async def run(self, on_drift: DriftHandler) -> None:
        """Keep the cache and report drift, until cancelled."""
        self._on_drift = on_drift
        try:
            await reflect(
                self._kube,
                core_path("secrets", self._namespace),
                self._on_event,
                label_selector=channel_secret.SELECTOR,
                on_synced=self.synced.set,
            )
        finally:
            for task in list(self._tasks):
                task.cancel()

    def _keep(self, obj: JSON) -> None:
        name = _name(obj)
        if _version(obj) >= _version(self._cache.get(name)):
            self._cache[name] = obj

    def is_delivered(self, name: str) -> bool:
        """True when the watch delivered the operator's own last write of Secret `name`
        (or there was none since the operator started)."""
        return self._ours.get(name, 0) <= self._watched

    async def delivered(self, name: str, timeout: float) -> bool:
        """Wait until the watch delivered the operator's own last write of Secret `name`,
        at most `timeout` seconds; False when it did not in time.

        Why it is worth waiting for: the receiver learns a channel from its own watch on
        these Secrets, and Meta calls the receiver's challenge during the override call.
        Both watches are served by the same apiserver watch cache at about the same moment,
        so "the operator's watch delivered it" is a good proxy for "the receiver's did",
        at no extra request. A watch delivers in resourceVersion order, so a delivered
        version at least ours means ours was delivered (or listed)."""
        wanted = self._ours.get(name, 0)
        if wanted <= self._watched:
            return True
        arrived: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (wanted, next(self._tie), arrived))
        try:
            async with asyncio.timeout(timeout):
                await arrived
        except TimeoutError:
            return False
        return True

    def _watched_up_to(self, version: int) -> None:
        """The watch delivered `version`: wake whoever waited for it or an older one."""
        self._watched = max(self._watched, version)
        while self._waiting and self._waiting[0][0] <= self._watched:
            arrived = heapq.heappop(self._waiting)[2]
            if not arrived.done():  # a waiter that timed out cancelled its future
                arrived.set_result(None)

    def _on_event(self, kind: str, obj: JSON) -> None:
        if kind == "SYNC":
            items = obj.get("items") or []
            for item in filter(_is_forged, items):
                self._forged(item)
            listed = {_name(i): i for i in items if not _is_forged(i)}
            if self.synced.is_set():  # a re-list after a gap: check whatever moved meanwhile
                for name, old in self._cache.items():
                    new = listed.get(name)
                    if new is None or _version(new) != _version(old):
                        self._drifted(new or old)
            self._cache = listed
            self._watched_up_to(_version(obj))
            return
        self._watched_up_to(_version(obj))
        name = _name(obj)
        if kind != "DELETED" and _is_forged(obj):
            self._forged(obj)
            return
        if kind == "DELETED":
            self._cache.pop(name, None)
        else:
            self._keep(obj)
        held = self._writing.get(name)
        if held is not None:  # our write's answer may still be on its way: judge it then
            held.append((kind, obj))
            return
        self._judge(kind, obj)

    def _judge(self, kind: str, obj: JSON) -> None:
        """Drift, unless the event is our own write (or our own delete)."""
        name = _name(obj)
        if kind == "DELETED":
            if name in self._deleted_by_us:
                self._deleted_by_us.discard(name)
                return
        elif self._ours.get(name) == _version(obj):
            return
        self._drifted(obj)

    async def _write(self, name: str, call: Awaitable[JSON]) -> JSON:
        """A create or replace of Secret `name`. Its own watch event can arrive before its
        answer (under load it often does): events meanwhile are held and judged once the
        answer says which version is ours, so our write is never taken for drift."""
        self._writing[name] = []
        try:
            obj = await call
            self._wrote(obj)
            return obj
        finally:
            for kind, event in self._writing.pop(name, []):
                self._judge(kind, event)

    def _forged(self, obj: JSON) -> None:
        """A Secret with our labels that we did not write (not `whatsapp-<instance id>`
        controlled by that channel): deleted, so nothing routes by it."""
        task = asyncio.create_task(self._delete_forged(obj), name=f"delete {_name(obj)}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _delete_forged(self, obj: JSON) -> None:
        name = _name(obj)
        try:
            async with self._lock(name):
                await self._delete(obj)
        except KubeError as exc:  # the next event or re-list tries again
            log.warning("deleting forged Secret %s failed (%s)", shown(name), shown(exc.reason))
            return
        log.warning(
            "deleted Secret %s: it carries the operator's labels, not its shape", shown(name)
        )

    def _drifted(self, obj: JSON) -> None:
        channel = channel_secret.instance_of(obj)
        if channel is None or self._on_drift is None or channel in self._pending:
            return
        self._pending.add(channel)
        task = asyncio.create_task(self._repair(channel), name=f"repair {channel}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _repair(self, channel: str) -> None:
        await asyncio.sleep(DRIFT_DEBOUNCE)  # a burst of events, one repair
        self._pending.discard(channel)
        assert self._on_drift is not None
        for attempt in range(REPAIR_ATTEMPTS):
            try:
                await self._on_drift(channel)
                return
            except KubeError as exc:
                log.warning(
                    "repairing channel %s failed (%s); retrying", shown(channel), shown(exc.reason)
                )
                await asyncio.sleep(min(2**attempt, 30))
        log.error("gave up repairing channel %s; its next reconcile will", shown(channel))

    # --- writes ---------------------------------------------------------------------------

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    def _path(self, name: str | None = None) -> str:
        return core_path("secrets", self._namespace, name)

    async def _read(self, name: str) -> JSON | None:
        try:
            obj = await self._kube.get(self._path(name))
        except NotFound:
            return None
        return obj

    def _wrote(self, obj: JSON) -> None:
        self._ours[_name(obj)] = _version(obj)
        self._keep(obj)

    @contextlib.asynccontextmanager
    async def holding(self, name: str) -> AsyncIterator[None]:
        """Hold the lock every write of Secret `name` takes (then write with `ensure_locked`)."""
        async with self._lock(name):
            yield

    async def ensure(self, ref: ChannelRef, desired: JSON) -> Written | None:
        """Make the Secret equal `desired`; how it was written, None when it already was.
        Raises ChannelFailure when the name belongs to someone else, KubeError on apiserver
        errors."""
        async with self._lock(_name(desired)):
            return await self.ensure_locked(ref, desired)

    def _stale(self, ref: ChannelRef, name: str) -> bool:
        """True when a newer generation of the same channel was already written."""
        uid, generation = self._applied.get(name, ("", 0))
        return uid == ref.uid and ref.generation < generation

    def _applied_now(self, ref: ChannelRef, name: str) -> None:
        uid, generation = self._applied.get(name, ("", 0))
        if uid != ref.uid or ref.generation > generation:
            self._applied[name] = (ref.uid, ref.generation)

    async def ensure_locked(self, ref: ChannelRef, desired: JSON) -> Written | None:
        """`ensure`, for a caller that holds the lock (`holding`)."""
        name = _name(desired)
        if self._stale(ref, name):
            log.info("Secret %s: generation %d is older than one written", name, ref.generation)
            return None
        written = await self._ensure(ref, desired)
        self._applied_now(ref, name)
        return written

    async def _ensure(self, ref: ChannelRef, desired: JSON) -> Written | None:
        name = _name(desired)
        existing = self._cache.get(name) if self.synced.is_set() else await self._read(name)
        for _ in range(WRITE_ATTEMPTS):
            if existing is None:
                try:
                    await self._write(name, self._kube.create(self._path(), desired))
                    return "created"
                except Conflict:  # it exists after all (the cache lags)
                    existing = await self._read(name)
                    continue
            if not may_write(existing, ref):
                raise ChannelFailure(
                    SECRET_NAME_TAKEN,
                    f"a Secret named {name} exists and is not this channel's; delete or rename it",
                )
            if secret_is_current(existing, desired):
                return None
            try:
                replaced = self._kube.replace(self._path(name), merged_secret(existing, desired))
                await self._write(name, replaced)
                return "updated"
            except Conflict:  # changed since we looked
                existing = await self._read(name)
            except NotFound:
                existing = None
            except Invalid:  # made immutable or retyped by hand: start it afresh
                await self._delete(existing)
                existing = None
        raise ChannelFailure(
            APISERVER_ERROR, f"Secret {name} kept changing while being written; will retry"
        )

    async def _delete(self, existing: JSON) -> None:
        name = _name(existing)
        uid = (existing.get("metadata") or {}).get("uid")
        self._deleted_by_us.add(name)
        try:
            options = {"apiVersion": "v1", "kind": "DeleteOptions"}
            body = {**options, "preconditions": {"uid": uid}} if uid else None
            await self._kube.delete(self._path(name), body)
        except NotFound:
            self._deleted_by_us.discard(name)
        except Conflict:  # replaced by another object meanwhile: not the one we meant
            self._deleted_by_us.discard(name)
        self._cache.pop(name, None)
        self._ours.pop(name, None)
        self._applied.pop(name, None)

    async def delete(self, ref: ChannelRef) -> None:
        """Delete the channel's Secret if it is ours (a foreign one of that name stays)."""
        name = ref.secret_name
        async with self._lock(name):
            existing = self._cache.get(name) or await self._read(name)
            if existing is None:
                return
            if not may_write(existing, ref):
                log.warning("Secret %s is not channel %s's; left in place", name, ref.name)
                return
            await self._delete(existing)
        self._locks.pop(name, None)

    async def sweep(self, channel_names: Iterable[str]) -> int:
        """Delete generated Secrets whose channel no longer exists (left behind while the
        operator was down and garbage collection did not run). Returns how many."""
        alive = set(channel_names)
        orphans = [
            obj
            for obj in list(self._cache.values())
            if is_managed(obj) and channel_secret.instance_of(obj) not in alive
        ]
        for obj in orphans:
            name = _name(obj)
            async with self._lock(name):
                await self._delete(obj)
            log.info("deleted Secret %s: its channel is gone", name)
        return len(orphans)

    async def delete_orphan(self, channel: str) -> None:
        """Delete the cached Secrets of a channel that no longer exists."""
        for obj in [
            o for o in list(self._cache.values()) if channel_secret.instance_of(o) == channel
        ]:
            if is_managed(obj):
                async with self._lock(_name(obj)):
                    await self._delete(obj)
                log.info("deleted Secret %s: its channel is gone", _name(obj))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

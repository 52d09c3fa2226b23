"""Leader election on a `coordination.k8s.io` Lease: every replica is a candidate, only the
holder works (Kopf's handlers, the health checks, every Graph call); the others stand by.

The algorithm is client-go's (`tools/leaderelection`), with its defaults (lease 15 s, renew
deadline 10 s, retry 2 s):

- a candidate reads the Lease every `retry_period`; it takes it when nobody holds it, or when
  what it reads has not changed for the lease's duration *by its own clock* (the holder's
  clock is never trusted), with a write conditional on the version it read; it tries again
  when that duration ends rather than up to a retry period later (client-go waits for the
  next period: up to 2 s more of no leader after a holder died);
- the holder renews every `retry_period`, with one write on the Lease it last wrote (its
  version a precondition: client-go's optimistic fast path, half the round trips of a read
  and a write, which counts when the apiserver takes seconds to answer); a conflict falls
  back to the read; when no renewal succeeded for `renew_deadline`
  (shorter than the lease), it has lost: the process exits at once, so it stops before any
  candidate can take the Lease, and Kubernetes starts it again as a candidate;
- on SIGTERM the holder stops its work and then releases the Lease (no holder), so the next
  candidate takes it at its next read instead of after the lease's duration;
- the holder renews on a thread of its own, with its own event loop and connection (as
  client-go renews on a goroutine of its own): the operator's loop, busy with tens of
  thousands of channels at a restart, must not delay a renewal past the deadline (it did at
  10,000 channels on 2 shared cores: docs/benchmarks.md).

Why our own and not the kubernetes client's `leaderelection`: that one is synchronous (a
thread with blocking calls and its own client), while the operator is asyncio with an async
client (`whatsapp_channel.kube`); it has no release on shutdown; and it cannot stop the
work from inside the loop it blocks. The Lease API is a get and a conditional update: the
algorithm is these few lines, tested against the real apiserver (tests/operator).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from whatsapp_channel.kube import Conflict, Kube, KubeError, NotFound

from channel_operator import metrics

log = logging.getLogger(__name__)

JSON = dict[str, Any]
EXIT_LOST = 3  # the process's exit status when it lost the lease


class LeadershipLost(Exception):
    """The Lease was not renewed within the renew deadline, or someone else holds it."""


def lease_path(namespace: str, name: str | None = None) -> str:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
    return path if name is None else f"{path}/{name}"


def micro_time(moment: datetime) -> str:
    """Kubernetes' MicroTime (RFC 3339 with microseconds, UTC)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def candidate_identity() -> str:
    """The pod's name (its hostname) and a per-process suffix: two processes on one host
    (or a restarted container) are two candidates."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@dataclass
class Election:
    kube: Kube
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # The Lease's spec as last read or written, and when (monotonic, our own clock).
    _observed: JSON | None = field(default=None, init=False)
    _observed_at: float = field(default=0.0, init=False)
    _renewed_at: float = field(default=0.0, init=False)
    _written: JSON | None = field(default=None, init=False)  # the Lease as we last wrote it

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < lease")

    @property
    def holder(self) -> str:
        return str((self._observed or {}).get("holderIdentity") or "")

    def _spec(self, now: datetime, *, previous: JSON) -> JSON:
        ours = previous.get("holderIdentity") == self.identity
        transitions = int(previous.get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": round(self.lease_duration),
            "acquireTime": previous.get("acquireTime") if ours else micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": transitions if ours or not previous else transitions + 1,
        }

    def _observe(self, spec: JSON, at: float) -> None:
        if spec != self._observed:
            self._observed, self._observed_at = spec, at

    async def try_acquire_or_renew(self) -> bool:
        """One attempt: True when we hold the Lease afterwards (renewed or taken)."""
        sent = time.monotonic()
        now = datetime.now(UTC)
        path = lease_path(self.namespace, self.name)
        written, self._written = self._written, None
        if written is not None and self.holder == self.identity:
            spec = self._spec(now, previous=self._observed or {})
            try:
                self._written = await self.kube.replace(path, {**written, "spec": spec})
            except (Conflict, NotFound):
                pass  # someone else wrote it since: read it, as a candidate does
            else:
                self._observe(spec, sent)
                self._renewed_at = sent
                return True
        try:
            lease = await self.kube.get(path)
        except NotFound:
            spec = self._spec(now, previous={})
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": spec,
            }
            try:
                self._written = await self.kube.create(lease_path(self.namespace), body)
            except Conflict:  # another candidate created it first
                return False
            self._observe(spec, sent)
            self._renewed_at = sent
            return True
        current: JSON = lease.get("spec") or {}
        self._observe(current, time.monotonic())
        holder = str(current.get("holderIdentity") or "")
        duration = float(current.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration:
            return False
        spec = self._spec(now, previous=current)
        body = {**lease, "spec": spec}
        try:
            self._written = await self.kube.replace(path, body)
        except (Conflict, NotFound):  # changed or gone since read: read again next time
            return False
        self._observe(spec, sent)
        self._renewed_at = sent
        return True

    async def attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except KubeError as exc:
            log.warning("leader election: the Lease could not be read or written (%s)", exc.reason)
            return False

    def next_try_in(self) -> float:
        """A candidate's wait before its next try: the retry period, or less when the Lease
        it saw held lapses sooner (by our clock), so a silent leader is replaced as soon as
        its lease allows. Once lapsed (the try failed anyway), the retry period again."""
        if not self.holder or self.holder == self.identity:
            return self.retry_period
        spec = self._observed or {}
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        lapses_in = self._observed_at + duration - time.monotonic()
        return min(self.retry_period, lapses_in) if lapses_in > 0 else self.retry_period

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Try until we hold the Lease (True) or `stopping` is set."""
        while not stopping.is_set():
            if await self.attempt():
                return True
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.next_try_in()):
                    await stopping.wait()
        return False

    async def hold(self) -> None:
        """Renew every retry period; raises LeadershipLost when no renewal succeeded for the
        renew deadline, or another candidate holds the Lease."""
        while True:
            await asyncio.sleep(self.retry_period)
            while True:
                remaining = self._renewed_at + self.renew_deadline - time.monotonic()
                if remaining <= 0:
                    raise LeadershipLost(f"not renewed for {self.renew_deadline:.0f}s")
                renewed = False
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        renewed = await self.attempt()
                if renewed:
                    break
                if self.holder and self.holder != self.identity:
                    raise LeadershipLost(f"the Lease is held by {self.holder}")
                await asyncio.sleep(min(self.retry_period, max(remaining, 0)))

    async def release(self) -> None:
        """Give the Lease up (no holder) if we hold it: the next candidate takes it at once."""
        path = lease_path(self.namespace, self.name)
        try:
            lease = await self.kube.get(path)
            spec: JSON = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            now = micro_time(datetime.now(UTC))
            released = {
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": spec.get("leaseTransitions") or 0,
            }
            await self.kube.replace(path, {**lease, "spec": released})
            log.info("leader election: released Lease %s/%s", self.namespace, self.name)
        except KubeError as exc:  # it expires by itself
            log.warning("leader election: could not release the Lease (%s)", exc.reason)


def exit_at_once(reason: BaseException) -> None:
    """Leadership lost: stop every piece of work now, before another replica may start."""
    log.critical("leader election: %s; exiting so that no two operators act at once", reason)
    sys.stderr.flush()
    os._exit(EXIT_LOST)


@contextlib.asynccontextmanager
async def standby_health(host: str, port: int) -> AsyncIterator[None]:
    """A standby answers its liveness probe (Kopf serves it once this replica leads)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"role": "standby"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def lead(
    election: Election,
    work: Callable[[], Awaitable[None]],
    *,
    health: tuple[str, int] | None,
    on_lost: Callable[[BaseException], None] = exit_at_once,
) -> None:
    """Stand by until elected, then run `work` while the Lease is renewed (`Renewal`: a
    lost Lease calls `on_lost` from the renewal's thread); release it once `work` returns
    (Kopf returns on SIGTERM). A SIGTERM while standing by just ends."""
    try:
        if await _elected(election, health):
            await _leading(election, work, on_lost)
    finally:
        await election.kube.close()


async def _elected(election: Election, health: tuple[str, int] | None) -> bool:
    """True once we hold the Lease; False on SIGTERM while standing by."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):  # Kopf installs its own once it runs
        loop.add_signal_handler(signum, stopping.set)
    if await election.attempt():
        return True
    log.info(
        "leader election: standing by; Lease %s/%s is held by %s",
        election.namespace,
        election.name,
        election.holder,
    )
    async with contextlib.AsyncExitStack() as stack:
        if health is not None:
            await stack.enter_async_context(standby_health(*health))
        return await election.acquire(stopping)


class Renewal(threading.Thread):
    """`election.hold()` on a thread of its own with its own event loop and client (a
    client's connections belong to the loop that opened them); `on_lost` is called from
    that thread, at once, however busy the operator's loop is."""

    def __init__(self, election: Election, on_lost: Callable[[BaseException], None]) -> None:
        super().__init__(name="leader election", daemon=True)
        self.election = copy.copy(election)  # its record of the last renewal, carried on
        self.election.kube = election.kube.for_another_loop()
        self.on_lost = on_lost
        self.loop = asyncio.new_event_loop()
        self.task = self.loop.create_task(self.election.hold())

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass  # stopped: the work ended
        except BaseException as error:  # LeadershipLost, or a bug: either way, not leading
            self.on_lost(error)
        finally:
            self.loop.run_until_complete(self.election.kube.close())
            self.loop.close()

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop is closed: it ended by itself
            self.loop.call_soon_threadsafe(self.task.cancel)


async def _leading(
    election: Election,
    work: Callable[[], Awaitable[None]],
    on_lost: Callable[[BaseException], None],
) -> None:
    log.info("leader election: leading as %s", election.identity)
    metrics.LEADER.set(1)
    renewal = Renewal(election, on_lost)
    renewal.start()
    try:
        await work()
    finally:
        renewal.stop()
        await asyncio.to_thread(renewal.join)
        metrics.LEADER.set(0)
        await election.release()

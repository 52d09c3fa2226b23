"""What the failover tests on the node look at (issue 25, item 3): who holds the operator's
Lease and how it changed hands, every write the apiserver took meanwhile (a watch on the
Lease, the channels and their Secrets, in a thread of its own), and what Meta's stand-in was
asked for each channel.

A duplicate write is one more write of a channel or its Secret than the same change costs
when no handover happens (the baseline, measured in the same test); a duplicate call is one
more Graph call for a channel's number or account than that baseline. A channel reconciled
before a handover must cost neither (the new leader resumes it without a word). The calls on
no number nor account (the token's check, which each leader keeps for a day) are asked again
by a new leader, once per token."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from whatsapp_channel.channel_secret import secret_name
from whatsapp_channel.kube import Kube

from tests.support.graph import StandinThread

JSON = dict[str, Any]
# Graph calls counted on no number nor account (the stand-in's own object ids for them).
SHARED_OBJECTS = ("debug_token", "app", "oauth")


@dataclass(frozen=True)
class Number:
    """A phone number of its own business account, so that every Graph call of its channel
    (the number's and the account's) is told apart from any other channel's."""

    phone: str
    waba: str


def numbers(first: int, count: int) -> list[Number]:
    return [Number(f"1065403522{i:05d}", f"1022901293{i:05d}") for i in range(first, first + count)]


@dataclass(frozen=True)
class Event:
    at: float  # time.monotonic() when it arrived
    kind: str  # LISTED (there when the watch began), ADDED, MODIFIED, DELETED
    obj: JSON

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


class Recorder:
    """Every event of the watched collections (`{key: apiserver path}`) from `start` on, each
    with when it arrived; a watch that breaks fails `stop` (a gap would hide writes)."""

    def __init__(self, kubeconfig: Path, paths: Mapping[str, str]) -> None:
        self._kube = Kube.connect(str(kubeconfig), user_agent="tests-failover")
        self._paths = dict(paths)
        self._events: dict[str, list[Event]] = {key: [] for key in paths}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._follows: list[Future[None]] = []

    def start(self, timeout: float = 60.0) -> None:
        self._thread.start()
        synced = [threading.Event() for _ in self._paths]
        self._follows = [
            asyncio.run_coroutine_threadsafe(self._follow(key, path, ready), self._loop)
            for (key, path), ready in zip(self._paths.items(), synced, strict=True)
        ]
        deadline = time.monotonic() + timeout
        for ready, follow in zip(synced, self._follows, strict=True):
            while not ready.wait(0.2):
                if follow.done():
                    follow.result()  # raises what broke it
                assert time.monotonic() < deadline, "the recorder's watches never started"

    async def _follow(self, key: str, path: str, synced: threading.Event) -> None:
        listing = await self._kube.get(path)
        version = str(listing["metadata"]["resourceVersion"])
        now = time.monotonic()
        with self._lock:
            self._events[key].extend(Event(now, "LISTED", o) for o in listing.get("items") or [])
        synced.set()
        while True:  # the server ends a watch now and then: go on from the last version
            async for event in self._kube.watch(path, resource_version=version):
                obj = event.get("object") or {}
                version = str(obj["metadata"]["resourceVersion"])
                if event["type"] != "BOOKMARK":
                    with self._lock:
                        self._events[key].append(Event(time.monotonic(), event["type"], obj))

    def stop(self) -> None:
        for follow in self._follows:
            follow.cancel()
        for follow in self._follows:
            try:
                follow.result(timeout=30)
                raise AssertionError("a watch of the recorder ended by itself")
            except CancelledError:
                pass
        asyncio.run_coroutine_threadsafe(self._kube.close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    def events(self, key: str, name: str | None = None, since: float | None = None) -> list[Event]:
        """Every event of `key` (of one object by name), or only the writes after `since`."""
        with self._lock:
            found = [e for e in self._events[key] if name is None or e.name == name]
        if since is None:
            return found
        return [e for e in found if e.kind != "LISTED" and e.at >= since]

    def writes(self, channel: str, since: float) -> Counter[str]:
        """The writes of a channel and of its Secret since `since`: {"<key> <type>": n}."""
        counted: Counter[str] = Counter()
        for key, name in (("channels", channel), ("secrets", secret_name(channel))):
            for event in self.events(key, name, since):
                counted[f"{key} {event.kind}"] += 1
        return counted

    def created_to_ready(self, channel: str) -> float:
        """Seconds from the channel's creation (its ADDED event) to the first write that
        shows it Ready: how long it stood unreconciled."""
        events = self.events("channels", channel)
        added = next(e.at for e in events if e.kind == "ADDED")
        return next(e.at for e in events if ready(e.obj)) - added


@contextmanager
def recording(kubeconfig: Path, paths: Mapping[str, str]) -> Iterator[Recorder]:
    recorder = Recorder(kubeconfig, paths)
    recorder.start()
    try:
        yield recorder
    finally:
        recorder.stop()


def ready(channel: JSON) -> bool:
    conditions = (channel.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


# --- the Lease -------------------------------------------------------------------------------


def holder_pod(identity: str) -> str:
    """The pod of a candidate identity (`<pod name>_<process suffix>`, leader.py)."""
    return identity.rsplit("_", 1)[0]


def lease_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Handover:
    before: str  # the identity that held the Lease
    after: str  # the one that took it
    released: bool  # given up by its holder (SIGTERM) rather than left to lapse
    gap: float  # seconds from the old holder's last write (its release or last renewal)
    # to the new one's acquiring it, by the times they wrote in the Lease


def handovers(leases: Iterable[Event]) -> list[Handover]:
    found: list[Handover] = []
    holder, last_word, released = "", None, False
    for event in leases:
        spec = event.obj.get("spec") or {}
        identity = str(spec.get("holderIdentity") or "")
        written = lease_time(spec["renewTime"])
        if not identity:  # released
            released, last_word = True, written
            continue
        if holder and identity != holder and last_word is not None:
            gap = (lease_time(spec["acquireTime"]) - last_word).total_seconds()
            found.append(Handover(holder, identity, released, gap))
        holder, last_word, released = identity, written, False
    return found


# --- Meta's side -----------------------------------------------------------------------------


def graph_calls(graph: StandinThread, number: Number) -> Counter[str]:
    """The Graph calls answered for a channel's number and account so far."""
    counted: Counter[str] = Counter()
    for kind, object_id in (("number", number.phone), ("account", number.waba)):
        for call, n in graph.calls_by_name(object_id).items():
            counted[f"{kind} {call}"] += n
    return counted


def shared_calls(graph: StandinThread) -> Counter[str]:
    """The Graph calls answered on no number nor account (token checks and the like)."""
    return Counter({o: graph.calls(o) for o in SHARED_OBJECTS if graph.calls(o)})


def once_per_leader(shared: Counter[str], leaders: int) -> bool:
    """The channels share one token: its check (kept a day by each leader) is asked at most
    once by each new leader, however many channels it handles."""
    return all(count <= leaders for count in shared.values())

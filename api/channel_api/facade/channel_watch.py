"""One watch on the namespace's WhatsAppChannels that every waiting request shares.

A POST waits for the operator to report on what it wrote, a DELETE for the object to be
gone. Per-request watches would hold one apiserver connection per waiting request; one
shared reflector holds one per process. It keeps whole only the channels someone waits
for: of every other channel, listed or watched, only its name (a start at 50,000 channels
held each one whole, 522 MB, docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

from whatsapp_channel.kube import JSON, Kube, channels_path, lean, reflect


class ChannelWaiter:
    """What the watch saw of one channel since the waiter was registered: the object, or
    None once it is gone."""

    def __init__(self) -> None:
        self._seen: asyncio.Queue[JSON | None] = asyncio.Queue()

    def _put(self, obj: JSON | None) -> None:
        self._seen.put_nowait(obj)

    async def next(self) -> JSON | None:
        return await self._seen.get()


class ChannelWatch:
    def __init__(self, kube: Kube, namespace: str) -> None:
        self._kube = kube
        self._path = channels_path(namespace)
        self._waiters: dict[str, set[ChannelWaiter]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(
            reflect(self._kube, self._path, self._on_event, keep=self._keep)
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def waiting(self, name: str) -> Iterator[ChannelWaiter]:
        """Register before writing, so nothing that follows the write is missed."""
        waiter = ChannelWaiter()
        self._waiters.setdefault(name, set()).add(waiter)
        try:
            yield waiter
        finally:
            waiters = self._waiters.get(name)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[name]

    def _notify(self, name: str, obj: JSON | None) -> None:
        for waiter in self._waiters.get(name, ()):
            waiter._put(obj)

    def _keep(self, obj: JSON) -> JSON:
        """A waited-for channel whole (without managedFields), any other by its name."""
        name = str((obj.get("metadata") or {}).get("name", ""))
        return lean(obj) if name in self._waiters else {"metadata": {"name": name}}

    def _on_event(self, kind: str, obj: JSON) -> None:
        if kind == "SYNC":  # a fresh listing after a gap: report each waited-for channel
            listed: dict[str, Any] = {
                str(item["metadata"]["name"]): item for item in obj.get("items") or []
            }
            for name in list(self._waiters):
                item = listed.get(name)
                # Kept by its name only: its page came before anyone waited for it, so
                # whatever the waiter wrote since comes by the watch that follows.
                if item is None or "uid" in item["metadata"]:
                    self._notify(name, item)
            return
        name = str((obj.get("metadata") or {}).get("name", ""))
        self._notify(name, None if kind == "DELETED" else obj)

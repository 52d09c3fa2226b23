"""lastChallengeAt, lastEventAt and lastAccountEventAt on each channel's status, written at
most once per interval per channel: the hot path only notes the time; a background loop writes.

The first note for a channel is written on the next tick; later ones wait until the
interval since that channel's last write has passed, and then the newest time is written
(so the status is never more than one interval behind). Each replica writes on its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from whatsapp_channel.kube import KubeError, NotFound, channels_path

log = logging.getLogger(__name__)

# A merge patch on a path: `Kube.merge_patch`, or a recorder in tests.
StatusPatch = Callable[[str, dict[str, Any]], Awaitable[object]]

CHALLENGE_FIELD = "lastChallengeAt"
EVENT_FIELD = "lastEventAt"
# A verified account webhook named the channel's business account: the operator looks again.
ACCOUNT_EVENT_FIELD = "lastAccountEventAt"
_BATCH = 32


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusWriter:
    def __init__(
        self,
        patch: StatusPatch,
        namespace: str,
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._patch = patch
        self._namespace = namespace
        self._interval = interval
        self._clock = clock
        self._wall = wall
        self._pending: dict[str, dict[str, float]] = {}
        self._written_at: dict[str, float] = {}

    # --- the hot path: note the time, nothing else ----------------------------------

    def challenge_succeeded(self, channel: str) -> None:
        self._note(channel, CHALLENGE_FIELD)

    def event_arrived(self, channel: str) -> None:
        self._note(channel, EVENT_FIELD)

    def account_event(self, channel: str) -> None:
        self._note(channel, ACCOUNT_EVENT_FIELD)

    def _note(self, channel: str, field: str) -> None:
        fields = self._pending.get(channel)
        if fields is None:
            self._pending[channel] = fields = {}
        fields[field] = self._wall()

    # --- the writer ---------------------------------------------------------------------

    async def run(self, tick: float = 1.0) -> None:
        """Write what is due every `tick` seconds until cancelled."""
        while True:
            await asyncio.sleep(min(tick, self._interval))
            await self.flush()

    async def flush(self, *, all_pending: bool = False) -> None:
        """Write every channel whose interval has passed (or every one: at shutdown)."""
        now = self._clock()
        due = [
            channel
            for channel in self._pending
            if all_pending or now - self._written_at.get(channel, -self._interval) >= self._interval
        ]
        # Channels written longer than an interval ago throttle nothing: forget them.
        for channel, at in list(self._written_at.items()):
            if now - at >= self._interval and channel not in self._pending:
                del self._written_at[channel]
        for start in range(0, len(due), _BATCH):
            batch = due[start : start + _BATCH]
            await asyncio.gather(*(self._write(channel, now) for channel in batch))

    async def _write(self, channel: str, now: float) -> None:
        fields = self._pending.pop(channel)
        self._written_at[channel] = now
        body = {"status": {field: _rfc3339(at) for field, at in fields.items()}}
        try:
            await self._patch(channels_path(self._namespace, channel, "status"), body)
        except NotFound:
            log.info("channel %s is gone; its status is not written", channel)
        except KubeError as exc:
            log.warning("status of channel %s not written (%s); will retry", channel, exc.reason)
            for field, at in fields.items():  # keep unless a newer note arrived meanwhile
                self._pending.setdefault(channel, {}).setdefault(field, at)

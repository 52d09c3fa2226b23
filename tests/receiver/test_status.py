"""lastChallengeAt/lastEventAt: at most one status write per interval per channel, and the
newest time gets written."""

from __future__ import annotations

from typing import Any

from channel_api.receiver.status import StatusWriter
from whatsapp_channel.kube import NotFound, Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    def __init__(self) -> None:
        self.writes: list[tuple[str, dict[str, Any]]] = []
        self.fail_with: Exception | None = None

    async def __call__(self, path: str, body: dict[str, Any]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.writes.append((path.split("/")[-2], body["status"]))


def writer(recorder: Recorder, clock: Clock, wall: Clock) -> StatusWriter:
    return StatusWriter(recorder, "ns", interval=30.0, clock=clock, wall=wall)


async def test_many_events_make_one_write_per_interval_with_the_newest_time():
    recorder, clock, wall = Recorder(), Clock(), Clock()
    wall.now = 1_700_000_000.0
    status = writer(recorder, clock, wall)

    for _ in range(1000):
        status.event_arrived("a")
    status.challenge_succeeded("a")
    status.event_arrived("b")
    await status.flush()
    assert recorder.writes == [
        ("a", {"lastEventAt": "2023-11-14T22:13:20Z", "lastChallengeAt": "2023-11-14T22:13:20Z"}),
        ("b", {"lastEventAt": "2023-11-14T22:13:20Z"}),
    ]

    # Within the interval: noted, not written.
    clock.now += 10
    wall.now += 10
    for _ in range(100):
        status.event_arrived("a")
    await status.flush()
    assert len(recorder.writes) == 2

    # Once the interval has passed, the newest time is written, once.
    clock.now += 20
    wall.now += 5
    await status.flush()
    await status.flush()
    assert recorder.writes[2:] == [("a", {"lastEventAt": "2023-11-14T22:13:30Z"})]

    # Nothing new: nothing written.
    clock.now += 100
    await status.flush()
    assert len(recorder.writes) == 3


async def test_status_path_is_the_channels_status_subresource():
    paths: list[str] = []

    async def record(path: str, body: dict[str, Any]) -> None:
        paths.append(path)

    status = StatusWriter(record, "whatsapp-channels", interval=30.0)
    status.event_arrived("c0ffee00-0000-4000-8000-000000000000")
    await status.flush()
    assert paths == [
        "/apis/whatsapp.hydracore.io/v1alpha1/namespaces/whatsapp-channels/whatsappchannels/"
        "c0ffee00-0000-4000-8000-000000000000/status"
    ]


async def test_failed_writes_are_retried_and_vanished_channels_forgotten():
    recorder, clock, wall = Recorder(), Clock(), Clock()
    status = writer(recorder, clock, wall)
    status.event_arrived("a")
    recorder.fail_with = Unavailable(503, "Unavailable", "down")
    await status.flush()
    assert recorder.writes == []

    recorder.fail_with = None
    clock.now += 30
    await status.flush()
    assert [name for name, _ in recorder.writes] == ["a"]

    clock.now += 30
    status.event_arrived("gone")
    recorder.fail_with = NotFound(404, "NotFound", "no such channel")
    await status.flush()
    recorder.fail_with = None
    clock.now += 30
    await status.flush()
    assert [name for name, _ in recorder.writes] == ["a"]


async def test_shutdown_writes_everything_pending():
    recorder, clock, wall = Recorder(), Clock(), Clock()
    status = writer(recorder, clock, wall)
    status.event_arrived("a")
    await status.flush()
    status.event_arrived("a")
    await status.flush()
    assert len(recorder.writes) == 1
    await status.flush(all_pending=True)
    assert len(recorder.writes) == 2

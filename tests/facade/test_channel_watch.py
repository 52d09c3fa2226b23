"""The facade's shared channel watch keeps whole only the channels someone waits for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

from channel_api.facade.channel_watch import ChannelWatch
from whatsapp_channel.kube import JSON, Kube


def channel(name: str, generation: int) -> JSON:
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "generation": generation,
            "managedFields": [{"manager": "facade", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"phoneNumberId": name},
    }


class Apiserver:
    """One listing in pages of one, then the watch events handed to `events`."""

    def __init__(self, listed: list[JSON]) -> None:
        self.listed = listed
        self.pages_served = asyncio.Queue[int]()
        self.go_on = asyncio.Event()
        self.events = asyncio.Queue[JSON]()

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        index = int((params or {}).get("continue", "0"))
        if index:
            await self.go_on.wait()  # a later page, once the test has registered a waiter
        self.pages_served.put_nowait(index)
        more = index + 1 < len(self.listed)
        return {
            "items": [self.listed[index]],
            "metadata": {"resourceVersion": "10", "continue": str(index + 1) if more else ""},
        }

    async def watch(self, path: str, **_: Any) -> AsyncIterator[JSON]:
        while True:
            yield await self.events.get()


async def test_only_waited_for_channels_are_kept_whole() -> None:
    server = Apiserver([channel("a", 1), channel("b", 1)])
    watch = ChannelWatch(cast(Kube, server), "ns")
    kept: list[JSON] = []
    keep = watch._keep

    def recorded(obj: JSON) -> JSON:
        kept.append(keep(obj))
        return kept[-1]

    watch._keep = recorded  # type: ignore[method-assign]
    with watch.waiting("b") as waiter_b:
        watch.start()
        try:
            assert await server.pages_served.get() == 0
            with watch.waiting("a") as waiter_a:  # after a's page: a is kept by name only
                server.go_on.set()
                listed_b = await waiter_b.next()
                assert listed_b is not None
                assert listed_b["spec"] == {"phoneNumberId": "b"}
                assert "managedFields" not in listed_b["metadata"]
                assert kept[0] == {"metadata": {"name": "a"}}
                # a's waiter is told nothing by the listing (its page predates the wait),
                # but what the watch brings after it
                server.events.put_nowait({"type": "MODIFIED", "object": channel("a", 2)})
                seen_a = await waiter_a.next()
                assert seen_a is not None
                assert seen_a["metadata"]["generation"] == 2
            server.events.put_nowait({"type": "MODIFIED", "object": channel("a", 3)})
            server.events.put_nowait({"type": "DELETED", "object": channel("b", 1)})
            assert await waiter_b.next() is None
            assert kept[-2] == {"metadata": {"name": "a"}}  # nobody waits for a any more
        finally:
            await watch.stop()

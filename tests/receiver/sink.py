"""A local HTTP server standing in for the instances: it records what the receiver forwards
and answers as told (accept, refuse, hang)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Forwarded:
    instance_id: str
    headers: dict[str, str]
    body: bytes


class Sink:
    def __init__(self) -> None:
        self.received: list[Forwarded] = []
        self.status = 200
        self.delay = 0.0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/agents/{{instance_id}}/whatsapp"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/agents/{instance_id}/whatsapp", self._take)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _take(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        async with self._arrived:
            self.received.append(
                Forwarded(request.match_info["instance_id"], dict(request.headers), body)
            )
            self._arrived.notify_all()
        return web.Response(status=self.status, text="taken")

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Forwarded]:
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.received) >= count), timeout
            )
        return self.received

"""A local HTTP server standing in for the instances: it records what the receiver forwards
and answers as told (accept, refuse, hang)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Forwarded:
    instance_id: str
    headers: dict[str, str]
    body: bytes


class Sink:
    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context  # serves https with it
        self.received: list[Forwarded] = []
        self.status = 200
        self.delay = 0.0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()

    @property
    def url_template(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}/agents/{{instance_id}}/whatsapp"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/agents/{instance_id}/whatsapp", self._take)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", self.port, reuse_address=True, ssl_context=self.ssl_context
        )
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

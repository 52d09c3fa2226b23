"""Fixtures for the Graph tests: the stand-in on a free loopback port, one seeded number, a
client with tiny backoff, and a callback server that answers Meta's challenge."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from channel_operator.channel_at_meta import Meta, ask
from channel_operator.desired import ChannelRef, Credentials
from channel_operator.graph import CallBudget, GraphClient, GraphCredentials, RetryPolicy
from graph_standin import GraphStandin, NumberSeed
from graph_standin.state import PhoneNumber
from whatsapp_channel.model import ChannelSpec

PHONE = "106540352242922"
WABA = "102290129340398"
OTHER_PHONE = "106540352242999"
OTHER_WABA = "102290129340999"
TOKEN = "EAAGstandinAccessToken0123456789abcdefXYZ"
OTHER_TOKEN = "EAAGstandinOtherToken0123456789abcdefXYZ"
APP_SECRET = "0123456789abcdef0123456789abcdef"
VERIFY_TOKEN = "verify-token-A0jhAX5_aW9s"
CREDENTIALS = GraphCredentials(TOKEN, APP_SECRET)
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)


@pytest.fixture
async def standin() -> AsyncIterator[GraphStandin]:
    server = GraphStandin(challenge_timeout=5.0)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def number(standin: GraphStandin) -> PhoneNumber:
    standin.seed(
        NumberSeed(
            phone_number_id=OTHER_PHONE,
            waba_id=OTHER_WABA,
            access_token=OTHER_TOKEN,
            app_secret=APP_SECRET,
        )
    )
    return standin.seed(
        NumberSeed(
            phone_number_id=PHONE,
            waba_id=WABA,
            access_token=TOKEN,
            app_secret=APP_SECRET,
            display_phone_number="+61 400 111 222",
            verified_name="Jasper's Market",
        )
    )


@pytest.fixture
async def graph(standin: GraphStandin) -> AsyncIterator[GraphClient]:
    async with GraphClient(standin.url, timeout=5.0, retry=FAST) as client:
        yield client


async def admin(
    standin: GraphStandin, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    """A call to the stand-in's admin API over HTTP, as `make run` and users make it."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{standin.url}/_standin{path}", json=body) as response,
    ):
        text = await response.text()
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, text


async def graph_get(
    standin: GraphStandin, path: str, params: dict[str, str], token: str = TOKEN
) -> tuple[int, Any]:
    """A raw Graph call with the proof, to look at the stand-in's bodies themselves."""
    params = {**params, "appsecret_proof": GraphCredentials(token, APP_SECRET).appsecret_proof}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{standin.url}/v25.0/{path}",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return response.status, await response.json()


@dataclass
class Received:
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Callback:
    """A webhook endpoint: answers the challenge when the verify token matches (or as told),
    records the events posted to it."""

    verify_token: str = VERIFY_TOKEN
    answer: str = "echo"  # echo | forbid | wrong
    challenges: list[dict[str, str]] = field(default_factory=list)
    events: list[Received] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/whatsapp/tenant-1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/hooks/whatsapp/{name}", self._challenge)
        app.router.add_post("/hooks/whatsapp/{name}", self._event)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _challenge(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.challenges.append(query)
        if self.answer == "forbid" or query.get("hub.verify_token") != self.verify_token:
            return web.Response(status=403, text="forbidden")
        if self.answer == "wrong":
            return web.Response(text="not-the-challenge")
        return web.Response(text=query.get("hub.challenge", ""))

    async def _event(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self._arrived:
            self.events.append(Received(dict(request.query), dict(request.headers), body))
            self._arrived.notify_all()
        return web.Response(text="EVENT_RECEIVED")

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.events) >= count), timeout
            )
        return self.events


@pytest.fixture
async def callback() -> AsyncIterator[Callback]:
    server = Callback()
    await server.start()
    yield server
    await server.stop()


async def ask_once(standin: GraphStandin, callback_url: str, budget: CallBudget) -> None:
    """A new channel of PHONE in WABA asked about once, as the reconcile asks, by an operator
    whose Graph client keeps `budget`."""
    async with GraphClient(standin.url, retry=FAST, budget=budget) as graph:
        meta = Meta(graph=graph, callback_retries=())
        name = str(uuid.uuid4())
        spec = ChannelSpec(instance_id=name, phone_number_id=PHONE, waba_id=WABA)
        ref = ChannelRef("ns", name, f"uid-{name}", 1)
        credentials = Credentials(TOKEN, APP_SECRET, VERIFY_TOKEN)
        await ask(meta, ref, spec, credentials, {}, callback_url, lambda r, m: None)

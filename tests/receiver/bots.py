"""Real WhatsApp bots as the instances behind the receiver (issue 15): one written with pywa
(Python, served by FastAPI/uvicorn in the test's own event loop) and one with whatsapp-api-js
(Node, a process the test starts). Each serves one instance's forward path with its library's
own webhook handling, and answers 200 to any other instance's path while recording it.

What each bot's handlers received is kept as `Handled(kind, phone_number_id, update)`: for
pywa the typed update pywa built, for whatsapp-api-js the handler's arguments as JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from pywa_async import handlers
from pywa_async.client import WhatsApp

NODE_PEER = Path(__file__).resolve().parents[1] / "peers" / "node"
WHATSAPP_API_JS = "whatsapp-api-js"


@dataclass(frozen=True)
class Handled:
    kind: str  # "message", "callback_button", "status"
    phone_number_id: str
    update: Any


@dataclass(frozen=True)
class Request_:
    path: str
    status: int
    body: bytes | None  # None where the library read it itself


@dataclass
class Bot:
    """What a bot saw; `wait_for` waits on it (no sleeps)."""

    instance_id: str
    port: int = 0
    handled: list[Handled] = field(default_factory=list)
    requests: list[Request_] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/agents/{{instance_id}}/whatsapp"

    @property
    def path(self) -> str:
        return f"/agents/{self.instance_id}/whatsapp"

    async def record(self, item: Handled | Request_) -> None:
        async with self._changed:
            (self.handled if isinstance(item, Handled) else self.requests).append(item)  # type: ignore[arg-type]
            self._changed.notify_all()

    async def wait_for(self, handled: int = 0, requests: int = 0, timeout: float = 30.0) -> None:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(
                    lambda: len(self.handled) >= handled and len(self.requests) >= requests
                ),
                timeout,
            )

    def to_bot(self) -> list[Request_]:
        return [r for r in self.requests if r.path == self.path]

    def to_others(self) -> list[Request_]:
        return [r for r in self.requests if r.path != self.path]


# --- pywa ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pywa_bot(instance_id: str, phone_id: str, app_secret: str) -> AsyncIterator[Bot]:
    """A pywa bot as its docs show it: `WhatsApp(server=FastAPI app, app_secret=...,
    validate_updates=True)`, its webhook path the instance's forward path. `filter_updates`
    is off, so a change for another phone number would reach a handler, not be dropped."""
    bot = Bot(instance_id)
    app = FastAPI()

    @app.middleware("http")
    async def record_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        body = await request.body()
        response = await call_next(request)
        await bot.record(Request_(request.url.path, response.status_code, body))
        return response

    wa = WhatsApp(
        phone_id=phone_id,
        token="EAAG-not-used",
        server=app,
        webhook_endpoint=bot.path,
        verify_token="not-used",
        app_secret=app_secret,
        validate_updates=True,
        filter_updates=False,
    )

    def recorder(kind: str) -> Callable[[Any, Any], Awaitable[None]]:
        async def handle(_: Any, update: Any) -> None:
            await bot.record(Handled(kind, update.metadata.phone_number_id, update))

        return handle

    wa.add_handlers(
        handlers.MessageHandler(recorder("message")),
        handlers.CallbackButtonHandler(recorder("callback_button")),
        handlers.MessageStatusHandler(recorder("status")),
    )

    @app.post("/agents/{other}/whatsapp")
    async def other_instance(other: str) -> Response:
        return Response("OK")

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)  # connections queue here until uvicorn accepts them: no start to await
    bot.port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield bot
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)
        sock.close()


# --- whatsapp-api-js -------------------------------------------------------------------


def _installed_version() -> str | None:
    manifest = NODE_PEER / "node_modules" / WHATSAPP_API_JS / "package.json"
    if not manifest.exists():
        return None
    version: str = json.loads(manifest.read_text())["version"]
    return version


def _locked_version() -> str:
    lock = json.loads((NODE_PEER / "package-lock.json").read_text())
    version: str = lock["packages"][f"node_modules/{WHATSAPP_API_JS}"]["version"]
    return version


def ensure_node_peer() -> None:
    """Installs the pinned whatsapp-api-js (package-lock.json) with `npm ci` unless it is
    already there: `make test` on a fresh machine needs nothing else."""
    if _installed_version() == _locked_version():
        return
    npm = shutil.which("npm")
    assert npm is not None, "npm (Node 20) is needed for the whatsapp-api-js bot"
    subprocess.run(
        [npm, "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=NODE_PEER,
        check=True,
        timeout=600,
    )
    assert _installed_version() == _locked_version()


@contextlib.asynccontextmanager
async def node_bot(instance_id: str, app_secret: str) -> AsyncIterator[Bot]:
    """The whatsapp-api-js bot (tests/peers/node/bot.mjs) in a process of its own."""
    bot = Bot(instance_id)
    node = shutil.which("node")
    assert node is not None, "node is needed for the whatsapp-api-js bot"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "BOT_APP_SECRET": app_secret,
        "BOT_WEBHOOK_PATH": bot.path,
    }
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_PEER / "bot.mjs"),
        cwd=NODE_PEER,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    stdout = process.stdout

    async def read_lines() -> None:
        while line := await stdout.readline():
            said = json.loads(line)
            if "listening" in said:
                bot.port = said["listening"]
                async with bot._changed:
                    bot._changed.notify_all()
            elif said["kind"] == "request":
                body = said.get("body")
                await bot.record(
                    Request_(said["path"], said["status"], None if body is None else body.encode())
                )
            else:
                await bot.record(Handled(said["kind"], said["phoneID"], said))

    reading = asyncio.create_task(read_lines())
    try:
        async with bot._changed:
            await asyncio.wait_for(
                bot._changed.wait_for(lambda: bot.port != 0 or reading.done()), 30
            )
        assert bot.port, f"the node bot did not start (exit code {process.returncode})"
        yield bot
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)
        await asyncio.wait_for(reading, 30)

"""Calling the receiver's ASGI app directly, with a body that arrives as a test says (in
pieces, slowly, never): what an HTTP client library cannot send."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Message = MutableMapping[str, Any]
App = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]


@dataclass
class Body:
    """A request body fed piece by piece: `feed` a chunk, `end` it, or never do either. Once
    the app has answered, `receive` says the client went away, as uvicorn does."""

    pieces: asyncio.Queue[tuple[bytes, bool]] = field(default_factory=asyncio.Queue)
    reads: int = 0
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    def feed(self, chunk: bytes, *, more: bool = True) -> None:
        self.pieces.put_nowait((chunk, more))

    def end(self, chunk: bytes = b"") -> None:
        self.feed(chunk, more=False)

    async def receive(self) -> Message:
        self.reads += 1
        get = asyncio.ensure_future(self.pieces.get())
        answered = asyncio.ensure_future(self.answered.wait())
        await asyncio.wait([get, answered], return_when=asyncio.FIRST_COMPLETED)
        answered.cancel()
        if not get.done():
            get.cancel()
            return {"type": "http.disconnect"}
        chunk, more = get.result()
        return {"type": "http.request", "body": chunk, "more_body": more}


@dataclass
class Answer:
    status: int = 0
    headers: dict[bytes, bytes] = field(default_factory=dict)
    body: bytes = b""
    starts: int = 0


async def call(
    app: App,
    method: str,
    path: str,
    body: Body,
    headers: list[tuple[bytes, bytes]] | None = None,
    query: bytes = b"",
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> Answer:
    answer = Answer()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.starts += 1
            answer.status = message["status"]
            answer.headers = dict(message.get("headers", []))
        elif message["type"] == "http.response.body":
            answer.body += message.get("body", b"")
            if not message.get("more_body", False):
                body.answered.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": query,
        "root_path": "",
        "headers": headers or [],
        "client": client,
        "server": ("127.0.0.1", 8080),
    }
    await app(scope, body.receive, send)
    return answer

"""A raw HTTP/1.1 server standing in for several instances on one host (the documented URL
template's layout), each answering as a test scripts it: exact bytes, twice, late, or not
until released."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ntaken"


@dataclass
class Request:
    connection: int
    instance_id: str
    body: bytes


@dataclass
class Instances:
    """`answers[instance_id]`: the bytes to send for each request to that instance, in turn
    (then OK); `hang`: instances that answer nothing until `release` is set."""

    answers: dict[str, list[bytes]] = field(default_factory=dict)
    hang: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[Request] = field(default_factory=list)
    writers: dict[int, asyncio.StreamWriter] = field(default_factory=dict)
    closed_by_client: set[int] = field(default_factory=set)
    in_flight: dict[str, int] = field(default_factory=dict)
    most_in_flight: dict[str, int] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _server: asyncio.Server | None = None
    _connections: int = 0
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url_template(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/agents/{{instance_id}}/whatsapp"

    async def __aenter__(self) -> Instances:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        for writer in self.writers.values():
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=10)

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(condition), timeout)

    async def _note(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._connections += 1
        number = self._connections
        self.writers[number] = writer
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.closed_by_client.add(number)
                    return
                lines = head.split(b"\r\n")
                instance_id = lines[0].split(b" ")[1].split(b"/")[2].decode()
                length = next(
                    int(line.split(b":")[1])
                    for line in lines
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append(Request(number, instance_id, body))
                self.in_flight[instance_id] = self.in_flight.get(instance_id, 0) + 1
                self.most_in_flight[instance_id] = max(
                    self.most_in_flight.get(instance_id, 0), self.in_flight[instance_id]
                )
                await self._note()
                if instance_id in self.hang:
                    await self.release.wait()
                scripted = self.answers.get(instance_id)
                answer = scripted.pop(0) if scripted else OK
                self.in_flight[instance_id] -= 1
                writer.write(answer)
                try:
                    await writer.drain()
                except ConnectionError:
                    return
                await self._note()
        finally:
            writer.close()
            await self._note()

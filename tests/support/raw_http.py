"""Raw HTTP/1.1 connections an attacker would open: heads that never end, half-sent heads,
and how the server ended them. For the tests of bounded request heads (receiver, facade)."""

from __future__ import annotations

import asyncio
from pathlib import Path

MIB = 1024 * 1024
HALF_HEAD = b"POST /hooks/whatsapp HTTP/1.1\r\nHost: server\r\nContent-Type: appl"
# Lines a 10 MiB head is made of: many small header fields (each a Python object or two in
# uvicorn), one field whose value never ends (buffered by the parser until it does), and one
# field name that never ends.
LONG_HEAD_LINES = [b"a: b\r\n", b"X-Padding: " + b"p" * 40 + b"\r\n", b"Cookie: ", b"x" * 100]

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def ending(reader: asyncio.StreamReader) -> str:
    """How the server ended a connection: the status it answered, or "closed"."""
    try:
        answer = await reader.read(64)
    except ConnectionError:
        return "closed"
    return answer[9:12].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"


async def long_head(port: int, line: bytes) -> str:
    """A head of 10 MiB made of `line` over and over, never ended; how it was ended (a server
    that does not end it within a minute fails with TimeoutError)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    piece = line * (64 * 1024 // len(line))
    chunk = b"POST /hooks/whatsapp HTTP/1.1\r\n" + piece
    sent = 0
    try:
        while sent < 10 * MIB:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
            chunk = piece
    except ConnectionError:
        pass
    try:
        return await asyncio.wait_for(ending(reader), timeout=60)
    finally:
        writer.close()


async def half_heads(port: int, count: int) -> list[Connection]:
    """`count` connections, each having sent part of a head; the writers are returned to be
    kept (a writer collected closes its connection)."""

    async def one() -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HALF_HEAD)
        return reader, writer

    connections: list[Connection] = []
    while len(connections) < count:  # in batches within the server's listen backlog
        batch = min(250, count - len(connections))
        connections += await asyncio.gather(*(one() for _ in range(batch)))
    return connections


def memory_bytes(field: str, pid: int) -> int:
    """A memory figure of `pid` from /proc (VmRSS: now; VmHWM: its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")

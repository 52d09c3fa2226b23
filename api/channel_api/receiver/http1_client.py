"""A lean keep-alive HTTP/1.1 client on asyncio streams: POST with a body, read the status.

Deliberately small (the receiver's forward hop is its hot path; see docs/benchmarks.md):
POST with a Content-Length body, an answer framed by Content-Length, chunked or the end of
the connection, of which at most `ANSWER_READ_LIMIT` bytes are read. Connections are kept
per (scheme, host, port), at most `max_connections` idle; how many are in use at once is
the caller's to bound (the forwarder refuses rather than queues). A connection that fails,
times out, was told `Connection: close` or whose answer was not read to its end is closed,
never reused; so is one with bytes left after its answer, or bytes arriving while it is
idle (a server that answers twice, or sends a body after 1xx/204/304), which would
otherwise be read as the answer to the next request, maybe to another tenant's instance. A
kept-alive connection the server closed before answering is retried once on a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import SupportsIndex
from urllib.parse import quote, urlsplit

# How much of an answer is read: the caller wants the status only, and the server may be
# tenant code.
ANSWER_READ_LIMIT = 64 * 1024
# A kept-alive connection idle longer than this is closed rather than reused.
KEEP_ALIVE_SECONDS = 15.0
_HEX = frozenset(b"0123456789abcdefABCDEF")


class AnswerError(Exception):
    """The server's answer is not HTTP/1.x as this client reads it."""


# What `Http1Client.post` raises when there is no answer to give (besides cancellation).
FAILURES = (OSError, EOFError, AnswerError, asyncio.LimitOverrunError)


class _Stale(Exception):
    """A kept-alive connection the server had closed before it answered anything."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where to POST, with the request line and the headers that never change, encoded once."""

    tls: bool
    host: str
    port: int
    head: bytes

    @classmethod
    def post_to(cls, url: str, headers: Mapping[str, str]) -> Target:
        """ValueError for a URL without a host, or control characters in a header value."""
        if any(c in value for value in (url, *headers.values()) for c in "\r\n\0"):
            raise ValueError("control characters in the URL or a header")
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        host = parts.hostname
        if not host:
            raise ValueError("a URL without a host")
        port = parts.port or (443 if tls else 80)
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
        if parts.query:
            path += "?" + quote(parts.query, safe="/?%:@!$&'()*+,;=~")
        host_header = f"[{host}]" if ":" in host else host
        if parts.port is not None and port != (443 if tls else 80):
            host_header += f":{port}"
        lines = [f"POST {path} HTTP/1.1", f"Host: {host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return cls(tls, host, port, ("\r\n".join(lines) + "\r\n").encode())


class _Reader(asyncio.StreamReader):
    """A StreamReader that knows whether anything is left unread, and closes its connection
    when bytes arrive while it sits idle in the pool: those can only be a stale or forged
    answer, which the next request on it would read as its own."""

    idle = False
    transport: asyncio.BaseTransport | None = None

    def feed_data(self, data: Iterable[SupportsIndex]) -> None:
        if self.idle and self.transport is not None:
            self.transport.close()
        super().feed_data(data)

    def unread(self) -> int:
        return len(self._buffer)  # type: ignore[attr-defined]


@dataclass(slots=True)
class _Connection:
    reader: _Reader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()


class Http1Client:
    def __init__(self, *, max_connections: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self._max_connections = max_connections
        self._ssl = ssl_context
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self.open = False

    async def start(self, *, tls: bool = False) -> None:
        """Ready to send; with `tls`, the default TLS context is made now, not on first use."""
        if self._ssl is None and tls:
            self._ssl = ssl.create_default_context()
        self.open = True

    async def close(self) -> None:
        self.open = False
        idle = [c for conns in self._idle.values() for c in conns]
        self._idle.clear()
        self._idle_count = 0
        for connection in idle:
            connection.close()
        for connection in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.writer.wait_closed(), 1.0)

    async def post(self, target: Target, headers: bytes, body: bytes) -> int:
        """POST `body` with `target`'s head plus `headers` (whole lines, each ending CRLF);
        the answer's status. Raises one of FAILURES when there is none."""
        head = target.head + headers + b"Content-Length: %d\r\n\r\n" % len(body)
        connection = self._reuse(target)
        if connection is not None:
            try:
                return await self._roundtrip(target, connection, head, body, reused=True)
            except _Stale:
                pass
        connection = await self._connect(target)
        return await self._roundtrip(target, connection, head, body, reused=False)

    def _reuse(self, target: Target) -> _Connection | None:
        idle = self._idle.get((target.tls, target.host, target.port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            reader = connection.reader
            if (
                reader.at_eof()
                or reader.unread()
                or connection.writer.is_closing()
                or now - connection.idle_since > KEEP_ALIVE_SECONDS
            ):
                connection.close()
                continue
            reader.idle = False
            return connection
        return None

    async def _connect(self, target: Target) -> _Connection:
        if target.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        # asyncio.open_connection, with a reader of our own.
        loop = asyncio.get_running_loop()
        reader = _Reader(limit=2**16, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(
            lambda: protocol,
            target.host,
            target.port,
            ssl=self._ssl if target.tls else None,
            server_hostname=target.host if target.tls else None,
        )
        reader.transport = transport
        return _Connection(reader, asyncio.StreamWriter(transport, protocol, reader, loop))

    async def _roundtrip(
        self, target: Target, connection: _Connection, head: bytes, body: bytes, *, reused: bool
    ) -> int:
        try:
            connection.writer.writelines((head, body))
            await connection.writer.drain()
            status, reusable = await _read_answer(connection.reader)
        except BaseException as exc:
            connection.close()
            if reused and _nothing_answered(exc):
                raise _Stale from exc
            raise
        if (
            reusable
            and self.open
            and self._idle_count < self._max_connections
            and not connection.reader.unread()  # a second answer, or a body after 204/304
        ):
            connection.reader.idle = True
            connection.idle_since = time.monotonic()
            self._idle.setdefault((target.tls, target.host, target.port), []).append(connection)
            self._idle_count += 1
        else:
            connection.close()
        return status


def _nothing_answered(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, ConnectionResetError | BrokenPipeError)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The answer's status, and whether its connection can carry another request."""
    framed = False  # an answer without a body declared one: what follows cannot be trusted
    while True:
        status, keep_alive, length, chunked = _parse_head(await reader.readuntil(b"\r\n\r\n"))
        bodiless = 100 <= status < 200 or status in (204, 304)
        framed = framed or (bodiless and (chunked or bool(length)))
        if not 100 <= status < 200 or status == 101:
            break  # 1xx answers are interim: the final one follows
    if status == 101:
        raise AnswerError("the server switched protocols")
    if status in (204, 304):
        return status, keep_alive and not framed
    if chunked:
        return status, keep_alive and not framed and await _skip_chunked(reader)
    if length is not None:
        if length > ANSWER_READ_LIMIT:
            return status, False
        await reader.readexactly(length)
        return status, keep_alive and not framed
    await reader.read(ANSWER_READ_LIMIT)  # delimited by the end of the connection
    return status, False


def _parse_head(head: bytes) -> tuple[int, bool, int | None, bool]:
    lines = head.split(b"\r\n")
    status_line = lines[0]
    code = status_line[9:12]
    if (
        status_line[:7] != b"HTTP/1."
        or status_line[8:9] != b" "
        or len(code) != 3
        or not code.isdigit()
        or status_line[12:13] not in (b"", b" ")
    ):
        raise AnswerError("not an HTTP/1.x status line")
    keep_alive = status_line[7:8] == b"1"
    length: int | None = None
    chunked = False
    encoded = False
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name = name.strip().lower()
        value = value.strip()
        if name == b"content-length":
            if not value.isdigit() or (length is not None and length != int(value)):
                raise AnswerError("a bad Content-Length")
            length = int(value)
        elif name == b"transfer-encoding":
            encoded = True
            chunked = value.lower().rsplit(b",", 1)[-1].strip() == b"chunked"
        elif name == b"connection":
            tokens = {t.strip() for t in value.lower().split(b",")}
            if b"close" in tokens:
                keep_alive = False
            elif b"keep-alive" in tokens:
                keep_alive = True
    if encoded:
        length = None  # Transfer-Encoding wins; not chunked means "until the connection ends"
    return int(code), keep_alive, length, chunked


async def _skip_chunked(reader: asyncio.StreamReader) -> bool:
    """Reads a chunked body to its end; False when it is longer than is read (the connection
    is then not reusable)."""
    total = 0
    while True:
        size_line = (await reader.readuntil(b"\r\n"))[:-2].split(b";", 1)[0].strip()
        if not size_line or not _HEX.issuperset(size_line):
            raise AnswerError("a bad chunk size")
        size = int(size_line, 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return True
        total += size
        if total > ANSWER_READ_LIMIT:
            return False
        if (await reader.readexactly(size + 2))[-2:] != b"\r\n":
            raise AnswerError("a chunk without its CRLF")

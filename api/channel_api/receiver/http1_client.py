"""A lean keep-alive HTTP/1.1 client on an asyncio protocol: POST with a body, read the status.

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
import enum
import math
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast
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


class _Connection(asyncio.Protocol):
    """One connection, read as its bytes arrive (no stream, no task switch but the answer's).

    The common answer (a final status framed by Content-Length within the read limit, or a
    204/304) is read here, in `data_received`; any other (interim answers, chunked, until the
    end of the connection, too long) is handed, with what arrived of it, to a StreamReader
    that `_read_answer` reads. Bytes arriving while no answer is awaited close the
    connection: they can only be a stale or forged answer, which the next request on it
    would read as its own."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.idle_since = 0.0
        self.stream: asyncio.StreamReader | None = None  # set while a rare answer is read
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bool] | None] | None = None
        self._framed: tuple[int, bool, int] | None = None  # status, reusable, answer's size
        # Its loop, asked once: get_running_loop() is a getpid() syscall on Python 3.11.
        self.loop = asyncio.get_running_loop()
        self._closed = self.loop.create_future()

    def expect(self, waiter: asyncio.Future[tuple[int, bool] | None]) -> None:
        """The next answer resolves `waiter`: (status, reusable), or None when it is in
        `stream`."""
        self._buffer.clear()
        self._framed = None
        self.stream = None
        self._waiter = waiter

    def park(self) -> None:
        """Idle in the pool: whatever arrives now closes the connection."""
        self._waiter = None
        self.stream = None
        self.idle_since = time.monotonic()

    def usable(self) -> bool:
        assert self.transport is not None
        return not self.lost and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        await self._closed

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self.stream is not None:
            self.stream.feed_data(data)
            return
        waiter = self._waiter
        if waiter is None or waiter.done():  # nothing asked, or asked and answered
            self.close()
            return
        self._buffer += data
        try:
            answer = self._answer()
        except AnswerError as exc:
            waiter.set_exception(exc)
            return
        if answer is _Rare.ANSWER:
            self.stream = asyncio.StreamReader(limit=_HEAD_LIMIT)
            self.stream.feed_data(bytes(self._buffer))
            waiter.set_result(None)
        elif answer is not None:
            waiter.set_result(answer)

    def eof_received(self) -> bool:
        self.lost = True
        if self.stream is not None:
            self.stream.feed_eof()
        else:
            self._fail(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.stream is not None:
            if exc is None:
                self.stream.feed_eof()
            else:
                self.stream.set_exception(exc)
        else:
            self._fail(exc)
        if not self._closed.done():
            self._closed.set_result(None)

    def _fail(self, exc: Exception | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc or asyncio.IncompleteReadError(bytes(self._buffer), None))

    def _answer(self) -> tuple[int, bool] | _Rare | None:
        """(status, reusable) once the whole answer is here; None until then; `_Rare` for an
        answer `_read_answer` reads."""
        buffer = self._buffer
        if self._framed is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _HEAD_LIMIT:
                    raise AnswerError("an answer head longer than is read")
                return None
            status, keep_alive, length, chunked = _parse_head(bytes(buffer[: end + 4]))
            if status in (204, 304):  # no body; one declared cannot be trusted
                self._framed = (status, keep_alive and not (chunked or length), end + 4)
            elif 100 <= status < 200 or length is None or length > ANSWER_READ_LIMIT:
                return _Rare.ANSWER
            else:
                self._framed = (status, keep_alive, end + 4 + length)
        status, reusable, size = self._framed
        if len(buffer) < size:
            return None
        return status, reusable and len(buffer) == size  # more: a second answer


class _Rare(enum.Enum):
    ANSWER = "an answer `_read_answer` reads from a stream"


_HEAD_LIMIT = 2**16


class TimedOut(Exception):
    """No whole answer within the timeout given to `Http1Client.post`."""


class Http1Client:
    def __init__(self, *, max_connections: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self._max_connections = max_connections
        self._ssl = ssl_context
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self.open = False
        # The answers awaited and their deadlines, watched by one timer for the earliest
        # (a timer per request costs more than the rest of the client's work on it).
        self._deadlines: dict[asyncio.Future[tuple[int, bool] | None], float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

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
                await asyncio.wait_for(connection.wait_closed(), 1.0)

    async def post(self, target: Target, headers: bytes, body: bytes, *, timeout: float) -> int:
        """POST `body` with `target`'s head plus `headers` (whole lines, each ending CRLF);
        the answer's status. Raises TimedOut when the whole answer is not in within
        `timeout` seconds, or one of FAILURES when there is none."""
        request = b"".join((target.head, headers, b"Content-Length: %d\r\n\r\n" % len(body), body))
        connection = self._reuse(target)
        loop = connection.loop if connection is not None else asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if connection is not None:
            try:
                return await self._roundtrip(target, connection, request, deadline, reused=True)
            except _Stale:
                pass
        connecting = asyncio.timeout_at(deadline)
        try:
            async with connecting:
                connection = await self._connect(target)
        except TimeoutError:
            if connecting.expired():
                raise TimedOut from None
            raise
        return await self._roundtrip(target, connection, request, deadline, reused=False)

    def _reuse(self, target: Target) -> _Connection | None:
        idle = self._idle.get((target.tls, target.host, target.port))
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if connection.usable() and now - connection.idle_since <= KEEP_ALIVE_SECONDS:
                return connection
            connection.close()
        return None

    async def _connect(self, target: Target) -> _Connection:
        if target.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection,
            target.host,
            target.port,
            ssl=self._ssl if target.tls else None,
            server_hostname=target.host if target.tls else None,
        )
        return connection

    async def _roundtrip(
        self,
        target: Target,
        connection: _Connection,
        request: bytes,
        deadline: float,
        *,
        reused: bool,
    ) -> int:
        loop = connection.loop
        waiter: asyncio.Future[tuple[int, bool] | None] = loop.create_future()
        connection.expect(waiter)
        self._watch(waiter, deadline, loop)
        try:
            assert connection.transport is not None
            connection.transport.write(request)
            answer = await waiter
            if answer is None:
                answer = await _read_rare_answer(connection, deadline)
        except BaseException as exc:
            connection.close()
            if reused and _nothing_answered(exc):
                raise _Stale from exc
            raise
        finally:
            del self._deadlines[waiter]
        status, reusable = answer
        if (
            reusable
            and self.open
            and self._idle_count < self._max_connections
            and connection.usable()
            and not (connection.stream is not None and _unread(connection.stream))
        ):
            connection.park()
            self._idle.setdefault((target.tls, target.host, target.port), []).append(connection)
            self._idle_count += 1
        else:
            connection.close()
        return status

    def _watch(
        self,
        waiter: asyncio.Future[tuple[int, bool] | None],
        deadline: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._deadlines[waiter] = deadline
        if deadline < self._timer_at or len(self._deadlines) == 1:  # or an old loop's timer
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(deadline, self._expire, loop)
            self._timer_at = deadline

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fails every answer awaited past its deadline with TimedOut (their connections are
        then closed); the timer is set again for the earliest deadline left."""
        now = loop.time()
        earliest = math.inf
        for waiter, deadline in list(self._deadlines.items()):
            if deadline <= now:
                if not waiter.done():
                    waiter.set_exception(TimedOut())
            else:
                earliest = min(earliest, deadline)
        self._timer = loop.call_at(earliest, self._expire, loop) if earliest < math.inf else None
        self._timer_at = earliest


async def _read_rare_answer(connection: _Connection, deadline: float) -> tuple[int, bool]:
    assert connection.stream is not None
    reading = asyncio.timeout_at(deadline)
    try:
        async with reading:
            return await _read_answer(connection.stream)
    except TimeoutError:
        if reading.expired():
            raise TimedOut from None
        raise


def _unread(stream: asyncio.StreamReader) -> int:
    return len(stream._buffer)  # type: ignore[attr-defined]


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

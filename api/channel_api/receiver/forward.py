"""Handing a verified event to its instance, with proof that the receiver sent it.

The proof: `X-Receiver-Timestamp: <unix seconds>` and
`X-Receiver-Signature: v1=<hex HMAC-SHA256(forward secret, "<timestamp>.<instance id>." + body)>`.
The instance id inside the MAC means an event for one instance cannot be replayed to
another that shares the key; the timestamp lets the instance refuse old replays.
`forward_proof_valid` is the check an instance runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import hmac
import logging
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import SupportsIndex
from urllib.parse import quote, urlsplit

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Receiver-Timestamp"
SIGNATURE_HEADER = "X-Receiver-Signature"
INSTANCE_HEADER = "X-WhatsApp-Instance-Id"
_VERSION = "v1="
# How much of an instance's answer is read: it is ignored, and an instance is tenant code.
_ANSWER_READ_LIMIT = 64 * 1024


def forward_proof(secret: bytes, timestamp: int, instance_id: str, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.{instance_id}.".encode(), hashlib.sha256)
    mac.update(body)
    return _VERSION + mac.hexdigest()


def forward_proof_valid(
    secret: bytes,
    *,
    instance_id: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now: float | None = None,
    tolerance_seconds: float = 300.0,
) -> bool:
    """What an instance checks: a fresh timestamp and a matching MAC, in constant time."""
    # str.isdigit() is true of "²" and other non-ASCII digits that int() refuses.
    if not timestamp or not signature or not _is_unix_seconds(timestamp):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    expected = forward_proof(secret, int(timestamp), instance_id, body)
    return hmac.compare_digest(expected.encode(), signature.encode(errors="replace"))


def _is_unix_seconds(timestamp: str) -> bool:
    return len(timestamp) <= 15 and timestamp.isascii() and timestamp.isdigit()


class Delivery(enum.Enum):
    ACCEPTED = "accepted"  # the instance answered 2xx
    REFUSED = "refused"  # it answered something else
    UNREACHABLE = "unreachable"
    TIMED_OUT = "timed out"
    BUSY = "busy"  # not tried: the instance (or the forwarder) already had its most in flight


class AnswerError(Exception):
    """The instance's answer is not HTTP/1.x as this client reads it."""


class _Stale(Exception):
    """A kept-alive connection the instance had closed before it answered anything."""


# The request line and the headers that are the same for every event to one instance.
_HEAD = (
    "POST {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: whatsapp-receiver\r\n"
    "Content-Type: application/json\r\n" + INSTANCE_HEADER + ": {instance_id}\r\n"
)
# The rest: `%` formatting of bytes is the cheapest way to build them per event.
_TAIL = (
    TIMESTAMP_HEADER.encode() + b": %d\r\n" + SIGNATURE_HEADER.encode() + b": %s\r\n"
    b"Content-Length: %d\r\n\r\n"
)
_HEX = frozenset(b"0123456789abcdefABCDEF")
# A kept-alive connection idle longer than this is closed rather than reused.
_KEEP_ALIVE_SECONDS = 15.0
# Per-instance request heads kept; past this the cache starts over (channels come and go).
_TARGETS_CACHED = 65536


@dataclass(frozen=True, slots=True)
class _Target:
    tls: bool
    host: str
    port: int
    head: bytes


class _Reader(asyncio.StreamReader):
    """A StreamReader that knows whether anything is left unread, and closes its connection
    when bytes arrive while it sits idle in the pool: those can only be a stale or forged
    answer, which the next delivery on it would read as its own."""

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


class Forwarder:
    """One keep-alive HTTP/1.1 client for every instance; a delivery is one POST with a
    timeout.

    Deliberately small (aiohttp's client cost ~160 µs of CPU per event here, several times
    this one): POST with a Content-Length body, an answer framed by Content-Length, chunked
    or the end of the connection, of which at most `_ANSWER_READ_LIMIT` bytes are read.
    Connections are kept per (scheme, host, port); at most `max_connections` are in use at
    once and at most as many idle. A connection that fails, times out, was told
    `Connection: close` or whose answer was not read to its end is closed, never reused; so is
    one with bytes left after its answer, or bytes arriving while it is idle (an instance that
    answers twice, or sends a body after 1xx/204/304), which would otherwise be read as the
    answer to the next delivery, maybe another instance's. A kept-alive connection the
    instance closed before answering is retried once on a new one.

    At most `max_per_instance` deliveries to one instance are in flight at once. A delivery
    past that, or past `max_connections` in all, is not tried (`Delivery.BUSY`) rather than
    queued, so a hung instance costs others neither connections nor deadline.
    """

    def __init__(
        self,
        url_template: str,
        secret: bytes,
        *,
        timeout: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        max_per_instance: int = 16,
    ) -> None:
        parts = urlsplit(url_template)
        if parts.scheme not in ("http", "https") or "@" in parts.netloc:
            raise ValueError("the forward URL must be http(s)://host[:port]/... without userinfo")
        self._url_template = url_template
        self._key = hmac.new(secret, digestmod=hashlib.sha256)  # keyed once, copied per event
        self._timeout = timeout
        self._max_connections = max_connections
        self._ssl = ssl_context
        self._max_per_instance = max_per_instance
        self._in_flight = 0
        self._in_flight_to: dict[str, int] = {}
        self._idle: dict[tuple[bool, str, int], list[_Connection]] = {}
        self._idle_count = 0
        self._targets: dict[str, _Target] = {}
        self._open = False

    async def start(self) -> None:
        if self._ssl is None and self._url_template.startswith("https:"):
            self._ssl = ssl.create_default_context()
        self._open = True

    async def close(self) -> None:
        self._open = False
        idle = [c for conns in self._idle.values() for c in conns]
        self._idle.clear()
        self._idle_count = 0
        for connection in idle:
            connection.close()
        for connection in idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.writer.wait_closed(), 1.0)

    def url(self, instance_id: str) -> str:
        return self._url_template.format(instance_id=instance_id)

    def proof(self, timestamp: int, instance_id: str, body: bytes) -> str:
        mac = self._key.copy()
        mac.update(f"{timestamp}.{instance_id}.".encode())
        mac.update(body)
        return _VERSION + mac.hexdigest()

    def _target(self, instance_id: str) -> _Target:
        target = self._targets.get(instance_id)
        if target is None:
            if any(c in instance_id for c in "\r\n\0"):
                raise ValueError("an instance id with control characters")
            parts = urlsplit(self.url(instance_id))
            tls = parts.scheme == "https"
            host = parts.hostname
            if not host:
                raise ValueError("a forward URL without a host")
            port = parts.port or (443 if tls else 80)
            path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=~")
            if parts.query:
                path += "?" + quote(parts.query, safe="/?%:@!$&'()*+,;=~")
            host_header = f"[{host}]" if ":" in host else host
            if parts.port is not None and port != (443 if tls else 80):
                host_header += f":{port}"
            head = _HEAD.format(target=path, host=host_header, instance_id=instance_id)
            target = _Target(tls, host, port, head.encode())
            if len(self._targets) >= _TARGETS_CACHED:
                self._targets.clear()
            self._targets[instance_id] = target
        return target

    async def deliver(self, instance_id: str, body: bytes) -> Delivery:
        if not self._open:
            await self.start()
        try:
            target = self._target(instance_id)
        except ValueError as exc:
            log.warning("instance %s has no usable URL: %s", instance_id, exc)
            return Delivery.UNREACHABLE
        in_flight = self._in_flight_to.get(instance_id, 0)
        if in_flight >= self._max_per_instance or self._in_flight >= self._max_connections:
            log.info("instance %s has too many events in flight", instance_id)
            return Delivery.BUSY
        self._in_flight_to[instance_id] = in_flight + 1
        self._in_flight += 1
        try:
            return await self._deliver(target, instance_id, body)
        finally:
            self._in_flight -= 1
            left = self._in_flight_to[instance_id] - 1
            if left:
                self._in_flight_to[instance_id] = left
            else:
                del self._in_flight_to[instance_id]

    async def _deliver(self, target: _Target, instance_id: str, body: bytes) -> Delivery:
        timestamp = int(time.time())
        head = target.head + _TAIL % (
            timestamp,
            self.proof(timestamp, instance_id, body).encode(),
            len(body),
        )
        deadline = asyncio.timeout(self._timeout)
        try:
            async with deadline:
                status = await self._exchange(target, head, body)
        except (OSError, EOFError, AnswerError, asyncio.LimitOverrunError) as exc:
            if deadline.expired():
                log.warning("instance %s did not answer in time", instance_id)
                return Delivery.TIMED_OUT
            log.warning("instance %s unreachable: %s", instance_id, type(exc).__name__)
            return Delivery.UNREACHABLE
        if 200 <= status < 300:
            return Delivery.ACCEPTED
        log.warning("instance %s refused an event: HTTP %d", instance_id, status)
        return Delivery.REFUSED

    async def _exchange(self, target: _Target, head: bytes, body: bytes) -> int:
        connection = self._reuse(target)
        if connection is not None:
            try:
                return await self._roundtrip(target, connection, head, body, reused=True)
            except _Stale:
                pass
        connection = await self._connect(target)
        return await self._roundtrip(target, connection, head, body, reused=False)

    def _reuse(self, target: _Target) -> _Connection | None:
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
                or now - connection.idle_since > _KEEP_ALIVE_SECONDS
            ):
                connection.close()
                continue
            reader.idle = False
            return connection
        return None

    async def _connect(self, target: _Target) -> _Connection:
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
        self, target: _Target, connection: _Connection, head: bytes, body: bytes, *, reused: bool
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
            and self._open
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
        raise AnswerError("the instance switched protocols")
    if status in (204, 304):
        return status, keep_alive and not framed
    if chunked:
        return status, keep_alive and not framed and await _skip_chunked(reader)
    if length is not None:
        if length > _ANSWER_READ_LIMIT:
            return status, False
        await reader.readexactly(length)
        return status, keep_alive and not framed
    await reader.read(_ANSWER_READ_LIMIT)  # delimited by the end of the connection
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
        if total > _ANSWER_READ_LIMIT:
            return False
        if (await reader.readexactly(size + 2))[-2:] != b"\r\n":
            raise AnswerError("a chunk without its CRLF")


async def deliver_all(forwarder: Forwarder, parts: list[tuple[str, bytes]]) -> list[Delivery]:
    """Several instances at once (a batch spanning channels)."""
    if len(parts) == 1:
        return [await forwarder.deliver(*parts[0])]
    return list(await asyncio.gather(*(forwarder.deliver(i, b) for i, b in parts)))

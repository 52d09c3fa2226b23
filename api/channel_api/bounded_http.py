"""uvicorn's httptools protocol with bounded request heads, for the receiver and the facade.

Both processes face clients that may be hostile, and everything a request's head costs is
spent before the app (and its admission control) sees it. uvicorn bounds none of it with
httptools, and its own settings do not reach it:

- `h11_max_incomplete_event_size` applies to the h11 protocol only (which is several times
  slower than httptools: the receiver's hot path);
- `timeout_keep_alive` runs only between requests and restarts on every byte received, so a
  new connection, or one sending a byte every few seconds, is never closed;
- `limit_concurrency` is counted when a head is complete, so half-sent heads never meet it,
  and it answers 503 rather than refusing the connection.

So this subclass adds the three bounds, in the protocol itself (nothing here is ASGI):

- a head (request line and header fields) larger than `max_head_bytes`, or with more than
  `MAX_HEAD_FIELDS` fields, is answered 431 and the connection closed. The bytes are counted
  as they arrive, so a head is never held past the cap plus one socket read;
- a head must be complete within `head_timeout` seconds of the connection opening, or of the
  previous answer on a kept-alive connection; else 408 (or, with nothing sent, a silent
  close);
- past `max_connections` open connections in the process a new one is closed at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Meta and browsers send a dozen or two; each field costs far more as Python objects than
# its bytes, so many tiny fields are bounded by count, not only by bytes.
MAX_HEAD_FIELDS = 100
# A field's framing (": " and CRLF), counted with its name and value.
_FIELD_FRAMING = 4


def _answer(status: bytes, text: bytes) -> bytes:
    return b"".join(
        (
            b"HTTP/1.1 ",
            status,
            b"\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: ",
            str(len(text)).encode(),
            b"\r\nconnection: close\r\n\r\n",
            text,
        )
    )


HEAD_TOO_LARGE = _answer(b"431 Request Header Fields Too Large", b"Request head too large")
HEAD_TIMED_OUT = _answer(b"408 Request Timeout", b"Request head not received in time")


@dataclass(frozen=True)
class HeadLimits:
    max_head_bytes: int
    head_timeout: float
    max_connections: int


class ServingSettings(BaseSettings):
    """How the receiver and the facade serve: these limits and the proxies they trust, in
    both processes' settings (each with its own environment prefix)."""

    max_head_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="A request head (request line and header fields) larger than this: 431.",
    )
    head_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="A request head must be complete within this of the connection opening, "
        "or of the previous answer; else 408 and the connection is closed.",
    )
    max_connections: int = Field(
        default=2048,
        ge=1,
        description="Open connections one process keeps; past it, new ones are closed at once. "
        "Each may hold a head of up to max_head_bytes.",
    )

    # Comma-separated in the environment, as uvicorn's FORWARDED_ALLOW_IPS.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="Addresses or networks (CIDR) of the reverse proxies in front, "
        "comma-separated, whose X-Forwarded-For/-Proto are believed (uvicorn's "
        "forwarded_allow_ips); the client address is then the nearest one they forwarded. "
        "Empty: the TCP peer is the client.",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [entry.strip() for entry in value.split(",") if entry.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # a ValueError names the entry
        return value

    def head_limits(self) -> HeadLimits:
        return HeadLimits(
            max_head_bytes=self.max_head_bytes,
            head_timeout=self.head_timeout_seconds,
            max_connections=self.max_connections,
        )


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head past its cap."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """One connection. `limits` is set on the subclass `bounded_http` makes."""

    limits: HeadLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0  # bytes received while the head is incomplete
        self._head_size = 0  # the parsed head: URL, field names and values, framing
        self._head_fields = 0
        self._too_large = False
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport  # for connection_lost
            transport.close()
            return
        super().connection_made(transport)
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # A head still incomplete after this read: its raw bytes decide (one field's value
        # is buffered by the parser until the field ends, out of the callbacks' sight).
        if (
            self._reading_head
            and self._head_bytes > self.limits.max_head_bytes
            and not self.transport.is_closing()
        ):
            self._refuse(HEAD_TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any parser error, ours included, with this.
        if self._too_large:
            self._refuse(HEAD_TOO_LARGE)
        else:
            super().send_400_response(msg)

    # Parser callbacks: count the head as uvicorn builds it.

    def on_message_begin(self) -> None:
        self._head_size = 0
        self._head_fields = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        self._count(len(name) + len(value) + _FIELD_FRAMING)
        if self._head_fields > MAX_HEAD_FIELDS:
            self._too_large = True
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._stop_head_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # The next head may follow at once (pipelining); its deadline starts with the answer.
        self._reading_head = True
        self._head_bytes = 0
        super().on_message_complete()
        # Answered before its body ended (the app need not read a body): the deadline starts
        # now, as on_response_complete found the head not yet due.
        if self.cycle.response_complete and not self.pipeline:
            self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline and self._reading_head:
            self._await_head()

    # ---

    def _count(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self.limits.max_head_bytes:
            self._too_large = True
            raise _HeadTooLarge

    def _await_head(self) -> None:
        self._stop_head_deadline()
        self._head_deadline = self.loop.call_later(self.limits.head_timeout, self._head_late)

    def _stop_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_late(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or not self._reading_head:
            return
        if self._head_bytes:
            self._refuse(HEAD_TIMED_OUT)
        else:
            self.transport.close()

    def _refuse(self, answer: bytes) -> None:
        self._stop_head_deadline()
        self.transport.write(answer)
        self.transport.close()


def bounded_http(limits: HeadLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to hand uvicorn (`http=`), bound to `limits`."""

    class BoundedHttp(BoundedHttpToolsProtocol):
        pass

    BoundedHttp.limits = limits
    return BoundedHttp

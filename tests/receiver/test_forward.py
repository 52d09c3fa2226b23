"""The forwarder's own HTTP/1.1 client, against a raw server that answers exactly as scripted
(framing, keep-alive, broken connections, slowness) and against the sink over https."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from channel_api.receiver.forward import Delivery, Forwarder, deliver_all
from channel_api.receiver.webhook_rules import meta_signature
from localkube.cluster import free_port
from localkube.pki import make_pki
from whatsapp_channel.forward_proof import (
    INSTANCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    forward_proof_valid,
)

from tests.receiver.conftest import FORWARD_SECRET
from tests.support.sink import Sink

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ntaken"
INSTANCE = "0b7e4f1c-5d0a-4c7e-9d3e-2f1a6b8c9d01"
APP_SECRET = b"forward-test-app-secret"
SIGNED_EMPTY = meta_signature(APP_SECRET, b"{}")
CLOSE = None  # instead of an answer: close the connection without answering


class Scripted:
    """A raw HTTP/1.1 server: it reads each request whole (Content-Length) and answers it with
    the next of `answers` (or OK once they run out), or closes the connection for CLOSE."""

    def __init__(self, *answers: bytes | None) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[int, bytes, bytes]] = []  # (connection number, head, body)
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.delay = 0.0
        self.close_after_answer = False  # closes each connection once it has answered
        self._server: asyncio.Server | None = None

    @property
    def url_template(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/agents/{{instance_id}}/whatsapp"

    async def __aenter__(self) -> Scripted:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                self.requests.append((number, head, body))
                answer = self.answers.pop(0) if self.answers else OK
                if self.delay:
                    await asyncio.sleep(self.delay)
                if answer is CLOSE:
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after_answer:
                    return
        finally:
            self.open -= 1
            writer.close()


class _Factory:
    def __init__(self, made: list[Forwarder]) -> None:
        self.made = made

    def __call__(
        self,
        template: str,
        *,
        timeout: float = 2.0,
        max_connections: int = 8,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Forwarder:
        f = Forwarder(
            template,
            FORWARD_SECRET,
            timeout=timeout,
            max_connections=max_connections,
            ssl_context=ssl_context,
        )
        self.made.append(f)
        return f


@pytest.fixture
async def forwarders() -> AsyncIterator[_Factory]:
    factory = _Factory([])
    yield factory
    for f in factory.made:
        await f.close()


async def until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait for `condition`, looking after each turn of the event loop."""
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


def idle_at_eof(f: Forwarder) -> bool:
    """Every idle connection of `f` has seen the instance close it."""
    idle = [c for conns in f._client._idle.values() for c in conns]
    return bool(idle) and all(c.lost for c in idle)


def header(head: bytes, name: str) -> str:
    for line in head.decode().split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.lower() == name.lower():
            return value.strip()
    raise KeyError(name)


# --- what is sent, and connection reuse --------------------------------------------------


async def test_request_carries_body_and_proof_and_connection_is_reused(forwarders: _Factory):
    async with Scripted() as server:
        f = forwarders(server.url_template)
        bodies = [b'{"n":1}', b'{"n":"\xc3\xbc\\u00fc"}', b"x" * 100_000]
        assert [await f.deliver(INSTANCE, b, meta_signature(APP_SECRET, b)) for b in bodies] == [
            Delivery.ACCEPTED
        ] * 3
        assert server.connections == 1
        for (number, head, body), sent in zip(server.requests, bodies, strict=True):
            assert number == 1
            assert body == sent
            assert head.startswith(f"POST /agents/{INSTANCE}/whatsapp HTTP/1.1\r\n".encode())
            assert header(head, "Host") == server.url_template.split("/")[2]
            assert header(head, "Content-Length") == str(len(sent))
            assert header(head, "Content-Type") == "application/json"
            assert header(head, INSTANCE_HEADER) == INSTANCE
            assert forward_proof_valid(
                FORWARD_SECRET,
                instance_id=INSTANCE,
                body=body,
                timestamp=header(head, TIMESTAMP_HEADER),
                signature=header(head, SIGNATURE_HEADER),
            )


async def test_chunked_answer_is_read_to_its_end_and_the_connection_reused(
    forwarders: _Factory,
):
    chunked = (
        b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\ntaken\r\n1A\r\n" + b"y" * 26 + b"\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    async with Scripted(chunked, chunked) as server:
        f = forwarders(server.url_template)
        assert [
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) for _ in range(3)
        ] == [Delivery.ACCEPTED] * 3
        assert server.connections == 1
        assert len(server.requests) == 3


async def test_interim_answers_are_skipped(forwarders: _Factory):
    async with Scripted(b"HTTP/1.1 100 Continue\r\n\r\n" + OK) as server:
        f = forwarders(server.url_template)
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        assert server.connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", id="close"
        ),
        pytest.param(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", id="http/1.0"),
        pytest.param(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", id="until-close"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nlong", id="too-long"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n" + b"z" * 70_000,
            id="chunked-too-long",
        ),
    ],
)
async def test_answers_that_end_the_connection_are_accepted_and_not_reused(
    forwarders: _Factory, answer: bytes
):
    async with Scripted(answer) as server:
        server.close_after_answer = answer.endswith(b"until the end")
        f = forwarders(server.url_template)
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        server.close_after_answer = False
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        assert server.connections == 2


@pytest.mark.parametrize(
    ("answer", "delivery"),
    [
        (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", Delivery.REFUSED),
        (b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n", Delivery.REFUSED),
        (b"HTTP/1.1 204 No Content\r\n\r\n", Delivery.ACCEPTED),
        (b"SSH-2.0-OpenSSH\r\n\r\n", Delivery.UNREACHABLE),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", Delivery.UNREACHABLE),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", Delivery.UNREACHABLE),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", Delivery.UNREACHABLE),
    ],
)
async def test_status_and_malformed_answers(
    forwarders: _Factory, answer: bytes, delivery: Delivery
):
    async with Scripted(answer) as server:
        server.close_after_answer = answer.endswith(b"short")
        f = forwarders(server.url_template)
        assert await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is delivery
        server.close_after_answer = False
        # Whatever that was, the next event goes through (a broken connection is not reused).
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        expected = 1 if delivery in (Delivery.REFUSED, Delivery.ACCEPTED) else 2
        assert server.connections == expected
        assert len(server.requests) == 2


# --- broken connections ------------------------------------------------------------------


async def test_a_kept_alive_connection_closed_before_answering_is_retried_once(
    forwarders: _Factory,
):
    async with Scripted(OK, CLOSE) as server:
        f = forwarders(server.url_template)
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        assert (
            await f.deliver(INSTANCE, b'{"second":1}', meta_signature(APP_SECRET, b'{"second":1}'))
            is Delivery.ACCEPTED
        )
        assert [(n, body) for n, _, body in server.requests] == [
            (1, b"{}"),
            (1, b'{"second":1}'),
            (2, b'{"second":1}'),
        ]


async def test_a_new_connection_closed_before_answering_is_unreachable_not_retried(
    forwarders: _Factory,
):
    async with Scripted(CLOSE, CLOSE) as server:
        f = forwarders(server.url_template)
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}"))
            is Delivery.UNREACHABLE
        )
        assert len(server.requests) == 1


async def test_an_idle_connection_the_instance_closed_is_not_reused(forwarders: _Factory):
    async with Scripted() as server:
        server.close_after_answer = True  # without saying so in the answer
        f = forwarders(server.url_template)
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        await until(lambda: server.open == 0 and idle_at_eof(f))  # the FIN arrived
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        assert [n for n, _, _ in server.requests] == [1, 2]  # the event was not lost on it


async def test_nothing_listening_is_unreachable(forwarders: _Factory):
    f = forwarders(f"http://127.0.0.1:{free_port()}/agents/{{instance_id}}")
    assert (
        await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.UNREACHABLE
    )


async def test_close_closes_idle_connections(forwarders: _Factory):
    async with Scripted() as server:
        f = forwarders(server.url_template)
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        assert server.open == 1
        await f.close()
        await until(lambda: server.open == 0)
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )  # usable again


# --- timeouts and the pool's bound -------------------------------------------------------


async def test_a_slow_instance_times_out_and_its_late_answer_is_not_taken_for_the_next(
    forwarders: _Factory,
):
    async with Scripted(b"HTTP/1.1 503 Late\r\nContent-Length: 0\r\n\r\n") as server:
        server.delay = 0.5
        f = forwarders(server.url_template, timeout=0.2)
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}"))
            is Delivery.TIMED_OUT
        )
        server.delay = 0.0
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        assert server.connections == 2


async def test_a_delivery_past_the_cap_is_not_tried_rather_than_queued(forwarders: _Factory):
    async with Scripted() as server:
        server.delay = 0.3
        f = forwarders(server.url_template, timeout=5.0, max_connections=1)
        deliveries = await deliver_all(
            f, [(INSTANCE, b"{}", SIGNED_EMPTY), (INSTANCE, b"{}", SIGNED_EMPTY)]
        )
        assert sorted(d.value for d in deliveries) == ["accepted", "busy"]
        assert len(server.requests) == 1


async def test_the_pool_is_bounded_and_its_connections_reused(forwarders: _Factory):
    async with Scripted() as server:
        server.delay = 0.05
        f = forwarders(server.url_template, max_connections=3)
        parts = [
            (INSTANCE, b'{"n":%d}' % n, meta_signature(APP_SECRET, b'{"n":%d}' % n))
            for n in range(4)
        ]
        deliveries = await deliver_all(f, parts)
        assert sorted(d.value for d in deliveries) == ["accepted"] * 3 + ["busy"]
        assert server.most_open == 3
        for _ in range(3):
            assert await deliver_all(f, parts[:3]) == [Delivery.ACCEPTED] * 3
        assert server.connections == 3
        assert len(server.requests) == 12


# --- URLs and https ----------------------------------------------------------------------


async def test_url_template_path_and_query_are_sent_encoded(forwarders: _Factory):
    async with Scripted() as server:
        base = server.url_template.split("/agents/")[0]
        f = forwarders(base + "/a b/{instance_id}/ü?tenant=x y&k=1")
        assert (
            await f.deliver(INSTANCE, b"{}", meta_signature(APP_SECRET, b"{}")) is Delivery.ACCEPTED
        )
        [(_, head, _)] = server.requests
        assert head.startswith(
            f"POST /a%20b/{INSTANCE}/%C3%BC?tenant=x%20y&k=1 HTTP/1.1\r\n".encode()
        )


def test_userinfo_or_another_scheme_in_the_url_is_refused():
    for template in ("http://u:p@agents/{instance_id}", "ftp://agents/{instance_id}"):
        with pytest.raises(ValueError, match="http"):
            Forwarder(template, FORWARD_SECRET, timeout=1, max_connections=1)


async def test_an_instance_id_with_control_characters_is_not_sent(forwarders: _Factory):
    async with Scripted() as server:
        f = forwarders(server.url_template)
        assert (
            await f.deliver("x\r\nX-Evil: 1", b"{}", meta_signature(APP_SECRET, b"{}"))
            is Delivery.UNREACHABLE
        )
        assert server.requests == []


async def test_https_instance(forwarders: _Factory, tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(pki.serving_cert, pki.serving_key)
    sink = Sink(ssl_context=serving)
    await sink.start()
    try:
        assert sink.url_template.startswith("https://")
        trusting = ssl.create_default_context(cafile=str(pki.ca_cert))
        f = forwarders(sink.url_template, ssl_context=trusting)
        body = b'{"object":"whatsapp_business_account"}'
        assert (
            await f.deliver(INSTANCE, body, meta_signature(APP_SECRET, body)) is Delivery.ACCEPTED
        )
        assert (
            await f.deliver(INSTANCE, body, meta_signature(APP_SECRET, body)) is Delivery.ACCEPTED
        )
        [first, second] = sink.received
        assert (first.instance_id, first.body, second.body) == (INSTANCE, body, body)
        assert forward_proof_valid(
            FORWARD_SECRET,
            instance_id=INSTANCE,
            body=first.body,
            timestamp=first.headers[TIMESTAMP_HEADER],
            signature=first.headers[SIGNATURE_HEADER],
        )
        # Without the instance's CA (the system's trust store), its certificate is refused.
        untrusting = forwarders(sink.url_template)
        assert (
            await untrusting.deliver(INSTANCE, body, meta_signature(APP_SECRET, body))
            is Delivery.UNREACHABLE
        )
        assert len(sink.received) == 2
    finally:
        await sink.stop()

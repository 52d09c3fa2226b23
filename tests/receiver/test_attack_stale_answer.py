"""Issue 13, attack 3: an instance that answers twice, or sends a body after 1xx/204/304, or
writes to an idle kept-alive connection, must not decide the fate of the next delivery on
that connection, which may be another instance's on the same host. Against the real
forward client, and through the receiver's app: B's 503 reaches Meta as a 5xx."""

from __future__ import annotations

import httpx
import pytest
from channel_api.receiver.app import Receiver
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Delivery, Forwarder
from channel_api.receiver.status import StatusWriter
from channel_api.receiver.webhook_rules import meta_signature

from tests.receiver.conftest import FORWARD_SECRET
from tests.receiver.instances import Instances
from tests.support.payloads import (
    channel_secret,
    fill_cache,
    meta_bytes,
    notification,
    signed,
    text_change,
)

A = "0b7e4f1c-5d0a-4c7e-9d3e-2f1a6b8c9d01"
B = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
ANSWER_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
ANSWER_503 = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"

# What A sends for its one event: an answer, and then a second answer the client must not
# take for B's.
TWICE = [
    pytest.param(ANSWER_200 + ANSWER_200, Delivery.ACCEPTED, id="two answers"),
    pytest.param(
        b"HTTP/1.1 204 No Content\r\nContent-Length: 38\r\n\r\n" + ANSWER_200,
        Delivery.ACCEPTED,
        id="204 with a body",
    ),
    pytest.param(
        b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n" + ANSWER_200,
        Delivery.REFUSED,
        id="304 with a body",
    ),
    pytest.param(
        b"HTTP/1.1 100 Continue\r\nContent-Length: 38\r\n\r\n" + ANSWER_200 + ANSWER_200,
        Delivery.ACCEPTED,
        id="100 with a body",
    ),
]


@pytest.mark.parametrize(("from_a", "a_delivery"), TWICE)
async def test_a_second_answer_is_never_read_as_the_next_instances(
    from_a: bytes, a_delivery: Delivery
):
    async with Instances(answers={A: [from_a], B: [ANSWER_503]}) as server:
        forwarder = Forwarder(server.url_template, FORWARD_SECRET, timeout=5, max_connections=4)
        try:
            assert (
                await forwarder.deliver(
                    A, b'{"for":"a"}', meta_signature(b"app-secret", b'{"for":"a"}')
                )
                is a_delivery
            )
            assert (
                await forwarder.deliver(
                    B, b'{"for":"b"}', meta_signature(b"app-secret", b'{"for":"b"}')
                )
                is Delivery.REFUSED
            )
            assert [r.instance_id for r in server.requests] == [A, B]
            assert server.requests[1].connection != server.requests[0].connection
        finally:
            await forwarder.close()


async def test_bytes_arriving_on_an_idle_connection_close_it():
    async with Instances(answers={B: [ANSWER_503]}) as server:
        forwarder = Forwarder(server.url_template, FORWARD_SECRET, timeout=5, max_connections=4)
        try:
            assert (
                await forwarder.deliver(
                    A, b'{"for":"a"}', meta_signature(b"app-secret", b'{"for":"a"}')
                )
                is Delivery.ACCEPTED
            )
            [first] = server.requests
            # While the connection sits idle in the pool, A answers again.
            server.writers[first.connection].write(ANSWER_200)
            await server.wait_for(lambda: first.connection in server.closed_by_client)
            assert (
                await forwarder.deliver(
                    B, b'{"for":"b"}', meta_signature(b"app-secret", b'{"for":"b"}')
                )
                is Delivery.REFUSED
            )
        finally:
            await forwarder.close()


async def _nothing(path: str, body: object) -> None:
    return None


async def test_b_answering_503_reaches_meta_as_a_5xx_after_a_answered_twice():
    phone_a, phone_b = "106540352243331", "106540352243332"
    async with Instances(answers={A: [ANSWER_200 + ANSWER_200], B: [ANSWER_503]}) as server:
        cache = ChannelCache()
        fill_cache(
            cache,
            [
                channel_secret(A, phone_a, app_secret="a-secret-0123456789", verify_token="a" * 20),
                channel_secret(B, phone_b, app_secret="b-secret-0123456789", verify_token="b" * 20),
            ],
        )
        forwarder = Forwarder(server.url_template, FORWARD_SECRET, timeout=5, max_connections=4)
        receiver = Receiver(
            cache,
            forwarder,
            StatusWriter(_nothing, "tests", interval=60.0),
            max_body_bytes=64 * 1024,
        )
        transport = httpx.ASGITransport(app=receiver)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://r") as meta:
                for instance, phone, secret, expected in (
                    (A, phone_a, "a-secret-0123456789", 200),
                    (B, phone_b, "b-secret-0123456789", 502),
                ):
                    body = meta_bytes(notification([text_change(phone, "hi")]))
                    answer = await meta.post(
                        f"/hooks/whatsapp/{instance}", content=body, headers=signed(secret, body)
                    )
                    assert answer.status_code == expected
        finally:
            await forwarder.close()

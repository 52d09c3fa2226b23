"""Issue 13, attack 2: tenant A posts validly signed events to its own URL as fast as it
likes while its instance hangs. A's events past its in-flight cap get 503 at once (with
Retry-After), and tenant B, whose instance is healthy, gets every event delivered within its
deadline meanwhile: A's hung deliveries never take B's connections or B's time."""

from __future__ import annotations

import asyncio

import httpx
from channel_api.receiver.app import Receiver
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Forwarder
from channel_api.receiver.status import StatusWriter

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
PHONE_A, PHONE_B = "106540352244441", "106540352244442"
SECRET_A, SECRET_B = "tenant-a-secret-0123456789", "tenant-b-secret-0123456789"
PER_INSTANCE = 4
A_EVENTS = 40


async def _nothing(path: str, body: object) -> None:
    return None


async def _first(
    tasks: list[asyncio.Task[httpx.Response]], count: int, timeout: float
) -> set[asyncio.Task[httpx.Response]]:
    """The first `count` of `tasks` to finish."""
    done: set[asyncio.Task[httpx.Response]] = set()
    pending = set(tasks)
    async with asyncio.timeout(timeout):
        while len(done) < count:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            done |= finished
    return done


async def test_a_hung_instance_under_load_never_delays_another_tenant():
    async with Instances(hang={A}) as server:
        cache = ChannelCache()
        fill_cache(
            cache,
            [
                channel_secret(A, PHONE_A, app_secret=SECRET_A, verify_token="a" * 20),
                channel_secret(B, PHONE_B, app_secret=SECRET_B, verify_token="b" * 20),
            ],
        )
        # B's deadline is generous for a healthy instance on a loaded machine, and far
        # shorter than the test's own waits: a B event stuck behind A's would time out.
        forwarder = Forwarder(
            server.url_template,
            FORWARD_SECRET,
            timeout=10.0,
            max_connections=16,
            max_per_instance=PER_INSTANCE,
        )
        receiver = Receiver(
            cache, forwarder, StatusWriter(_nothing, "tests", interval=60.0), max_body_bytes=65536
        )
        transport = httpx.ASGITransport(app=receiver)
        try:
            async with httpx.AsyncClient(
                transport=transport, base_url="http://r", timeout=60
            ) as meta:

                async def post(instance: str, phone: str, secret: str, n: int) -> httpx.Response:
                    body = meta_bytes(notification([text_change(phone, f"event {n}")]))
                    return await meta.post(
                        f"/hooks/whatsapp/{instance}", content=body, headers=signed(secret, body)
                    )

                flood = [
                    asyncio.create_task(post(A, PHONE_A, SECRET_A, n)) for n in range(A_EVENTS)
                ]
                # A's instance holds as many as it may; every other A event is answered at
                # once, while A still hangs.
                await server.wait_for(lambda: server.in_flight.get(A, 0) >= PER_INSTANCE)
                done = await _first(flood, A_EVENTS - PER_INSTANCE, timeout=60)
                refused = [t.result() for t in done]
                assert len(refused) == A_EVENTS - PER_INSTANCE
                assert {r.status_code for r in refused} == {503}
                assert all(r.headers["retry-after"].isdigit() for r in refused)

                # Meanwhile B is served: every event, first time, as many at once as its
                # own cap allows.
                for _ in range(3):
                    b_answers = await asyncio.gather(
                        *(post(B, PHONE_B, SECRET_B, n) for n in range(PER_INSTANCE))
                    )
                    assert [a.status_code for a in b_answers] == [200] * PER_INSTANCE
                assert sum(r.instance_id == B for r in server.requests) == 3 * PER_INSTANCE
                assert server.most_in_flight[A] == PER_INSTANCE

                server.release.set()
                held = await asyncio.wait_for(
                    asyncio.gather(*(t for t in flood if t not in done)), 60
                )
                assert [h.status_code for h in held] == [200] * PER_INSTANCE
        finally:
            await forwarder.close()

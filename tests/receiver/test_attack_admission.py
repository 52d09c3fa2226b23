"""Issue 13, attack 1 at the ASGI app: what the receiver takes on before it knows a request
is Meta's. An unknown or disabled channel is refused before a byte of its body is read; a
body must arrive whole within the deadline; past the request slots or the byte budget new
requests get 503 with Retry-After, while an event of ordinary size still fits."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from channel_api.receiver.admission import Admission, client_of
from channel_api.receiver.app import Receiver
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Forwarder
from channel_api.receiver.status import StatusWriter

from tests.receiver.asgi_calls import Answer, Body, call
from tests.receiver.conftest import FORWARD_SECRET
from tests.support.payloads import (
    channel_secret,
    fill_cache,
    meta_bytes,
    meta_signature,
    new_instance_id,
    notification,
    text_change,
)
from tests.support.sink import Sink

APP_SECRET = "admission-app-secret-0123456789"
PHONE = "106540352241111"
DISABLED_PHONE = "106540352242222"
KIB = 1024


@dataclass
class Setup:
    receiver: Receiver
    admission: Admission
    instance: str
    disabled: str


async def _nothing(path: str, body: object) -> None:
    return None


def _setup(sink: Sink, admission: Admission, max_body_bytes: int = 3 * 1024 * KIB) -> Setup:
    instance, disabled = new_instance_id(), new_instance_id()
    cache = ChannelCache()
    fill_cache(
        cache,
        [
            channel_secret(instance, PHONE, app_secret=APP_SECRET, verify_token="v" * 20),
            channel_secret(
                disabled,
                DISABLED_PHONE,
                app_secret=APP_SECRET,
                verify_token="w" * 20,
                enabled=False,
            ),
        ],
    )
    forwarder = Forwarder(sink.url_template, FORWARD_SECRET, timeout=5.0, max_connections=16)
    receiver = Receiver(
        cache,
        forwarder,
        StatusWriter(_nothing, "tests", interval=60.0),
        max_body_bytes=max_body_bytes,
        admission=admission,
    )
    return Setup(receiver, admission, instance, disabled)


@pytest.fixture
def small() -> Admission:
    return Admission(max_requests=2, max_buffered_bytes=1024 * KIB, body_timeout=30.0)


def _post_headers(signature: str = "sha256=anything", length: int | None = None):
    headers = [(b"x-hub-signature-256", signature.encode()), (b"content-type", b"application/json")]
    if length is not None:
        headers.append((b"content-length", str(length).encode()))
    return headers


async def _honest(setup: Setup, text: str = "hello") -> Answer:
    body = meta_bytes(notification([text_change(PHONE, text)]))
    feed = Body()
    feed.end(body)
    return await call(
        setup.receiver,
        "POST",
        f"/hooks/whatsapp/{setup.instance}",
        feed,
        _post_headers(meta_signature(APP_SECRET, body), len(body)),
    )


async def _until(condition, what: str, timeout: float = 30.0) -> None:
    async def wait() -> None:
        # The admission counters have no event to wait on; they are polled.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


@pytest.mark.parametrize("which", ["unknown", "disabled"])
async def test_an_unknown_or_disabled_channel_is_refused_before_its_body_is_read(
    sink: Sink, small: Admission, which: str
):
    setup = _setup(sink, small)
    target = new_instance_id() if which == "unknown" else setup.disabled
    never = Body()  # a body that never comes
    answer = await asyncio.wait_for(
        call(
            setup.receiver,
            "POST",
            f"/hooks/whatsapp/{target}",
            never,
            _post_headers(length=3 * 1024 * KIB),
        ),
        timeout=30,
    )
    assert (answer.status, answer.headers.get(b"connection")) == (403, b"close")
    assert never.reads == 0
    assert small.in_flight == small.buffered == 0


async def test_a_body_that_does_not_arrive_in_time_gets_408_and_its_bytes_back(sink: Sink):
    setup = _setup(
        sink, Admission(max_requests=8, max_buffered_bytes=8 * 1024 * KIB, body_timeout=1.0)
    )
    slow = Body()
    slow.feed(b"{" * (100 * KIB))  # and then nothing
    answer = await asyncio.wait_for(
        call(
            setup.receiver,
            "POST",
            f"/hooks/whatsapp/{setup.instance}",
            slow,
            _post_headers(length=3 * 1024 * KIB),
        ),
        timeout=60,
    )
    assert (answer.status, answer.headers.get(b"connection")) == (408, b"close")
    assert setup.admission.in_flight == setup.admission.buffered == 0
    assert (await _honest(setup)).status == 200


async def test_past_the_request_slots_new_events_get_503_with_retry_after(
    sink: Sink, small: Admission
):
    setup = _setup(sink, small)
    held = [Body(), Body()]
    calls = [
        asyncio.create_task(
            call(setup.receiver, "POST", f"/hooks/whatsapp/{setup.instance}", body, _post_headers())
        )
        for body in held
    ]
    await _until(lambda: small.in_flight == 2, "both slow requests admitted")
    answer = await _honest(setup)
    assert answer.status == 503
    assert answer.headers[b"retry-after"].isdigit()
    assert answer.headers[b"connection"] == b"close"
    for body in held:  # the slow ones end: their slots come back
        body.end(b"{}")
    assert [a.status for a in await asyncio.gather(*calls)] == [403, 403]
    assert small.in_flight == small.buffered == 0
    assert (await _honest(setup)).status == 200


async def test_past_the_byte_budget_large_bodies_get_503_and_small_events_still_fit(
    sink: Sink, small: Admission
):
    setup = _setup(
        sink, Admission(max_requests=64, max_buffered_bytes=1024 * KIB, body_timeout=30.0)
    )
    admission = setup.admission
    big = Body()
    big.feed(b"{" * (700 * KIB))
    first = asyncio.create_task(
        call(setup.receiver, "POST", "/hooks/whatsapp", big, _post_headers(length=2048 * KIB))
    )
    await _until(lambda: admission.buffered == 700 * KIB, "the first large body held")
    second = Body()
    second.feed(b"{" * (200 * KIB))
    answer = await asyncio.wait_for(
        call(setup.receiver, "POST", "/hooks/whatsapp", second, _post_headers()), timeout=30
    )
    assert (answer.status, answer.headers[b"connection"]) == (503, b"close")
    assert answer.headers[b"retry-after"].isdigit()
    assert admission.buffered == 700 * KIB
    # An event of ordinary size still fits beside the large body, and is delivered.
    assert (await _honest(setup, "still served")).status == 200
    assert sink.received[-1].body == meta_bytes(notification([text_change(PHONE, "still served")]))
    big.end(b"}")
    assert (await first).status == 400
    assert admission.in_flight == admission.buffered == 0


async def test_a_request_cancelled_while_reading_gives_back_its_slot_and_bytes(sink: Sink):
    setup = _setup(sink, Admission(max_requests=4, max_buffered_bytes=4096 * KIB, body_timeout=30))
    slow = Body()
    slow.feed(b"{" * (10 * KIB))
    task = asyncio.create_task(
        call(setup.receiver, "POST", f"/hooks/whatsapp/{setup.instance}", slow, _post_headers())
    )
    await _until(lambda: setup.admission.buffered == 10 * KIB, "the first piece held")
    task.cancel()  # the server going down: not a timeout, and not turned into one
    with pytest.raises(asyncio.CancelledError):
        await task
    assert setup.admission.in_flight == setup.admission.buffered == 0


async def test_a_body_slower_than_a_deadline_check_but_within_its_deadline_is_read_whole(
    sink: Sink,
):
    """The deadline is checked about once a second over every body being read; a check
    before a body's deadline leaves its read alone (a mutant cancelling every read at the
    first check lived). The body is of the largest size allowed, so its deadline is the whole
    body_timeout."""
    body = meta_bytes(notification([text_change(PHONE, "slow but in time")]))
    setup = _setup(
        sink,
        Admission(max_requests=8, max_buffered_bytes=8 * 1024 * KIB, body_timeout=60.0),
        max_body_bytes=len(body),
    )
    slow = Body()
    slow.feed(body[:10])
    task = asyncio.create_task(
        call(
            setup.receiver,
            "POST",
            f"/hooks/whatsapp/{setup.instance}",
            slow,
            _post_headers(meta_signature(APP_SECRET, body), len(body)),
        )
    )
    await _until(lambda: setup.admission.buffered == 10, "the first piece held")
    # The client stalls past two checks of the deadline (one a second), far within it.
    loop = asyncio.get_running_loop()
    stall_ends = loop.time() + 2.5
    await _until(lambda: loop.time() >= stall_ends, "the client's stall over")
    slow.end(body[10:])
    answer = await asyncio.wait_for(task, timeout=60)
    assert answer.status == 200
    assert sink.received[-1].body == body
    assert setup.admission.in_flight == setup.admission.buffered == 0
    # With no body being read, the checks stop: an idle receiver keeps no timer.
    await _until(lambda: setup.admission._reaper is None, "the deadline checks stopped")


async def test_a_body_gets_a_deadline_scaled_to_its_declared_length(sink: Sink):
    """Issue 21, item 3: a trickled body declared small is cut off at the floor, long before
    a deadline meant for the largest body (it used to hold its slot the whole time)."""
    setup = _setup(
        sink, Admission(max_requests=8, max_buffered_bytes=8 * 1024 * KIB, body_timeout=600.0)
    )
    stalled = Body()
    stalled.feed(b"{")  # of 100 bytes declared, and then nothing
    answer = await asyncio.wait_for(
        call(
            setup.receiver,
            "POST",
            f"/hooks/whatsapp/{setup.instance}",
            stalled,
            _post_headers(length=100),
        ),
        timeout=60,
    )
    assert answer.status == 408
    assert setup.admission.in_flight == setup.admission.buffered == 0


def test_a_client_counts_by_its_address_an_ipv6_one_by_its_64():
    def key(host: str) -> str:
        return client_of({"client": (host, 443)})

    assert key("192.0.2.1") != key("192.0.2.2")
    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9") != key("2001:db8:1:3::1")
    assert client_of({"client": None}) == client_of({}) == ""


@pytest.mark.parametrize("flooded", ["shared", "per_channel"])
async def test_a_flooded_url_leaves_the_other_its_own_slots(sink: Sink, flooded: str):
    """The shared URL and the channels' own URLs draw on pools of their own: a flood of one
    (all its slots held by bodies that never end) still lets an event in through the other."""
    admission = Admission(
        max_requests=2, max_per_client=8, max_buffered_bytes=1024 * KIB, body_timeout=30.0
    )
    setup = _setup(sink, admission)
    paths = {"shared": "/hooks/whatsapp", "per_channel": f"/hooks/whatsapp/{setup.instance}"}
    other = paths["per_channel" if flooded == "shared" else "shared"]
    held = [Body(), Body()]
    calls = [
        asyncio.create_task(call(setup.receiver, "POST", paths[flooded], b, _post_headers()))
        for b in held
    ]
    await _until(lambda: admission.in_flight == 2, "the flood holds every slot of its pool")
    more = Body()
    more.end(b"{}")
    answer = await call(setup.receiver, "POST", paths[flooded], more, _post_headers())
    assert answer.status == 503
    body = meta_bytes(notification([text_change(PHONE, "through the other door")]))
    honest = Body()
    honest.end(body)
    signed = _post_headers(meta_signature(APP_SECRET, body), len(body))
    assert (await call(setup.receiver, "POST", other, honest, signed)).status == 200
    for b in held:
        b.end(b"{}")
    await asyncio.gather(*calls)
    assert admission.in_flight == admission.buffered == 0


async def test_one_client_holding_its_share_leaves_others_their_slots(sink: Sink):
    """The per-client share is counted by the request's own client address: one address
    holding its share does not refuse another's event."""
    admission = Admission(
        max_requests=8, max_per_client=1, max_buffered_bytes=1024 * KIB, body_timeout=30.0
    )
    setup = _setup(sink, admission)
    path = f"/hooks/whatsapp/{setup.instance}"
    held = Body()
    holder = asyncio.create_task(
        call(setup.receiver, "POST", path, held, _post_headers(), client=("192.0.2.7", 1234))
    )
    await _until(lambda: admission.in_flight == 1, "the first client's request admitted")
    again = Body()
    again.end(b"{}")
    same = await call(
        setup.receiver, "POST", path, again, _post_headers(), client=("192.0.2.7", 1235)
    )
    assert same.status == 503  # its share is taken
    body = meta_bytes(notification([text_change(PHONE, "another client")]))
    honest = Body()
    honest.end(body)
    signed = _post_headers(meta_signature(APP_SECRET, body), len(body))
    other = await call(setup.receiver, "POST", path, honest, signed, client=("198.51.100.9", 99))
    assert other.status == 200
    held.end(b"{}")
    await holder
    assert admission.in_flight == admission.buffered == 0

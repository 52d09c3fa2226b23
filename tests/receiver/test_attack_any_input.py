"""Issue 13, attack 4 and item 11: no input makes the receiver answer 500 or log a traceback.
A property-based run (hypothesis, derandomized so every run tries the same inputs) of
arbitrary methods, paths, headers and bodies, sent in arbitrary pieces, against both webhook
URLs, signed with the channel's own app secret or not: the answer is always one of the
documented codes. And the forward proof's check never raises, whatever the timestamp."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
from channel_api.receiver.admission import Admission
from channel_api.receiver.app import Receiver
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Delivery, Forwarder
from channel_api.receiver.status import StatusWriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from whatsapp_channel.forward_proof import forward_proof_valid

from tests.receiver.asgi_calls import Body, call
from tests.receiver.conftest import FORWARD_SECRET
from tests.support.payloads import (
    channel_secret,
    fill_cache,
    meta_bytes,
    meta_signature,
    notification,
    text_change,
)

INSTANCE = "3f6c1b9e-2a4d-4e8f-9b1c-7d5e3a2f1c0b"
DISABLED = "5a1e2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"
PHONE = "106540352245551"
APP_SECRET = "any-input-app-secret-0123456789"
# The receiver's documented answers on its webhook URLs (docs/receiver.md, "Rules").
DOCUMENTED = {200, 400, 401, 403, 404, 405, 408, 413, 502, 503, 504}


class Accepting(Forwarder):
    """Deliveries succeed without leaving the process: the input handling is what is tried."""

    async def deliver(self, instance_id: str, body: bytes, signature: bytes) -> Delivery:
        return Delivery.ACCEPTED


async def _nothing(path: str, body: object) -> None:
    return None


def _receiver() -> Receiver:
    cache = ChannelCache()
    fill_cache(
        cache,
        [
            channel_secret(INSTANCE, PHONE, app_secret=APP_SECRET, verify_token="v" * 20),
            channel_secret(
                DISABLED,
                "106540352245552",
                app_secret=APP_SECRET,
                verify_token="w" * 20,
                enabled=False,
            ),
        ],
    )
    return Receiver(
        cache,
        Accepting("http://127.0.0.1:9/{instance_id}", FORWARD_SECRET, timeout=1, max_connections=4),
        StatusWriter(_nothing, "tests", interval=60.0),
        max_body_bytes=64 * 1024,
        admission=Admission(max_requests=8, max_buffered_bytes=1024 * 1024, body_timeout=30.0),
    )


PATHS = st.one_of(
    st.just("/hooks/whatsapp"),
    st.just(f"/hooks/whatsapp/{INSTANCE}"),
    st.sampled_from(
        [
            "/hooks/whatsapp/",
            f"/hooks/whatsapp/{DISABLED}",
            f"/hooks/whatsapp/{INSTANCE}/x",
            "/hooks/whatsapp/00000000-0000-0000-0000-000000000000",
            "/healthz",
            "/readyz",
        ]
    ),
    st.text(max_size=40).map(lambda t: "/hooks/whatsapp/" + t),
    st.text(max_size=40).map(lambda t: "/" + t),
)
METHODS = st.one_of(
    st.just("POST"),
    st.just("GET"),
    st.sampled_from(["PUT", "HEAD", "DELETE"]),
    st.text(max_size=10),
)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
BODIES = st.one_of(
    st.binary(max_size=2048),
    # Nesting deeper and shallower than the JSON parser's recursion limit.
    st.integers(min_value=1000, max_value=20000).map(lambda n: b"[" * n),
    st.integers(min_value=500, max_value=5000).map(lambda n: b'{"entry":' * n),
    JSONISH.map(lambda v: repr(v).encode()),
    st.builds(
        lambda entry, changes: (
            meta_bytes({"object": "whatsapp_business_account", "entry": entry})
            if changes is None
            else meta_bytes(notification(changes))
        ),
        JSONISH,
        st.one_of(
            st.none(),
            st.lists(
                st.builds(
                    lambda phone, text: text_change(phone, text),
                    st.sampled_from([PHONE, "106540352245552", "1", ""]),
                    st.text(max_size=30),
                ),
                max_size=3,
            ),
        ),
    ),
)
HEADER_BYTES = st.binary(max_size=30)


@st.composite
def requests(
    draw: st.DrawFn,
) -> tuple[str, str, list[tuple[bytes, bytes]], bytes, list[int], bytes]:
    method = draw(METHODS)
    path = draw(PATHS)
    body = draw(BODIES)
    headers = draw(st.lists(st.tuples(HEADER_BYTES.map(bytes.lower), HEADER_BYTES), max_size=4))
    signature = draw(st.sampled_from(["valid", "invalid", "junk", "none"]))
    if signature == "valid":
        headers.append((b"x-hub-signature-256", meta_signature(APP_SECRET, body).encode()))
    elif signature == "invalid":
        headers.append((b"x-hub-signature-256", b"sha256=" + b"0" * 64))
    elif signature == "junk":
        headers.append((b"x-hub-signature-256", draw(HEADER_BYTES)))
    length = draw(st.sampled_from(["right", "wrong", "junk", "none"]))
    if length == "right":
        headers.append((b"content-length", str(len(body)).encode()))
    elif length == "wrong":
        headers.append((b"content-length", str(draw(st.integers(0, 10**7))).encode()))
    elif length == "junk":
        headers.append((b"content-length", draw(HEADER_BYTES)))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    query = draw(st.binary(max_size=60))
    return method, path, headers, body, cuts, query


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of this test: asyncio's note that the garbage collector destroyed a task
    another test left pending (its loop long gone) is not the receiver's doing."""
    return [
        r
        for r in caplog.records
        if not (r.name == "asyncio" and str(r.msg).startswith("Task was destroyed"))
    ]


@settings(
    max_examples=400,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(request=requests())
def test_any_request_gets_a_documented_answer_and_no_traceback(
    request: tuple[str, str, list[tuple[bytes, bytes]], bytes, list[int], bytes],
    loop: asyncio.AbstractEventLoop,
    caplog: pytest.LogCaptureFixture,
) -> None:
    method, path, headers, body, cuts, query = request
    receiver = _receiver()
    feed = Body()
    start = 0
    for cut in cuts:
        feed.feed(body[start:cut])
        start = cut
    feed.end(body[start:])
    caplog.clear()
    with caplog.at_level(logging.INFO):
        answer = loop.run_until_complete(
            asyncio.wait_for(call(receiver, method, path, feed, headers, query), 30)
        )
    assert answer.starts == 1
    assert answer.status in DOCUMENTED, (answer.status, answer.body)
    assert not [r for r in _ours(caplog) if r.exc_info or r.levelno >= logging.ERROR]
    assert receiver.admission.in_flight == receiver.admission.buffered == 0


@pytest.mark.parametrize("path", ["/hooks/whatsapp", f"/hooks/whatsapp/{INSTANCE}"])
def test_deep_nesting_with_any_signature_is_400_not_500(
    path: str, loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    body = b"[" * 5000
    feed = Body()
    feed.end(body)
    headers = [(b"x-hub-signature-256", meta_signature(APP_SECRET, body).encode())]
    answer = loop.run_until_complete(call(_receiver(), "POST", path, feed, headers))
    assert answer.status == 400
    assert not [r for r in _ours(caplog) if r.exc_info]


@pytest.mark.parametrize(
    "timestamp", ["²", "\u0661\u0667" + "\u0660" * 8, "1" * 5000, "", " 1", "-1", "1e9"]
)
def test_forward_proof_valid_is_false_for_timestamps_int_refuses(timestamp: str) -> None:
    assert (
        forward_proof_valid(
            FORWARD_SECRET, instance_id=INSTANCE, body=b"{}", timestamp=timestamp, signature="v1=00"
        )
        is False
    )


@settings(max_examples=300, derandomize=True, deadline=None, database=None)
@given(
    timestamp=st.one_of(st.none(), st.text(max_size=30)), signature=st.one_of(st.none(), st.text())
)
def test_forward_proof_valid_never_raises(timestamp: str | None, signature: str | None) -> None:
    assert (
        forward_proof_valid(
            FORWARD_SECRET,
            instance_id=INSTANCE,
            body=b"{}",
            timestamp=timestamp,
            signature=signature,
        )
        is False
    )

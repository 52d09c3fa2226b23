"""Issue 15, the header itself: every forwarded request carries `X-Hub-Signature-256` over the
exact bytes the instance receives, with its own channel's app secret, checked here the way the
docs/receiver.md tells an instance without a library to check it."""

from __future__ import annotations

import hashlib
import hmac
import json

from tests.receiver.conftest import Harness
from tests.support.payloads import (
    channel_secret,
    meta_bytes,
    meta_signature,
    new_instance_id,
    notification,
    signed,
    status_change,
    text_change,
)
from tests.support.sink import Forwarded, Sink

SECRET_A = "app-secret-of-channel-a-0123456789"
SECRET_B = "app-secret-of-channel-b-0123456789"
PHONE_A = "106540352240001"
PHONE_B = "106540352240002"
TEXT = "Grüße, Zoë! ça coûte 10 € 😀"


def documented_check(app_secret: str, forwarded: Forwarded) -> bool:
    """The three lines of docs/receiver.md."""
    expected = "sha256=" + hmac.new(app_secret.encode(), forwarded.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, forwarded.headers.get("X-Hub-Signature-256", ""))


async def test_each_channel_url_forwards_metas_bytes_signed_with_its_own_secret(
    harness: Harness, sink: Sink
) -> None:
    a, b = new_instance_id(), new_instance_id()
    harness.load(
        channel_secret(a, PHONE_A, app_secret=SECRET_A, verify_token="token-a"),
        channel_secret(b, PHONE_B, app_secret=SECRET_B, verify_token="token-b"),
    )
    body_a = meta_bytes(notification([text_change(PHONE_A, TEXT)]))
    body_b = meta_bytes(notification([status_change(PHONE_B, "read")]))
    # Meta's hex in upper case passes the receiver's check; what is forwarded is computed.
    upper = "sha256=" + meta_signature(SECRET_A, body_a).removeprefix("sha256=").upper()
    headers_a = {"Content-Type": "application/json", "X-Hub-Signature-256": upper}
    answer_a = await harness.client.post(f"/hooks/whatsapp/{a}", content=body_a, headers=headers_a)
    answer_b = await harness.client.post(
        f"/hooks/whatsapp/{b}", content=body_b, headers=signed(SECRET_B, body_b)
    )
    assert (answer_a.status_code, answer_b.status_code) == (200, 200)
    got = {f.instance_id: f for f in await sink.wait_for(2)}
    assert got[a].body == body_a
    assert got[b].body == body_b
    assert got[a].headers["X-Hub-Signature-256"] == meta_signature(SECRET_A, body_a)  # lower
    assert documented_check(SECRET_A, got[a])
    assert documented_check(SECRET_B, got[b])
    assert not documented_check(SECRET_B, got[a])
    assert got[a].headers["Content-Type"] == "application/json"


async def test_a_shared_batch_is_split_and_each_part_signed_over_its_own_bytes(
    harness: Harness, sink: Sink
) -> None:
    a, b = new_instance_id(), new_instance_id()
    # One Meta app serving both numbers: one app secret (the batch verifies under both).
    harness.load(
        channel_secret(a, PHONE_A, app_secret=SECRET_A, verify_token="token-a"),
        channel_secret(b, PHONE_B, app_secret=SECRET_A, verify_token="token-b"),
    )
    batch = notification([text_change(PHONE_B, "for b"), text_change(PHONE_A, TEXT)])
    body = meta_bytes(batch)
    answer = await harness.client.post(
        "/hooks/whatsapp", content=body, headers=signed(SECRET_A, body)
    )
    assert answer.status_code == 200
    got = {f.instance_id: f for f in await sink.wait_for(2)}
    for instance, phone, text in ((a, PHONE_A, TEXT), (b, PHONE_B, "for b")):
        part = got[instance]
        assert part.body != body
        assert part.body.isascii()  # as Meta encodes: non-ASCII escaped
        assert documented_check(SECRET_A, part)
        assert part.headers["X-Hub-Signature-256"] != meta_signature(SECRET_A, body)
        event = json.loads(part.body)
        (change,) = event["entry"][0]["changes"]
        assert change["value"]["metadata"]["phone_number_id"] == phone
        assert change["value"]["messages"][0]["text"]["body"] == text

"""The receiver's routing at its edges (issue 14: each found by a mutant that no other test
noticed): a channel URL answers only its own channel's token, a phone number claimed twice
lets the signature pick, account-level changes do not stop routing, a whole batch for one
channel goes byte for byte, and the challenges are counted per endpoint."""

from __future__ import annotations

import json

from prometheus_client import REGISTRY

from tests.receiver.conftest import Harness
from tests.support.payloads import (
    account_change,
    channel_secret,
    meta_bytes,
    new_instance_id,
    notification,
    signed,
    text_change,
)
from tests.support.sink import Sink

SHARED = "/hooks/whatsapp"


def challenge(token: str) -> dict[str, str]:
    return {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}


def challenges(endpoint: str, outcome: str) -> float:
    labels = {"endpoint": endpoint, "outcome": outcome}
    return REGISTRY.get_sample_value("whatsapp_receiver_challenges_total", labels) or 0.0


async def test_a_channel_url_answers_its_own_token_only(harness: Harness):
    a, b = new_instance_id(), new_instance_id()
    harness.load(
        channel_secret(a, "1111111111", app_secret="sa", verify_token="token-of-a"),
        channel_secret(b, "2222222222", app_secret="sb", verify_token="token-of-b"),
    )
    own = await harness.client.get(f"{SHARED}/{a}", params=challenge("token-of-a"))
    assert (own.status_code, own.text) == (200, "1158201444")
    other = await harness.client.get(f"{SHARED}/{a}", params=challenge("token-of-b"))
    assert (other.status_code, other.text) == (403, "Forbidden")


async def test_the_shared_url_with_a_trailing_slash_is_the_shared_url(harness: Harness):
    a = new_instance_id()
    harness.load(channel_secret(a, "1111111111", app_secret="sa", verify_token="token-of-a"))
    answer = await harness.client.get(f"{SHARED}/", params=challenge("token-of-a"))
    assert (answer.status_code, answer.text) == (200, "1158201444")


async def test_challenges_are_counted_per_endpoint(harness: Harness):
    a = new_instance_id()
    harness.load(channel_secret(a, "1111111111", app_secret="sa", verify_token="token-of-a"))
    before = {
        (e, o): challenges(e, o) for e in ("per_channel", "shared") for o in ("verified", "refused")
    }
    await harness.client.get(f"{SHARED}/{a}", params=challenge("token-of-a"))
    await harness.client.get(SHARED, params=challenge("token-of-a"))
    await harness.client.get(SHARED, params=challenge("token-of-a"))
    await harness.client.get(f"{SHARED}/{a}", params=challenge("wrong"))
    moved = {key: challenges(*key) - value for key, value in before.items()}
    assert moved == {
        ("per_channel", "verified"): 1,
        ("shared", "verified"): 2,
        ("per_channel", "refused"): 1,
        ("shared", "refused"): 0,
    }


async def test_liveness_fails_once_background_work_died(harness: Harness):
    assert (await harness.client.get("/healthz")).status_code == 200
    harness.receiver.failure = "channel watch"
    answer = await harness.client.get("/healthz")
    assert (answer.status_code, answer.text) == (500, "Background work stopped")


async def test_a_phone_claimed_by_two_channels_goes_where_the_signature_fits(
    harness: Harness, sink: Sink
):
    a, b = new_instance_id(), new_instance_id()
    phone = "1111111111"
    harness.load(
        channel_secret(a, phone, app_secret="secret-of-a", verify_token="ta"),
        channel_secret(b, phone, app_secret="secret-of-b", verify_token="tb"),
    )
    body = meta_bytes(notification([text_change(phone, "for b")]))
    answer = await harness.client.post(SHARED, content=body, headers=signed("secret-of-b", body))
    assert answer.status_code == 200
    assert [(f.instance_id, f.body) for f in sink.received] == [(b, body)]
    refused = await harness.client.post(SHARED, content=body, headers=signed("neither", body))
    assert refused.status_code == 403
    assert len(sink.received) == 1


async def test_a_phone_claimed_twice_with_one_secret_routes_nowhere(harness: Harness, sink: Sink):
    """Two channels, one number, one app secret: nothing tells them apart; dropped."""
    a, b, c = new_instance_id(), new_instance_id(), new_instance_id()
    harness.load(
        channel_secret(a, "1111111111", app_secret="shared-secret", verify_token="ta"),
        channel_secret(b, "1111111111", app_secret="shared-secret", verify_token="tb"),
        channel_secret(c, "3333333333", app_secret="shared-secret", verify_token="tc"),
    )
    body = meta_bytes(
        notification([text_change("1111111111", "whose?"), text_change("3333333333", "c's")])
    )
    answer = await harness.client.post(SHARED, content=body, headers=signed("shared-secret", body))
    assert answer.status_code == 200
    assert [f.instance_id for f in sink.received] == [c]
    assert [
        ch["value"]["metadata"]["phone_number_id"]
        for ch in json.loads(sink.received[0].body)["entry"][0]["changes"]
    ] == ["3333333333"]


async def test_account_level_changes_do_not_stop_the_routing(harness: Harness, sink: Sink):
    a = new_instance_id()
    harness.load(channel_secret(a, "1111111111", app_secret="sa", verify_token="ta"))
    body = meta_bytes(notification([account_change(), text_change("1111111111", "after it")]))
    answer = await harness.client.post(SHARED, content=body, headers=signed("sa", body))
    assert answer.status_code == 200
    [forwarded] = sink.received
    changes = json.loads(forwarded.body)["entry"][0]["changes"]
    assert [c["value"]["metadata"]["phone_number_id"] for c in changes] == ["1111111111"]


async def test_a_whole_batch_for_one_channel_goes_byte_for_byte(harness: Harness, sink: Sink):
    a = new_instance_id()
    harness.load(channel_secret(a, "1111111111", app_secret="sa", verify_token="ta"))
    # Not in the compact form the receiver would write: re-encoding would show.
    body = json.dumps(notification([text_change("1111111111", "as sent")]), indent=1).encode()
    answer = await harness.client.post(SHARED, content=body, headers=signed("sa", body))
    assert answer.status_code == 200
    assert [f.body for f in sink.received] == [body]


async def test_a_channel_without_an_app_secret_counts_as_unknown_on_the_shared_url(
    harness: Harness, sink: Sink
):
    a = new_instance_id()
    harness.load(channel_secret(a, "1111111111", app_secret=None, verify_token="ta"))
    body = meta_bytes(notification([text_change("1111111111", "nobody can sign this")]))

    def events(outcome: str) -> float:
        labels = {"endpoint": "shared", "outcome": outcome}
        return REGISTRY.get_sample_value("whatsapp_receiver_webhook_events_total", labels) or 0.0

    unknown, bad = events("unknown_channel"), events("bad_signature")
    answer = await harness.client.post(SHARED, content=body, headers=signed("anything", body))
    assert (answer.status_code, answer.text) == (403, "Forbidden")
    assert (events("unknown_channel") - unknown, events("bad_signature") - bad) == (1, 0)
    assert sink.received == []

"""The shared URL's routing rule as a pure function: which channel gets which changes, and
when an event goes nowhere. No ASGI, no sockets."""

from __future__ import annotations

import json
from typing import Any

from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.routing import Refused, route_shared_event
from channel_api.receiver.webhook_rules import event_routes

from tests.support.payloads import (
    account_change,
    channel_secret,
    meta_bytes,
    meta_signature,
    new_instance_id,
    notification,
    text_change,
)

SECRET = "shared-app-secret"


def cache_of(*secrets: dict[str, Any]) -> ChannelCache:
    cache = ChannelCache()
    cache.apply("SYNC", {"items": list(secrets)})
    return cache


def one(phone: str, *, app_secret: str | None, enabled: bool = True) -> dict[str, Any]:
    return channel_secret(
        new_instance_id(), phone, app_secret=app_secret, verify_token="t", enabled=enabled
    )


def route(cache: ChannelCache, event: dict[str, Any], app_secret: str = SECRET):
    body = meta_bytes(event)
    signature = meta_signature(app_secret, body).encode()
    return route_shared_event(event_routes(body), body, signature, cache.for_phone)


def changes(body: bytes) -> list[str]:
    return [
        change["value"]["metadata"]["phone_number_id"]
        for entry in json.loads(body)["entry"]
        for change in entry["changes"]
    ]


def test_one_channel_gets_the_event_as_meta_signed_it() -> None:
    iid = new_instance_id()
    cache = cache_of(channel_secret(iid, "1111111", app_secret=SECRET, verify_token="t-1"))
    event = notification([text_change("1111111", "a"), text_change("1111111", "b")])
    routed = route(cache, event)
    assert not isinstance(routed, Refused)
    ((channel, body, signature),) = routed
    assert channel.instance_id == iid
    assert body == meta_bytes(event)
    assert b"sha256=" + signature == meta_signature(SECRET, body).encode()


def test_a_batch_is_split_so_each_channel_gets_only_its_own_changes() -> None:
    first, second = new_instance_id(), new_instance_id()
    cache = cache_of(
        channel_secret(first, "1111111", app_secret=SECRET, verify_token="t-1"),
        channel_secret(second, "2222222", app_secret=SECRET, verify_token="t-2"),
    )
    event = notification(
        [text_change("1111111", "a"), text_change("2222222", "b")], [text_change("1111111", "c")]
    )
    routed = route(cache, event)
    assert not isinstance(routed, Refused)
    by_instance = {channel.instance_id: changes(body) for channel, body, _ in routed}
    assert by_instance == {first: ["1111111", "1111111"], second: ["2222222"]}
    # Each part signed over its own bytes (the one HMAC of the whole body signs neither).
    for _, body, signature in routed:
        assert b"sha256=" + signature == meta_signature(SECRET, body).encode()


def test_changes_without_a_channel_are_dropped_and_the_rest_delivered() -> None:
    iid = new_instance_id()
    cache = cache_of(channel_secret(iid, "1111111", app_secret=SECRET, verify_token="t-1"))
    event = notification([text_change("1111111", "a"), text_change("9999999", "x")])
    event["entry"][0]["changes"].append(account_change())
    routed = route(cache, event)
    assert not isinstance(routed, Refused)
    ((channel, body, signature),) = routed
    assert (channel.instance_id, changes(body)) == (iid, ["1111111"])
    assert b"sha256=" + signature == meta_signature(SECRET, body).encode()


def test_no_known_phone_number_is_an_unknown_channel() -> None:
    cache = cache_of(
        channel_secret(new_instance_id(), "1111111", app_secret=SECRET, verify_token="t")
    )
    assert route(cache, notification([text_change("9999999", "x")])) is Refused.UNKNOWN_CHANNEL
    assert route(cache, notification([account_change()])) is Refused.UNKNOWN_CHANNEL
    disabled = cache_of(
        channel_secret(
            new_instance_id(), "1111111", app_secret=SECRET, verify_token="t", enabled=False
        )
    )
    assert route(disabled, notification([text_change("1111111", "x")])) is Refused.UNKNOWN_CHANNEL


def test_a_destination_without_an_app_secret_is_an_unknown_channel() -> None:
    cache = cache_of(
        channel_secret(new_instance_id(), "1111111", app_secret=None, verify_token="t")
    )
    assert route(cache, notification([text_change("1111111", "x")])) is Refused.UNKNOWN_CHANNEL


def test_every_destination_must_vouch_for_the_body() -> None:
    mine, victim = new_instance_id(), new_instance_id()
    cache = cache_of(
        channel_secret(mine, "1111111", app_secret="my-own-secret", verify_token="t-1"),
        channel_secret(victim, "2222222", app_secret=SECRET, verify_token="t-2"),
    )
    event = notification([text_change("1111111", "a"), text_change("2222222", "forged")])
    assert route(cache, event, app_secret="my-own-secret") is Refused.BAD_SIGNATURE
    assert route(cache, notification([text_change("1111111", "a")]), "nope") is (
        Refused.BAD_SIGNATURE
    )


def test_when_two_channels_claim_a_phone_number_the_signature_picks() -> None:
    right, wrong = new_instance_id(), new_instance_id()
    cache = cache_of(
        channel_secret(right, "1111111", app_secret=SECRET, verify_token="t-1"),
        channel_secret(wrong, "1111111", app_secret="another-secret", verify_token="t-2"),
    )
    routed = route(cache, notification([text_change("1111111", "a")]))
    assert not isinstance(routed, Refused)
    assert [channel.instance_id for channel, _, _ in routed] == [right]
    assert route(cache, notification([text_change("1111111", "a")]), "neither") is (
        Refused.BAD_SIGNATURE
    )
    same = cache_of(
        channel_secret(right, "1111111", app_secret=SECRET, verify_token="t-1"),
        channel_secret(wrong, "1111111", app_secret=SECRET, verify_token="t-2"),
    )
    # Both vouch: no way to choose, so the changes go nowhere.
    assert route(same, notification([text_change("1111111", "a")])) is Refused.UNKNOWN_CHANNEL

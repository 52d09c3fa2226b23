"""Meta's webhook rules at their edges: what a query, an event or a routing key that is not
quite right becomes (issue 14: each found by a mutant that no other test noticed)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest
from channel_api.receiver.channel_cache import ChannelCache, channel_from_secret
from channel_api.receiver.webhook_rules import (
    MalformedEvent,
    Subscription,
    changes_by_phone,
    event_routes,
    event_subset,
    parse_event,
    signature_valid,
    verify_token_matches,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from whatsapp_channel.channel_secret import INSTANCE_LABEL

from tests.support.payloads import channel_secret, fill_cache, new_instance_id


def test_an_empty_challenge_is_still_a_challenge():
    subscription = Subscription(b"hub.mode=subscribe&hub.verify_token=t&hub.challenge=")
    assert subscription.challenge == ""
    assert subscription.well_formed


def test_the_first_of_repeated_parameters_counts():
    subscription = Subscription(
        b"hub.mode=subscribe&hub.mode=other&hub.verify_token=a&hub.verify_token=b"
    )
    assert (subscription.mode, subscription.verify_token) == ("subscribe", b"a")


def test_a_missing_verify_token_is_empty_and_not_well_formed():
    subscription = Subscription(b"hub.mode=subscribe&hub.challenge=1")
    assert subscription.verify_token == b""
    assert not subscription.well_formed
    assert not verify_token_matches(None, b"")
    assert not verify_token_matches(b"token", b"")


def test_query_bytes_are_latin_1_never_an_error():
    subscription = Subscription(b"hub.mode=subscribe&hub.verify_token=\xff&hub.challenge=1")
    assert subscription.verify_token == "\xff".encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "body is not JSON"),
        (b"\xff", "body is not JSON"),
        (b"[]", "no entry list"),
        (b'{"entry": {}}', "no entry list"),
        (b'{"entry": [1]}', "an entry is not an object with a changes list"),
        (b'{"entry": [{"changes": {}}]}', "an entry is not an object with a changes list"),
        (b'{"entry": [{"changes": [1]}]}', "a change is not an object"),
    ],
)
def test_malformed_events_say_why(body: bytes, message: str):
    with pytest.raises(MalformedEvent) as caught:
        parse_event(body)
    assert str(caught.value) == message


def test_an_entry_without_changes_is_an_event_with_nothing_to_route():
    event = parse_event(b'{"object": "whatsapp_business_account", "entry": [{"id": "1"}]}')
    assert changes_by_phone(event) == {}


@pytest.mark.parametrize(
    "value",
    [
        [1, 2],
        "text",
        {"metadata": "not an object"},
        {"metadata": {"phone_number_id": ""}},
        {"metadata": {"phone_number_id": 106540352242922}},
        {"metadata": {}},
    ],
)
def test_a_change_without_a_usable_phone_number_id_routes_to_none(value: object):
    event = parse_event(json.dumps({"entry": [{"changes": [{"value": value}]}]}).encode())
    assert changes_by_phone(event) == {None: [(0, 0)]}


def test_a_subset_is_compact_json_in_metas_shape():
    event = {
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "1", "changes": [{"field": "a"}, {"field": "b"}]},
            {"id": "2", "changes": [{"field": "c"}]},
        ],
    }
    assert event_subset(event, [(0, 1), (1, 0)]) == (
        b'{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"b"}]},'
        b'{"id":"2","changes":[{"field":"c"}]}]}'
    )


def test_no_app_secret_never_matches():
    assert not signature_valid(None, b"{}", b"sha256=" + b"0" * 64)


def test_a_verify_token_lookup_needs_the_token_itself():
    cache = ChannelCache()
    instance = new_instance_id()
    fill_cache(
        cache, [channel_secret(instance, "106540352242922", app_secret="s", verify_token="t0k")]
    )
    assert [c.instance_id for c in cache.for_verify_token(b"t0k")] == [instance]
    assert cache.for_verify_token(b"") == ()
    assert cache.for_verify_token(b"t0K") == ()


def test_a_channel_without_a_verify_token_is_found_by_none():
    cache = ChannelCache()
    fill_cache(
        cache,
        [channel_secret(new_instance_id(), "106540352242922", app_secret="s", verify_token=None)],
    )
    assert cache.for_verify_token(b"") == ()
    assert cache.for_verify_token(b"anything") == ()


def test_removing_one_of_two_claims_leaves_the_other_routable():
    cache = ChannelCache()
    a, b = new_instance_id(), new_instance_id()
    phone = "106540352242922"
    first = channel_secret(a, phone, app_secret="sa", verify_token="ta")
    second = channel_secret(b, phone, app_secret="sb", verify_token="tb")
    fill_cache(cache, [first, second])
    assert {c.instance_id for c in cache.for_phone(phone)} == {a, b}  # ambiguous: both
    cache.apply("DELETED", first)
    assert [c.instance_id for c in cache.for_phone(phone)] == [b]
    assert cache.for_instance(a) is None
    assert cache.for_instance(b) is not None
    cache.apply("DELETED", second)
    assert cache.for_phone(phone) == ()
    cache.apply("DELETED", second)  # twice: nothing left to remove, no error
    assert len(cache) == 0


def _secret_with(**changes: object) -> dict[str, object]:
    secret = channel_secret(new_instance_id(), "106540352242922", app_secret="s", verify_token="t")
    secret["metadata"].update(changes.pop("metadata", {}))
    secret["data"].update(changes.pop("data", {}))
    return secret


def test_only_a_secret_named_after_its_instance_and_owned_by_its_channel_routes():
    """Issue 21 item 5; fails on the code before it, which routed by any Secret carrying the
    operator's labels, whatever its name or owner (anyone who may create Secrets in the
    channel namespace could silence another tenant)."""
    genuine = _secret_with()
    channel = channel_from_secret(genuine)
    assert channel is not None
    assert channel.name == channel.instance_id
    owner = genuine["metadata"]["ownerReferences"][0]  # type: ignore[index]
    forged = [
        {"name": "hand-made-copy"},
        {"ownerReferences": []},
        {"ownerReferences": [{**owner, "controller": False}]},
        {"ownerReferences": [{**owner, "name": "another-channel"}]},
        {"ownerReferences": [{**owner, "kind": "ConfigMap"}]},
        {"ownerReferences": [{**owner, "apiVersion": "example.com/v1"}]},
    ]
    for metadata in forged:
        secret = copy.deepcopy(genuine)
        secret["metadata"].update(metadata)  # type: ignore[attr-defined]
        assert channel_from_secret(secret) is None, metadata


@pytest.mark.parametrize("value", ["c2VjcmV0!", "c2Vj cmV0", 12345, ["c2VjcmV0"], ""])
def test_a_secret_value_that_is_not_strict_base64_text_fails_closed(value: object):
    channel = channel_from_secret(_secret_with(data={"app_secret": value, "verify_token": value}))
    assert channel is not None
    assert (channel.app_secret, channel.verify_token) == (None, None)


def test_an_added_secret_is_a_channel_at_once():
    cache = ChannelCache()
    secret = _secret_with()
    cache.apply("ADDED", secret)
    instance = secret["metadata"]["labels"][INSTANCE_LABEL]  # type: ignore[index]
    assert cache.for_instance(instance) is not None


# --- the fast reading of an event's routes (issue 22) ------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
# Shaped like a notification, with any JSON where Meta puts objects, lists and the id.
_PHONE = _JSON | st.sampled_from(["", "106540352242922", "1"])
_METADATA = st.fixed_dictionaries({}, optional={"phone_number_id": _PHONE}) | _JSON
_VALUE = st.fixed_dictionaries({}, optional={"metadata": _METADATA, "x": _JSON}) | _JSON
_CHANGE = st.fixed_dictionaries({}, optional={"value": _VALUE, "field": _JSON}) | _JSON
_ENTRY = st.fixed_dictionaries({}, optional={"changes": st.lists(_CHANGE, max_size=3) | _JSON})
_EVENT = st.fixed_dictionaries(
    {}, optional={"entry": st.lists(_ENTRY | _JSON, max_size=3) | _JSON, "object": _JSON}
)
# What a body may carry besides plain JSON: JSON `json` reads but msgspec may not, or not alike.
_SPLICES = st.sampled_from(
    [
        b"",
        b"NaN",
        b"Infinity",
        b'"\\ud800"',
        b'"\xff"',
        b"\xef\xbb\xbf",
        b'"\xed\xa0\x80"',
        b"1e999",
    ]
)


def _outcome(
    read: Callable[[bytes], dict[str | None, list[tuple[int, int]]]], body: bytes
) -> object:
    try:
        return read(body)
    except MalformedEvent:
        return MalformedEvent


@settings(max_examples=400, derandomize=True, deadline=None, database=None)
@given(event=_EVENT, splice=_SPLICES, where=st.integers(min_value=0), duplicate=st.booleans())
def test_the_fast_reading_of_routes_is_the_full_parse(event, splice, where, duplicate):
    """`event_routes` gives what `changes_by_phone(parse_event(...))` gives, or refuses what it
    refuses, for bodies shaped like events and bodies with what msgspec reads otherwise."""
    body = json.dumps(event, separators=(",", ":")).encode()
    if duplicate and body.startswith(b"{") and len(body) > 2:
        body = body[:-1] + b',"entry":' + body + b"}"  # a repeated key: the last one counts
    at = where % (len(body) + 1)
    for candidate in (body, body[:at] + splice + body[at:], b'{"entry":[],"x":' + splice + b"}"):
        full = _outcome(lambda b: changes_by_phone(parse_event(b)), candidate)
        assert _outcome(event_routes, candidate) == full, candidate

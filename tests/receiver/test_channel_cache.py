"""The channel cache: what a generated Secret means, and how watch events change it."""

from __future__ import annotations

from typing import Any

from channel_api.receiver.channel_cache import ChannelCache, channel_from_secret
from whatsapp_channel.channel_secret import (
    ENABLED_ANNOTATION,
    INSTANCE_LABEL,
    PHONE_NUMBER_ID_LABEL,
)

from tests.support.payloads import channel_secret, new_instance_id


def loaded(*secrets: dict[str, Any]) -> ChannelCache:
    """A cache after the watch's first list held `secrets`."""
    cache = ChannelCache()
    cache.apply("SYNC", {"items": list(secrets)})
    cache.mark_synced()
    return cache


def test_a_generated_secret_describes_its_channel():
    iid = new_instance_id()
    channel = channel_from_secret(
        channel_secret(iid, "114896151713920", app_secret="app-secret", verify_token="tok")
    )
    assert channel is not None
    assert (channel.instance_id, channel.name, channel.phone_number_id) == (
        iid,
        iid,
        "114896151713920",
    )
    assert (channel.app_secret, channel.verify_token, channel.enabled) == (
        b"app-secret",
        b"tok",
        True,
    )
    assert "app-secret" not in repr(channel)
    assert "tok" not in repr(channel)


def test_what_is_missing_fails_closed():
    iid = new_instance_id()
    secret = channel_secret(iid, "114896151713920", app_secret="s", verify_token="t")
    secret["metadata"]["annotations"].pop(ENABLED_ANNOTATION)
    secret["data"]["app_secret"] = "!!not base64!!"
    secret["data"]["verify_token"] = ""
    secret["metadata"]["labels"][PHONE_NUMBER_ID_LABEL] = "not-digits"
    channel = channel_from_secret(secret)
    assert channel is not None
    assert (channel.enabled, channel.app_secret, channel.verify_token) == (False, None, None)
    assert channel.phone_number_id is None


def test_a_secret_without_a_canonical_instance_id_is_no_channel():
    for value in (None, "Not-A-UUID", "agent.evil.example/x", new_instance_id().upper()):
        secret = channel_secret(new_instance_id(), "1234567", app_secret="s", verify_token="t")
        if value is None:
            del secret["metadata"]["labels"][INSTANCE_LABEL]
        else:
            secret["metadata"]["labels"][INSTANCE_LABEL] = value
        assert channel_from_secret(secret) is None


def test_watch_events_add_change_and_remove_channels():
    cache = ChannelCache()
    first, second = new_instance_id(), new_instance_id()
    cache.apply(
        "SYNC",
        {
            "items": [
                channel_secret(first, "1111111", app_secret="one", verify_token="token-one"),
                channel_secret(second, "2222222", app_secret="two", verify_token="token-two"),
            ]
        },
    )
    assert not cache.synced
    cache.mark_synced()
    assert cache.synced
    assert len(cache) == 2
    assert cache.for_instance(first) is cache.for_phone("1111111")[0]
    assert [c.instance_id for c in cache.for_verify_token(b"token-two")] == [second]
    assert cache.for_verify_token(b"token-tw") == ()
    assert cache.for_verify_token(b"") == ()

    # A new phone number and app secret replace the old ones everywhere.
    cache.apply(
        "MODIFIED", channel_secret(first, "3333333", app_secret="rotated", verify_token="new-tok")
    )
    channel = cache.for_instance(first)
    assert channel is not None
    assert channel.app_secret == b"rotated"
    assert cache.for_phone("1111111") == ()
    assert cache.for_phone("3333333") == (channel,)
    assert cache.for_verify_token(b"token-one") == ()
    assert cache.for_verify_token(b"new-tok") == (channel,)

    # Disabled: still known, but no lookup finds it.
    cache.apply(
        "MODIFIED",
        channel_secret(first, "3333333", app_secret="r", verify_token="new-tok", enabled=False),
    )
    assert len(cache) == 2
    assert cache.for_instance(first) is None
    assert cache.for_phone("3333333") == ()
    assert cache.for_verify_token(b"new-tok") == ()

    cache.apply("DELETED", channel_secret(second, "2222222", app_secret=None, verify_token=None))
    assert cache.for_instance(second) is None
    assert cache.for_phone("2222222") == ()
    assert len(cache) == 1

    # A fresh list (after a watch gap) drops what vanished meanwhile.
    cache.apply("SYNC", {"items": []})
    assert len(cache) == 0
    assert cache.for_verify_token(b"new-tok") == ()


def test_a_secret_that_stops_describing_a_channel_is_dropped():
    iid = new_instance_id()
    secret = channel_secret(iid, "1111111", app_secret="s", verify_token="tok-tok")
    cache = loaded(secret)
    secret["metadata"]["labels"][INSTANCE_LABEL] = "garbage"
    cache.apply("MODIFIED", secret)
    assert cache.for_instance(iid) is None
    assert len(cache) == 0


def test_a_labelled_copy_of_another_name_routes_nothing():
    """Issue 21 item 5 (fails on the code before it: the copy made the instance ambiguous,
    silencing it, and took a share of the shared URL)."""
    iid = new_instance_id()
    original = channel_secret(iid, "1111111", app_secret="a", verify_token="tok-a")
    copy = channel_secret(iid, "1111111", app_secret="b", verify_token="tok-b")
    copy["metadata"]["name"] = "hand-made-copy"
    cache = loaded(original, copy)
    channel = cache.for_instance(iid)
    assert channel is not None
    assert channel.app_secret == b"a"
    assert [c.app_secret for c in cache.for_phone("1111111")] == [b"a"]
    assert cache.for_verify_token(b"tok-b") == ()


def test_verify_tokens_are_bytes_exactly():
    iid = new_instance_id()
    cache = loaded(channel_secret(iid, "1111111", app_secret="a", verify_token="tökén"))
    assert [c.instance_id for c in cache.for_verify_token("tökén".encode())] == [iid]
    assert cache.for_verify_token("tokén".encode()) == ()

"""The cache's business-account lookup and its conflict warnings (no cluster): every enabled
number of an account is found until its Secret goes; two channels claiming one number are
named in a warning, while several numbers of one account are normal and warn nothing."""

from __future__ import annotations

import logging

import pytest
from channel_api.receiver.channel_cache import ChannelCache
from whatsapp_channel.channel_secret import secret_name

from tests.support.payloads import channel_secret, new_instance_id

WABA = "102290129340398"
CACHE_LOGGER = "channel_api.receiver.channel_cache"


def _secret(instance: str, phone: str, waba: str | None = WABA) -> dict[str, object]:
    return channel_secret(instance, phone, app_secret="app", verify_token=None, waba_id=waba)


def test_an_accounts_numbers_are_found_until_their_secrets_go() -> None:
    first, second = new_instance_id(), new_instance_id()
    cache = ChannelCache()
    cache.apply("SYNC", {"items": [_secret(first, "1065403522"), _secret(second, "1065403523")]})
    assert sorted(c.instance_id for c in cache.for_waba(WABA)) == sorted([first, second])
    cache.apply("DELETED", {"metadata": {"name": secret_name(first)}})
    assert [c.instance_id for c in cache.for_waba(WABA)] == [second]
    cache.apply("DELETED", {"metadata": {"name": secret_name(second)}})
    assert cache.for_waba(WABA) == ()


def test_an_account_without_channels_has_none() -> None:
    cache = ChannelCache()
    cache.apply("SYNC", {"items": [_secret(new_instance_id(), "1065403522", waba=None)]})
    assert cache.for_waba(WABA) == ()


def test_several_numbers_of_one_account_warn_nothing(caplog: pytest.LogCaptureFixture) -> None:
    cache = ChannelCache()
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        cache.apply(
            "SYNC",
            {"items": [_secret(new_instance_id(), f"106540352{n}") for n in range(3)]},
        )
    assert len(cache.for_waba(WABA)) == 3
    assert [r for r in caplog.records if r.name == CACHE_LOGGER] == []


def test_two_channels_claiming_one_number_are_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = sorted([new_instance_id(), new_instance_id()])
    cache = ChannelCache()
    with caplog.at_level(logging.WARNING, logger=CACHE_LOGGER):
        cache.apply("SYNC", {"items": [_secret(first, "1065403522", waba=None)]})
        assert [r for r in caplog.records if r.name == CACHE_LOGGER] == []
        cache.apply("ADDED", _secret(second, "1065403522", waba=None))
    (warning,) = [r for r in caplog.records if r.name == CACHE_LOGGER]
    assert warning.levelno == logging.WARNING
    assert f"{secret_name(first)}, {secret_name(second)}" in warning.getMessage()

"""What the channel Secret's readers make of Secrets the operator did not write as it
writes them (no cluster): a copy under another name or with a non-canonical instance id is
not generated, another owner kind is not the channel, a business-account label that is no
Meta id is no account, and a known account is written as a label."""

from __future__ import annotations

import copy
import uuid
from dataclasses import replace

from whatsapp_channel.channel_secret import (
    INSTANCE_LABEL,
    WABA_ID_LABEL,
    ChannelSecret,
    build,
    is_generated,
    parse,
)

INSTANCE = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
CHANNEL = ChannelSecret(
    namespace="whatsapp-channels",
    channel=INSTANCE,
    channel_uid=str(uuid.uuid4()),
    instance_id=INSTANCE,
    phone_number_id="106540352242922",
    enabled=True,
    access_token="EAAG-access-token",
    app_secret="app-secret",
    verify_token="verify-token",
    waba_id="102290129340398",
)


def test_the_business_account_is_a_label_read_back() -> None:
    secret = build(CHANNEL)
    assert secret["metadata"]["labels"][WABA_ID_LABEL] == "102290129340398"
    parsed = parse(secret)
    assert parsed is not None
    assert parsed.waba_id == "102290129340398"


def test_a_business_account_label_that_is_no_meta_id_is_no_account() -> None:
    secret = build(CHANNEL)
    secret["metadata"]["labels"][WABA_ID_LABEL] = "acme-account"
    parsed = parse(secret)
    assert parsed is not None
    assert parsed.waba_id is None


def test_only_a_channel_owner_names_the_channel() -> None:
    secret = build(CHANNEL)
    other = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "other", "uid": "u-1"}
    secret["metadata"]["ownerReferences"].insert(0, other)
    parsed = parse(secret)
    assert parsed is not None
    assert (parsed.channel, parsed.channel_uid) == (CHANNEL.channel, CHANNEL.channel_uid)


def test_a_copy_under_another_name_is_not_generated() -> None:
    secret = build(CHANNEL)
    assert is_generated(secret)
    renamed = copy.deepcopy(secret)
    renamed["metadata"]["name"] = "whatsapp-copy"
    assert not is_generated(renamed)


def test_a_non_canonical_instance_id_is_not_generated_even_when_named_after_it() -> None:
    loose = INSTANCE.upper()
    secret = build(replace(CHANNEL, channel=loose))
    secret["metadata"]["labels"][INSTANCE_LABEL] = loose
    assert secret["metadata"]["name"] == f"whatsapp-{loose}"
    assert not is_generated(secret)

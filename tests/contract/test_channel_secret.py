"""The channel Secret, the operator-to-receiver interface: what `build` writes, `parse` reads
back exactly, and what is not a channel's Secret is refused."""

from __future__ import annotations

import copy
import uuid
from dataclasses import replace

import pytest
from whatsapp_channel.channel_secret import (
    ENABLED_ANNOTATION,
    INSTANCE_LABEL,
    PHONE_NUMBER_ID_LABEL,
    SELECTOR,
    WEBHOOK_MODE_ANNOTATION,
    ChannelSecret,
    build,
    instance_of,
    parse,
    secret_name,
)

INSTANCE = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
FULL = ChannelSecret(
    namespace="whatsapp-channels",
    channel=INSTANCE,
    channel_uid=str(uuid.uuid4()),
    instance_id=INSTANCE,
    phone_number_id="106540352242922",
    enabled=True,
    access_token="EAAG-access-token",
    app_secret="app-secret-ünïcode",
    verify_token="verify-token",
)


@pytest.mark.parametrize(
    "secret",
    [
        FULL,
        replace(FULL, enabled=False),
        replace(FULL, phone_number_id=None),
        replace(FULL, access_token=None, app_secret=None, verify_token=None),
        replace(FULL, channel_uid=None),  # no owner: the channel is the instance id
        replace(FULL, namespace="other", channel="not-the-instance-id"),
        replace(FULL, webhook_mode="managed"),
        replace(FULL, webhook_mode="manual"),
    ],
    ids=[
        "full",
        "disabled",
        "no-phone",
        "no-credentials",
        "no-owner",
        "other-owner",
        "managed",
        "manual",
    ],
)
def test_parse_reads_back_what_build_wrote(secret: ChannelSecret) -> None:
    built = build(secret)
    assert parse(built) == secret
    assert parse(copy.deepcopy(built)) == secret


def test_the_secret_is_named_labelled_and_owned_as_the_receiver_selects() -> None:
    built = build(FULL)
    metadata = built["metadata"]
    assert metadata["name"] == secret_name(INSTANCE) == f"whatsapp-{INSTANCE}"
    for part in SELECTOR.split(","):  # label=value, or a label that must exist
        label, _, value = part.partition("=")
        assert label in metadata["labels"]
        assert not value or metadata["labels"][label] == value
    assert instance_of(built) == INSTANCE
    (owner,) = metadata["ownerReferences"]
    assert (owner["uid"], owner["controller"]) == (FULL.channel_uid, True)
    assert set(built["data"]) == {"access_token", "app_secret", "verify_token"}
    for credential in ("EAAG-access-token", "app-secret-ünïcode", "verify-token"):
        assert credential not in repr(FULL)


def test_the_data_hash_follows_the_credentials_only() -> None:
    def hashed(secret: ChannelSecret) -> str:
        return str(build(secret)["metadata"]["annotations"]["whatsapp.hydracore.io/data-hash"])

    assert hashed(FULL) == hashed(replace(FULL, enabled=False, phone_number_id=None))
    assert hashed(FULL) != hashed(replace(FULL, app_secret="rotated"))
    assert hashed(FULL).startswith("sha256:")


def test_what_is_not_a_channel_s_secret_parses_to_none() -> None:
    for value in (None, "Not-A-UUID", "agent.evil.example/x", INSTANCE.upper()):
        secret = build(FULL)
        if value is None:
            del secret["metadata"]["labels"][INSTANCE_LABEL]
        else:
            secret["metadata"]["labels"][INSTANCE_LABEL] = value
        assert parse(secret) is None


def test_what_is_missing_or_malformed_reads_as_missing() -> None:
    secret = build(FULL)
    secret["metadata"]["annotations"].pop(ENABLED_ANNOTATION)
    secret["metadata"]["labels"][PHONE_NUMBER_ID_LABEL] = "not-digits"
    secret["data"]["app_secret"] = "!!not base64!!"
    secret["data"]["verify_token"] = ""
    secret["data"]["access_token"] = "/w=="  # base64 of a byte that is not UTF-8
    parsed = parse(secret)
    assert parsed is not None
    assert (parsed.enabled, parsed.phone_number_id) == (False, None)
    assert (parsed.access_token, parsed.app_secret, parsed.verify_token) == (None, None, None)


def test_a_secret_without_an_instance_label_names_no_instance() -> None:
    """The operator's drift repair skips such a Secret: no instance, not the text "None"."""
    for labels in ({}, {INSTANCE_LABEL: ""}, {INSTANCE_LABEL: None}):
        secret = build(FULL)
        secret["metadata"]["labels"] = labels
        assert instance_of(secret) is None
    assert instance_of({}) is None


def test_the_webhook_mode_is_an_annotation_and_only_managed_stops_challenge_notes() -> None:
    """The receiver notes Meta's challenges in status unless the operator registers the
    webhook itself; a Secret that does not say (an older operator's) keeps the notes."""
    assert WEBHOOK_MODE_ANNOTATION == "whatsapp.hydracore.io/webhook-mode"
    assert WEBHOOK_MODE_ANNOTATION not in build(FULL)["metadata"]["annotations"]
    for mode, notes in (("managed", False), ("manual", True)):
        built = build(replace(FULL, webhook_mode=mode))  # type: ignore[arg-type]
        assert built["metadata"]["annotations"][WEBHOOK_MODE_ANNOTATION] == mode
        parsed = parse(built)
        assert parsed is not None
        assert (parsed.webhook_mode, parsed.notes_challenges) == (mode, notes)
    assert FULL.notes_challenges
    for unknown in ("Managed", "auto", "", None):
        built = build(replace(FULL, webhook_mode="managed"))
        built["metadata"]["annotations"][WEBHOOK_MODE_ANNOTATION] = unknown
        parsed = parse(built)
        assert parsed is not None
        assert (parsed.webhook_mode, parsed.notes_challenges) == (None, True)


def test_the_webhook_mode_is_not_part_of_the_data_hash() -> None:
    """The data hash fingerprints the credentials; the mode is compared as an annotation."""

    def hashed(secret: ChannelSecret) -> str:
        return str(build(secret)["metadata"]["annotations"]["whatsapp.hydracore.io/data-hash"])

    assert hashed(FULL) == hashed(replace(FULL, webhook_mode="managed"))

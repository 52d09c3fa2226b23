"""Meta's rules as pure functions, checked against Meta's own description of them."""

from __future__ import annotations

import json

import pytest
from channel_api.receiver.settings import ReceiverSettings
from channel_api.receiver.webhook_rules import (
    MalformedEvent,
    Subscription,
    changes_by_phone,
    event_subset,
    parse_event,
    signature_valid,
)

from tests.support.payloads import (
    account_change,
    meta_bytes,
    meta_signature,
    notification,
    text_change,
)


def test_signature_is_hmac_sha256_of_the_raw_bytes_in_lower_hex():
    # Known vector: HMAC-SHA256(key="secret", msg="test").
    assert meta_signature(b"secret", b"test") == (
        "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
    )
    header = meta_signature(b"secret", b"test").encode()
    assert signature_valid(b"secret", b"test", header)
    assert signature_valid(b"secret", b"test", header.upper())
    assert not signature_valid(b"secret", b"test ", header)
    assert not signature_valid(None, b"test", header)
    # No secret is no key: even a signature made with the all-zero stand-in fails.
    assert not signature_valid(None, b"test", meta_signature(b"\x00" * 32, b"test").encode())


def test_subscription_query():
    sub = Subscription(b"hub.mode=subscribe&hub.verify_token=a%2Bb%20c&hub.challenge=123")
    assert (sub.mode, sub.verify_token, sub.challenge, sub.well_formed) == (
        "subscribe",
        b"a+b c",
        "123",
        True,
    )
    assert not Subscription(b"hub.mode=subscribe&hub.verify_token=&hub.challenge=1").well_formed
    assert not Subscription(b"hub.mode=subscribe&hub.verify_token=x").well_formed
    first = Subscription(b"hub.mode=subscribe&hub.mode=x&hub.verify_token=t&hub.challenge=1")
    assert first.mode == "subscribe"


def test_changes_are_routed_by_phone_number_id():
    event = parse_event(
        meta_bytes(
            notification(
                [text_change("111111", "a"), account_change()],
                [text_change("222222", "b"), text_change("111111", "c")],
            )
        )
    )
    assert changes_by_phone(event) == {
        "111111": [(0, 0), (1, 1)],
        None: [(0, 1)],
        "222222": [(1, 0)],
    }
    subset = json.loads(event_subset(event, [(1, 1), (0, 0)]))
    assert subset["object"] == "whatsapp_business_account"
    assert [e["id"] for e in subset["entry"]] == ["102290129340398", "102290129340398"]
    assert [
        c["value"]["messages"][0]["text"]["body"] for e in subset["entry"] for c in e["changes"]
    ] == ["a", "c"]


def test_a_subset_keeps_metas_escaped_form():
    event = parse_event(meta_bytes(notification([text_change("111111", "äöå")])))
    assert b"\\u00e4\\u00f6\\u00e5" in event_subset(event, [(0, 0)])


@pytest.mark.parametrize("body", [b"nope", b"[1]", b"{}", b'{"entry":[{"changes":"x"}]}'])
def test_malformed(body: bytes):
    with pytest.raises(MalformedEvent):
        parse_event(body)


def test_settings(tmp_path, monkeypatch):
    secret_file = tmp_path / "forward-secret"
    secret_file.write_bytes(b"0123456789abcdef0123\n")
    monkeypatch.setenv("WA_RECEIVER_FORWARD_URL_TEMPLATE", "http://agent-{instance_id}.t.svc/wa")
    monkeypatch.setenv("WA_RECEIVER_FORWARD_SECRET_FILE", str(secret_file))
    monkeypatch.setenv("WA_RECEIVER_STATUS_WRITE_INTERVAL_SECONDS", "5")
    settings = ReceiverSettings()
    assert settings.namespace == "whatsapp-channels"
    assert settings.status_write_interval_seconds == 5
    assert settings.forward_secret() == b"0123456789abcdef0123"

    for template in (
        "http://agent.t.svc/wa",
        "http://{instance_id}/{other}",
        "ftp://{instance_id}",
    ):
        monkeypatch.setenv("WA_RECEIVER_FORWARD_URL_TEMPLATE", template)
        with pytest.raises(ValueError, match="instance_id"):
            ReceiverSettings()
    monkeypatch.setenv("WA_RECEIVER_FORWARD_URL_TEMPLATE", "https://{instance_id}.agents/wa")
    secret_file.write_bytes(b"short\n")
    with pytest.raises(ValueError, match="fewer than"):
        ReceiverSettings().forward_secret()

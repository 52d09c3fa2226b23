"""The forward proof, pinned to the documented formula by a vector computed outside the
product's code: what every instance implements must keep verifying (issue 14)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest
from whatsapp_channel.forward_proof import ForwardSigner, forward_proof, forward_proof_valid

SECRET = b"a-forward-secret-shared-with-the-instances"
INSTANCE = "0b7e4f1c-5d0a-4c7e-9d3e-2f1a6b8c9d01"
TIMESTAMP = 1700000000
BODY = b'{"object":"whatsapp_business_account","entry":[]}'
# Computed in a shell with openssl, not with this project's code:
#   M='1700000000.0b7e4f1c-5d0a-4c7e-9d3e-2f1a6b8c9d01.'
#   B='{"object":"whatsapp_business_account","entry":[]}'
#   printf '%s' "$M$B" | openssl dgst -sha256 -hmac 'a-forward-secret-shared-with-the-instances'
VECTOR = "v1=977b31cac74d8e53fcdee6c0645da91df7084d43194bf5d89a0b19a5452271ba"
# The same with an empty body (the message is "<timestamp>.<instance id>." alone).
EMPTY_BODY_VECTOR = "v1=a4c4626ff545964d50fc2ec4f0b9c65b6dc3c720f1cdcf274497971bab0acf92"


def test_the_proof_is_the_documented_formula():
    assert forward_proof(SECRET, TIMESTAMP, INSTANCE, BODY) == VECTOR
    assert forward_proof(SECRET, TIMESTAMP, INSTANCE, b"") == EMPTY_BODY_VECTOR


def test_the_sender_signs_with_the_documented_formula():
    sender = ForwardSigner(SECRET)  # what the forwarder signs each event with
    assert sender.sign(TIMESTAMP, INSTANCE, BODY) == VECTOR
    # keyed once and copied per event: a second proof is not mixed into the first
    assert sender.sign(TIMESTAMP, INSTANCE, b"") == EMPTY_BODY_VECTOR
    assert sender.sign(TIMESTAMP, INSTANCE, BODY) == VECTOR


def _valid(**overrides: object) -> bool:
    given: dict[str, Any] = {
        "instance_id": INSTANCE,
        "body": BODY,
        "timestamp": str(TIMESTAMP),
        "signature": VECTOR,
        "now": TIMESTAMP + 1.0,
    }
    given.update(overrides)
    return forward_proof_valid(SECRET, **given)


def test_an_instance_accepts_the_vector():
    assert _valid()


@pytest.mark.parametrize(
    ("age", "accepted"),
    [
        (0, True),
        (299.5, True),
        (300, True),
        (300.5, False),
        (3600, False),
        (-299, True),
        (-301, False),
    ],
)
def test_timestamps_older_or_newer_than_five_minutes_are_refused(age: float, accepted: bool):
    assert _valid(now=TIMESTAMP + age) is accepted


def test_the_tolerance_can_be_narrowed():
    assert _valid(now=TIMESTAMP + 60, tolerance_seconds=60)
    assert not _valid(now=TIMESTAMP + 61, tolerance_seconds=60)


def test_without_now_the_clock_decides():
    now = int(time.time())
    fresh = forward_proof(SECRET, now, INSTANCE, BODY)
    assert forward_proof_valid(
        SECRET, instance_id=INSTANCE, body=BODY, timestamp=str(now), signature=fresh
    )
    old = now - 3600
    stale = forward_proof(SECRET, old, INSTANCE, BODY)
    assert not forward_proof_valid(
        SECRET, instance_id=INSTANCE, body=BODY, timestamp=str(old), signature=stale
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"instance_id": "5d0e4c6a-1b2c-4d3e-8f90-a1b2c3d4e5f6"},  # replayed to another instance
        {"body": BODY + b" "},
        {"timestamp": str(TIMESTAMP + 1)},
        {"signature": VECTOR.removeprefix("v1=")},
        {"signature": "v2=" + VECTOR.removeprefix("v1=")},
        {"signature": VECTOR.upper()},
        {"signature": VECTOR[:-1]},
        {"signature": ""},
        {"signature": None},
        {"timestamp": None},
        {"timestamp": ""},
        {"timestamp": "-1700000000"},
        {"timestamp": "1.7e9"},
        {"timestamp": " 1700000000"},
    ],
)
def test_anything_else_is_refused(overrides: dict[str, object]):
    assert not _valid(**overrides)


def test_another_secret_is_refused():
    other = hmac.new(b"another secret", f"{TIMESTAMP}.{INSTANCE}.".encode() + BODY, hashlib.sha256)
    assert not _valid(signature="v1=" + other.hexdigest())


def test_a_signature_that_is_not_text_is_refused_not_an_error():
    assert not _valid(signature="v1=\udcff" + VECTOR[4:])


@pytest.mark.parametrize(("digits", "accepted"), [(15, True), (16, False)])
def test_a_timestamp_of_more_than_15_digits_is_refused_unread(digits: int, accepted: bool):
    """The length is bounded before `int()` reads the header; an instance whose clock says
    the same time (only `now` can) shows the bound itself, not the freshness check."""
    stamp = 10 ** (digits - 1)
    signature = forward_proof(SECRET, stamp, INSTANCE, BODY)
    assert _valid(timestamp=str(stamp), signature=signature, now=float(stamp)) is accepted

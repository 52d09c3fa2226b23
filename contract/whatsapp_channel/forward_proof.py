"""The forward proof: how an instance knows an event came from the receiver.

Every forwarded event carries `X-Receiver-Timestamp: <unix seconds>` and
`X-Receiver-Signature: v1=<hex HMAC-SHA256(forward secret, "<timestamp>.<instance id>." + body)>`.
The instance id inside the MAC means an event for one instance cannot be replayed to
another that shares the key; the timestamp lets the instance refuse old replays.
The receiver signs (`ForwardSigner`); an instance checks with `forward_proof_valid`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Receiver-Timestamp"
SIGNATURE_HEADER = "X-Receiver-Signature"
# Which instance the event is for (the URL says it too; this is for the instance's logs).
INSTANCE_HEADER = "X-WhatsApp-Instance-Id"
VERSION = "v1="
# How old a timestamp an instance accepts.
TOLERANCE_SECONDS = 300.0


class ForwardSigner:
    """Signs with one forward secret, keyed once (the hot path copies the keyed state)."""

    def __init__(self, secret: bytes) -> None:
        self._key = hmac.new(secret, digestmod=hashlib.sha256)

    def sign(self, timestamp: int, instance_id: str, body: bytes) -> str:
        mac = self._key.copy()
        mac.update(f"{timestamp}.{instance_id}.".encode())
        mac.update(body)
        return VERSION + mac.hexdigest()


def forward_proof(secret: bytes, timestamp: int, instance_id: str, body: bytes) -> str:
    """The `X-Receiver-Signature` value for one event."""
    return ForwardSigner(secret).sign(timestamp, instance_id, body)


def forward_proof_valid(
    secret: bytes,
    *,
    instance_id: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now: float | None = None,
    tolerance_seconds: float = TOLERANCE_SECONDS,
) -> bool:
    """What an instance checks: a fresh timestamp and a matching MAC, in constant time."""
    # str.isdigit() is true of "²" and other non-ASCII digits that int() refuses.
    if not timestamp or not signature or not _is_unix_seconds(timestamp):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    expected = forward_proof(secret, int(timestamp), instance_id, body)
    return hmac.compare_digest(expected.encode(), signature.encode(errors="replace"))


def _is_unix_seconds(timestamp: str) -> bool:
    return len(timestamp) <= 15 and timestamp.isascii() and timestamp.isdigit()

"""Meta's webhook rules as pure functions: the challenge, the signature, the event's shape.

Meta signs the raw body it sends (non-ASCII escaped as `\\u00e4`, lower-case hex), so the
signature is checked over the bytes as received, never over re-encoded JSON.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec

SIGNATURE_HEADER = b"x-hub-signature-256"
_SIGNATURE_PREFIX = b"sha256="
# Used when there is no channel (or no app secret) so a refusal costs what a check costs.
_NO_KEY = b"\x00" * 32

# Where a change is addressed: entry[i].changes[j].value.metadata.phone_number_id.
ChangeRef = tuple[int, int]


class MalformedEvent(ValueError):
    """The body is not JSON, or not shaped like a WhatsApp Business Account notification."""


def meta_signature(app_secret: bytes, body: bytes) -> bytes:
    """HMAC-SHA256 of `body` with `app_secret`, lower-case hex: what Meta puts after `sha256=`
    in `X-Hub-Signature-256`, and what the receiver puts there for its instances."""
    return hmac.digest(app_secret, body, "sha256").hex().encode()


def signature_matches(signature: bytes, header: bytes) -> bool:
    """Constant-time: whether an `X-Hub-Signature-256` header carries `signature`
    (`meta_signature`'s)."""
    return hmac.compare_digest(_SIGNATURE_PREFIX + signature, header.strip().lower())


def checked_signature(app_secret: bytes | None, body: bytes, header: bytes) -> bytes | None:
    """`meta_signature(app_secret, body)` when the `X-Hub-Signature-256` header carries it
    (checked in constant time), else None; no secret never matches. The receiver forwards
    Meta's bytes with it: one HMAC checks and signs."""
    expected = meta_signature(app_secret or _NO_KEY, body)
    return expected if signature_matches(expected, header) and app_secret is not None else None


def signature_valid(app_secret: bytes | None, body: bytes, header: bytes) -> bool:
    """Constant-time check of an `X-Hub-Signature-256` header; no secret never matches."""
    return checked_signature(app_secret, body, header) is not None


def refuse_in_constant_time(body: bytes) -> None:
    """Spend a signature check's time, so an unknown channel answers as slowly as a bad one."""
    hmac.digest(_NO_KEY, body, "sha256")


def verify_token_matches(expected: bytes | None, given: bytes) -> bool:
    return expected is not None and hmac.compare_digest(expected, given)


class Subscription:
    """The query of Meta's verification GET: hub.mode, hub.verify_token, hub.challenge."""

    __slots__ = ("challenge", "mode", "verify_token")

    def __init__(self, query_string: bytes) -> None:
        params: dict[str, str] = {}
        for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            params.setdefault(key, value)
        self.mode = params.get("hub.mode")
        self.verify_token = params.get("hub.verify_token", "").encode()
        self.challenge = params.get("hub.challenge")

    @property
    def well_formed(self) -> bool:
        return self.mode == "subscribe" and bool(self.verify_token) and self.challenge is not None


def parse_event(body: bytes) -> dict[str, Any]:
    """The notification as JSON: an object whose `entry` is a list of objects, each with a
    list of `changes` objects."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nesting: RecursionError
        raise MalformedEvent("body is not JSON") from exc
    if not isinstance(event, dict) or not isinstance(event.get("entry"), list):
        raise MalformedEvent("no entry list")
    for entry in event["entry"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes", []), list):
            raise MalformedEvent("an entry is not an object with a changes list")
        if not all(isinstance(change, dict) for change in entry.get("changes", [])):
            raise MalformedEvent("a change is not an object")
    return event


class _Metadata(msgspec.Struct):
    phone_number_id: str | None = None


class _Value(msgspec.Struct):
    metadata: _Metadata | None = None


class _Change(msgspec.Struct):
    value: _Value | None = None


class _Entry(msgspec.Struct):
    changes: list[_Change] = []


class _Event(msgspec.Struct):
    entry: list[_Entry]


# The path to each change's phone number id, decoded; the rest of the event checked as JSON
# and skipped.
_ROUTES = msgspec.json.Decoder(_Event)


def event_routes(body: bytes) -> dict[str | None, list[ChangeRef]]:
    """`changes_by_phone(parse_event(body))`, raising MalformedEvent as `parse_event` does, but
    without building the event when it has the common shape. Whatever the fast reading does
    not take (another shape, a phone number id that is not a string, JSON that msgspec reads
    differently from `json`: NaN, a BOM, lone surrogates) is left to `parse_event` to decide."""
    try:
        body.decode()  # `json` refuses invalid UTF-8 anywhere, msgspec only where it decodes
        event = _ROUTES.decode(body)
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return changes_by_phone(parse_event(body))
    routes: dict[str | None, list[ChangeRef]] = {}
    for i, entry in enumerate(event.entry):
        for j, change in enumerate(entry.changes):
            metadata = change.value.metadata if change.value is not None else None
            phone = metadata.phone_number_id if metadata is not None else None
            routes.setdefault(phone or None, []).append((i, j))
    return routes


def _phone_number_id(change: Mapping[str, Any]) -> str | None:
    value = change.get("value")
    metadata = value.get("metadata") if isinstance(value, dict) else None
    phone = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    return phone if isinstance(phone, str) and phone else None


def changes_by_phone(event: Mapping[str, Any]) -> dict[str | None, list[ChangeRef]]:
    """Each change of a parsed event under the phone number id it is addressed to; changes
    with none (account-level fields such as `account_update`) sit under None."""
    routes: dict[str | None, list[ChangeRef]] = {}
    for i, entry in enumerate(event["entry"]):
        for j, change in enumerate(entry.get("changes", [])):
            routes.setdefault(_phone_number_id(change), []).append((i, j))
    return routes


def event_subset(event: Mapping[str, Any], refs: list[ChangeRef]) -> bytes:
    """The notification reduced to `refs`, in Meta's shape and Meta's ASCII-escaped JSON:
    what one instance gets when a batch also holds other channels' changes."""
    keep: dict[int, list[int]] = {}
    for i, j in refs:
        keep.setdefault(i, []).append(j)
    entries = []
    for i, js in sorted(keep.items()):
        entry = event["entry"][i]
        entries.append({**entry, "changes": [entry["changes"][j] for j in sorted(js)]})
    return json.dumps({**event, "entry": entries}, separators=(",", ":")).encode()

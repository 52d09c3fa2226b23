"""Where an event posted to the shared URL goes: a pure function of the event, its signature
and the channels' lookup, so the rule is tested without ASGI.

Each change is routed by `value.metadata.phone_number_id` to the one enabled channel that
claims that phone number (several claims: the signature picks; still several: dropped).
Every destination must vouch for the body with its own app secret, so a tenant's app secret
cannot carry changes into another tenant's channel. A channel gets only its own changes,
with their signature by its own app secret (Meta's HMAC, computed here, reused when the
channel gets the whole body).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping

from .channel_cache import Channel
from .webhook_rules import (
    ChangeRef,
    MalformedEvent,
    checked_signature,
    event_subset,
    meta_signature,
    parse_event,
    refuse_in_constant_time,
    signature_valid,
)

log = logging.getLogger(__name__)


class Refused(enum.Enum):
    UNKNOWN_CHANNEL = "unknown_channel"  # no enabled channel (with an app secret) to go to
    BAD_SIGNATURE = "bad_signature"  # a destination's app secret did not sign the body
    MALFORMED = "malformed"  # nested deeper than a part of it can be written back


def route_shared_event(
    routes: Mapping[str | None, list[ChangeRef]],
    body: bytes,
    signature: bytes,
    channels_for_phone: Callable[[str], tuple[Channel, ...]],
) -> list[tuple[Channel, bytes, bytes]] | Refused:
    """Each destination channel with the body it gets and that body's `meta_signature` by the
    channel's app secret, or why the event goes nowhere.
    `routes` are `body`'s changes by phone number id (`webhook_rules.event_routes`); the body is
    parsed whole only when it has to be split."""
    targets: list[tuple[Channel, list[ChangeRef]]] = []
    for phone, refs in routes.items():
        if phone is None:
            continue  # account-level changes name no phone number: no route
        candidates = channels_for_phone(phone)
        if len(candidates) > 1:  # a misconfiguration: let the signature pick
            candidates = tuple(
                c for c in candidates if signature_valid(c.app_secret, body, signature)
            )
            if not candidates:
                return Refused.BAD_SIGNATURE
            if len(candidates) > 1:
                log.error("phone number %s has several channels; changes dropped", phone)
                continue
        if candidates:
            targets.append((candidates[0], refs))
    if not targets:
        refuse_in_constant_time(body)
        return Refused.UNKNOWN_CHANNEL
    verdicts: dict[bytes, bytes | None] = {}  # app secret: the body's signature, None if bad
    # Each destination with its app secret and the body's signature by it.
    signed: list[tuple[Channel, list[ChangeRef], bytes, bytes]] = []
    for channel, refs in targets:
        secret = channel.app_secret
        if secret is None:
            return Refused.UNKNOWN_CHANNEL
        if secret not in verdicts:
            verdicts[secret] = checked_signature(secret, body, signature)
        checked = verdicts[secret]
        if checked is None:
            log.info("refused a shared event for phone %s: bad signature", channel.phone_number_id)
            return Refused.BAD_SIGNATURE
        signed.append((channel, refs, secret, checked))
    routed = sum(len(refs) for _, refs in targets)
    total = sum(len(refs) for refs in routes.values())
    if routed < total:
        log.info("dropped changes for unknown, disabled or no phone numbers")
    if len(signed) == 1 and routed == total:
        channel, _, _, checked = signed[0]
        return [(channel, body, checked)]  # the whole event, as Meta signed it
    try:
        event = parse_event(body)
        parts = [
            (channel, event_subset(event, refs), secret) for channel, refs, secret, _ in signed
        ]
    except (MalformedEvent, RecursionError):
        return Refused.MALFORMED
    return [(channel, part, meta_signature(secret, part)) for channel, part, secret in parts]

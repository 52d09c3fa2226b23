"""Whose a phone number id is, when several channels of a namespace name it: the oldest.

One rule for the facade (which answers 409 before writing) and the operator (which gives a
younger claimant no Secret, so the receiver never routes to it). Oldest, not newest, so a
working channel is never taken over by a newcomer; by creationTimestamp, which the apiserver
sets and nobody can write. creationTimestamp counts seconds: within one second the channel
that already holds the number (the operator knows: it wrote that channel's Secret) keeps it,
then the name decides.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Sorts after any RFC 3339 time: a channel not created yet is younger than every other.
NOT_CREATED = "~"


@dataclass(frozen=True, order=True)
class Claim:
    """A channel that names a phone number id; ordered oldest first (RFC 3339 in UTC sorts
    as text in time order)."""

    created: str
    name: str


def claim_of(body: Mapping[str, Any]) -> tuple[str, Claim] | None:
    """(phone number id, claim) of one WhatsAppChannel object; None without a number."""
    metadata = body.get("metadata") or {}
    phone = (body.get("spec") or {}).get("phoneNumberId")
    if not isinstance(phone, str) or not phone:
        return None
    created = str(metadata.get("creationTimestamp") or NOT_CREATED)
    return phone, Claim(created, str(metadata.get("name") or ""))


def owner(claims: Iterable[Claim], holders: Collection[str] = ()) -> Claim | None:
    """The claim that holds the number: the oldest; in one second, one of `holders` (the
    channels that hold it now), then the first by name."""
    return min(claims, key=lambda c: (c.created, c.name not in holders, c.name), default=None)

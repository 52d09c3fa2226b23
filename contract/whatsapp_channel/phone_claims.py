"""Whose a phone number id is, when several channels of a namespace name it.

One rule for the facade (which answers 409 before writing) and the operator (which gives a
losing claimant no Secret, so the receiver never routes to it). A claim carries its own age
and proof: the operator records in `status.phoneClaim` ({phoneNumberId, since}) the moment a
claim was proven (Meta accepted the channel's credentials for that number; without Meta, its
Secret was written), and only the operator may write that status field. So:

1. a claimant Meta refuses (CredentialsValid False for its generation) yields at once, and a
   squatter with bad credentials cannot block the real owner;
2. the channel whose Secret holds the number keeps it (the operator knows; the facade not);
3. a proven claim beats one not proven yet, and the older proof wins; a `phoneNumberId`
   change is a new claim (the record names the old number), never as old as the channel;
4. claims not proven yet go by creationTimestamp (a channel that moved from a proven number:
   not created yet), then by name.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from whatsapp_channel.model import CREDENTIALS_VALID, find_condition

# Sorts after any RFC 3339 time: a claim made now is younger than every other.
NOT_CREATED = "~"
# The status field that records a proven claim, and its keys.
STATUS_FIELD = "phoneClaim"


@dataclass(frozen=True)
class Claim:
    """One channel's claim on a number: `since` is when it was proven (proven) or when the
    channel was created (not proven: NOT_CREATED for a channel that moved numbers)."""

    name: str
    since: str = NOT_CREATED
    proven: bool = False
    refused: bool = False


def claim_of(body: Mapping[str, Any]) -> tuple[str, Claim] | None:
    """(phone number id, claim) of one WhatsAppChannel object; None without a number."""
    metadata = body.get("metadata") or {}
    phone = (body.get("spec") or {}).get("phoneNumberId")
    if not isinstance(phone, str) or not phone:
        return None
    status = body.get("status") or {}
    record = status.get(STATUS_FIELD)
    credentials = find_condition(status.get("conditions") or [], CREDENTIALS_VALID) or {}
    refused = credentials.get("status") == "False" and credentials.get(
        "observedGeneration"
    ) == metadata.get("generation")
    name = str(metadata.get("name") or "")
    if isinstance(record, Mapping) and record.get("phoneNumberId") == phone:
        return phone, Claim(name, str(record.get("since") or NOT_CREATED), True, refused)
    created = NOT_CREATED if record else str(metadata.get("creationTimestamp") or NOT_CREATED)
    return phone, Claim(name, created, False, refused)


def claim_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a WhatsAppChannel object `claim_of` reads, and no others: what an index
    of every channel's claim needs to be handed (tens of thousands of whole channels, spec
    seals and status facts included, are hundreds of megabytes)."""
    metadata = body.get("metadata") or {}
    status = body.get("status") or {}
    credentials = find_condition(status.get("conditions") or [], CREDENTIALS_VALID)
    return {
        "metadata": {
            k: metadata[k] for k in ("name", "generation", "creationTimestamp") if k in metadata
        },
        "spec": {"phoneNumberId": (body.get("spec") or {}).get("phoneNumberId")},
        "status": {
            STATUS_FIELD: status.get(STATUS_FIELD),
            "conditions": [credentials] if credentials else [],
        },
    }


def owner(claims: Iterable[Claim], holders: Collection[str] = ()) -> Claim | None:
    """The claim that holds the number (see the module's rule); `holders`: the channels
    whose Secret holds it now."""
    return min(
        claims,
        key=lambda c: (c.refused, c.name not in holders, not c.proven, c.since, c.name),
        default=None,
    )


def proof(
    status: Mapping[str, Any], phone_number_id: str, accepted: bool, now: str
) -> dict[str, str] | None:
    """The `status.phoneClaim` to write: the recorded one while it names this number, a new
    one once the claim is `accepted`; None: nothing to write."""
    record = status.get(STATUS_FIELD)
    if isinstance(record, Mapping) and record.get("phoneNumberId") == phone_number_id:
        return None
    return {"phoneNumberId": phone_number_id, "since": now} if accepted else None

"""Registering a number for the Cloud API (issue 19, docs/meta.md "Registering a number"):
`POST /{phone_number_id}/register` with `messaging_product` and the two-step verification
PIN. One way for every channel: an Embedded Signup channel registers with the PIN kept in
status.signup (`channel_operator.signup`); a channel whose spec asks for it
(`spec.registration`) with the PIN it seals, else one the operator generates and keeps
sealed to its own key in status.registration before asking Meta (a crash cannot lose a PIN
Meta may already hold).

Meta's answers, by its error codes page
(https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes):
133005 "Two step verification PIN Mismatch" and 133016 "Account register deregister rate
limit exceeded" (10 registrations or deregistrations in 72 hours) are refusals
(CanSendMessage=False with their own reason), settled for the generation and asked again
only on the slow refusal period, never looped; 133004 "Server Temporarily Unavailable" is
transient (a `MetaRetry`), retried with backoff. No PIN is logged or reported: the client
scrubs it from every message.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError
from whatsapp_channel import reasons
from whatsapp_channel.kube import Kube, channels_path
from whatsapp_channel.model import RegistrationStatus

from channel_operator.channel_at_meta import MetaRetry
from channel_operator.desired import ChannelFailure, ChannelRef
from channel_operator.graph import GraphClient, GraphCredentials, GraphError, GraphErrorKind

log = logging.getLogger(__name__)

# The number's status at Meta before it is registered.
PENDING = "PENDING"


class RegistrationRefused(ChannelFailure):
    """Meta refused registering the number: CanSendMessage=False (so Ready=False) with the
    reason, settled for this generation, asked again on the slow refusal period."""


_REFUSALS = {
    GraphErrorKind.REGISTRATION_PIN_MISMATCH: (
        reasons.REGISTRATION_PIN_MISMATCH,
        "the PIN is not the number's two-step verification PIN: seal its PIN in "
        "spec.registration.pin, or turn two-step verification off in WhatsApp Manager",
    ),
    GraphErrorKind.REGISTRATION_LIMITED: (
        reasons.REGISTRATION_LIMITED,
        "the number was registered or deregistered too often (10 times in 72 hours); "
        "asked again later",
    ),
}


def new_pin() -> str:
    """Six digits, as Meta's two-step verification PIN is."""
    return f"{secrets.randbelow(10**6):06d}"


async def register(
    graph: GraphClient,
    ref: ChannelRef,
    phone_number_id: str,
    credentials: GraphCredentials,
    pin: str,
) -> None:
    """Ask Meta to register the number with `pin`; a refusal is `RegistrationRefused`."""
    try:
        await graph.register_number(phone_number_id, credentials, pin)
    except GraphError as error:
        refusal = _REFUSALS.get(error.kind)
        if refusal is not None:
            reason, hint = refusal
            raise RegistrationRefused(
                reason, f"Meta refused registering the number ({error.message}); {hint}"
            ) from None
        message = f"registering the number failed ({error.message}); will retry"
        if error.transient:
            raise MetaRetry(reasons.META_UNAVAILABLE, message) from None
        raise ChannelFailure(reasons.INVALID_REQUEST, message) from None
    log.info("channel %s: number %s registered", ref.name, phone_number_id)


async def keep(kube: Kube, ref: ChannelRef, field: str, kept: BaseModel) -> None:
    """status.<field> written at once (what the operator sealed for itself)."""
    body = {"status": {field: kept.model_dump(by_alias=True, exclude_none=True)}}
    await kube.merge_patch(channels_path(ref.namespace, ref.name, "status"), body)


def kept(status: Mapping[str, Any]) -> RegistrationStatus:
    """status.registration (empty when absent or not ours)."""
    raw = status.get("registration")
    try:
        return RegistrationStatus.model_validate(dict(raw) if isinstance(raw, Mapping) else {})
    except ValidationError:
        return RegistrationStatus()

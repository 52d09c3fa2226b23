"""Embedded Signup (issue 20): a channel whose spec seals `signupCode` instead of
`accessToken` gets its business token here.

The code lives 30 s and is exchanged once, with the platform app's id and secret, at the
channel's first reconcile; the business token and a generated two-step verification PIN are
then sealed by the operator to its own key and kept in `status.signup` at once (before
anything else is asked of Meta, so a crash cannot lose them), with the sha256 of the sealed
code they came from. Every later reconcile, health check, repair and release opens them
from there. The number is registered with the PIN once (`status.signup.registered`). A
refused code (used, expired, another app's) is `SignupCodeInvalid`: settled, never retried.
Nothing here logs or reports a token, code or PIN.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from whatsapp_channel import reasons
from whatsapp_channel.kube import Kube
from whatsapp_channel.model import (
    SIGNUP_PIN_FIELD,
    SIGNUP_TOKEN_FIELD,
    SignupStatus,
)
from whatsapp_channel.sealing import SealError, public_key_of, seal, unseal

from channel_operator import registration
from channel_operator.desired import ChannelFailure, ChannelRef
from channel_operator.graph import GraphClient, GraphCredentials, GraphError, GraphErrorKind
from channel_operator.platform_app import PlatformApp

log = logging.getLogger(__name__)


class SignupRefused(ChannelFailure):
    """Meta refused the code: the channel is settled in error, never retried (a new code,
    i.e. a new POST, is the way forward)."""


def code_digest(sealed_code: str) -> str:
    """Which sealed code status.signup belongs to (a digest of the ciphertext, which the
    spec shows anyway: nothing secret)."""
    return "sha256:" + hashlib.sha256(sealed_code.encode()).hexdigest()


def kept(status: Mapping[str, Any], sealed_code: str) -> SignupStatus | None:
    """status.signup when it belongs to this sealed code."""
    raw = status.get("signup")
    if not isinstance(raw, Mapping):
        return None
    try:
        signup = SignupStatus.model_validate(dict(raw))
    except ValidationError:
        return None
    return signup if signup.code == code_digest(sealed_code) else None


def open_kept(
    private_keys: Mapping[str, bytes], ref: ChannelRef, signup: SignupStatus
) -> tuple[str, str]:
    """The business token and the PIN kept in status.signup."""
    try:
        token, pin = (
            unseal(private_keys, namespace=ref.namespace, name=ref.name, field=field, sealed=value)
            for field, value in (
                (SIGNUP_TOKEN_FIELD, signup.access_token),
                (SIGNUP_PIN_FIELD, signup.pin),
            )
        )
    except SealError as exc:
        raise ChannelFailure(exc.reason, f"status.signup: {exc.message}") from None
    return token, pin


async def exchange(
    graph: GraphClient,
    kube: Kube,
    private_keys: Mapping[str, bytes],
    active_key_id: str,
    ref: ChannelRef,
    app: PlatformApp,
    code: str,
    sealed_code: str,
) -> tuple[str, SignupStatus]:
    """Exchange the code, then keep the token and a new PIN sealed in status.signup before
    returning them."""
    try:
        token = await graph.exchange_code(app.app_id, app.app_secret, code)
    except GraphError as error:
        if error.kind is GraphErrorKind.SIGNUP_CODE_INVALID:
            raise SignupRefused(
                reasons.SIGNUP_CODE_INVALID,
                f"Meta refused the signup code ({error.message}); it lives 30 seconds and is "
                "exchanged once: POST the channel with a new code",
            ) from None
        reason = (
            reasons.RATE_LIMITED
            if error.kind is GraphErrorKind.RATE_LIMITED
            else (reasons.META_UNAVAILABLE)
        )
        raise ChannelFailure(
            reason, f"exchanging the signup code failed ({error.message}); will retry"
        ) from None
    pin = registration.new_pin()
    key = public_key_of(private_keys[active_key_id])

    def sealed(field: str, value: str) -> str:
        return seal(key, namespace=ref.namespace, name=ref.name, field=field, value=value)

    signup = SignupStatus(
        code=code_digest(sealed_code),
        access_token=sealed(SIGNUP_TOKEN_FIELD, token),
        pin=sealed(SIGNUP_PIN_FIELD, pin),
    )
    await keep(kube, ref, signup)
    log.info("channel %s: signup code exchanged; business token kept sealed", ref.name)
    return token, signup


async def keep(kube: Kube, ref: ChannelRef, signup: SignupStatus) -> None:
    await registration.keep(kube, ref, "signup", signup)


async def register(
    graph: GraphClient,
    kube: Kube,
    ref: ChannelRef,
    phone_number_id: str,
    credentials: GraphCredentials,
    pin: str,
    signup: SignupStatus,
) -> None:
    """Register the number with the PIN once (Meta's onboarding step: "Register the
    customer's phone number"), and note it in status.signup."""
    if signup.registered:
        return
    await registration.register(graph, ref, phone_number_id, credentials, pin)
    await keep(kube, ref, signup.model_copy(update={"registered": True}))

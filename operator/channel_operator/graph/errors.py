"""What Graph refuses: Meta's error codes mapped to our kinds, and errors whose text never
holds a secret."""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from channel_operator.graph.models import Call

# Meta's answer to a field the version does not have: "(#100) Tried accessing nonexisting
# field (<name>) on node type (...)".
NONEXISTING_FIELD = re.compile(r"nonexisting field \(([a-z_]+)\) on node type \((\w+)\)")
PHONE_NODE = "WhatsAppBusinessPhoneNumber"
REDACTED = "[redacted]"
# Token-like text Graph may echo back that we were not given (e.g. another token's prefix).
_TOKEN_LIKE = re.compile(r"\bEA[A-Za-z0-9]{20,}")
_SECRET_PARAM = re.compile(r"(access_token|appsecret_proof|verify_token)=[^&\s\"']+")


class GraphErrorKind(StrEnum):
    """What went wrong, in the terms the reconcile maps to condition reasons. Transient or
    refusal by Meta's documented meaning of each code
    (https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes and
    https://developers.facebook.com/docs/graph-api/guides/error-handling)."""

    TOKEN_INVALID = "token_invalid"  # 190 (not 463), 102, 104, 0 (AuthException)
    TOKEN_EXPIRED = "token_expired"  # 190 / 463
    APP_SECRET_MISMATCH = "app_secret_mismatch"  # 100 "Invalid appsecret_proof"
    PHONE_NUMBER_NOT_FOUND = "phone_number_not_found"  # 100 / 33 on the number
    ACCOUNT_NOT_FOUND = "account_not_found"  # 100 / 33 on the business account
    WRONG_OBJECT_TYPE = "wrong_object_type"  # 100 "nonexisting field" on another node type
    PERMISSION_DENIED = "permission_denied"  # 10, 201-299
    ASSET_ACCESS_MISSING = "asset_access_missing"  # 200: no access to the asset
    CAPABILITY_MISSING = "capability_missing"  # 3: the app lacks the capability
    POLICY_BLOCKED = "policy_blocked"  # 368: temporarily blocked for policy violations
    ACCOUNT_LOCKED = "account_locked"  # 131031: the business account is locked
    APP_NOT_SUBSCRIBED = "app_not_subscribed"  # 100 "... must be subscribed ..."
    CALLBACK_VERIFICATION_FAILED = "callback_verification_failed"  # 2200
    OVERRIDE_REFUSED = "override_refused"  # any other 100 on the override call
    INVALID_REQUEST = "invalid_request"  # any other 100
    SIGNUP_CODE_INVALID = "signup_code_invalid"  # 100 on the code exchange: used or expired
    REGISTRATION_PIN_MISMATCH = "registration_pin_mismatch"  # 133005: not the number's PIN
    REGISTRATION_LIMITED = "registration_limited"  # 133016: 10 (de)registrations per 72 h
    RATE_LIMITED = "rate_limited"  # 4, 17, 32, 613, 80007 (transient)
    UNAVAILABLE = "unavailable"  # 1, 2, 5xx, timeouts, connection failures (transient)
    BUDGET_EXHAUSTED = "budget_exhausted"  # our own per-account budget (transient)
    UNEXPECTED = "unexpected"  # anything else: not blamed on the credentials

    @property
    def transient(self) -> bool:
        """Meta did not refuse anything: try again later (a condition goes Unknown)."""
        return self in _TRANSIENT

    @property
    def credentials_refused(self) -> bool:
        """Meta refused the credentials or the number (CredentialsValid=False)."""
        return self in _CREDENTIALS_REFUSED


_TRANSIENT = frozenset(
    {GraphErrorKind.RATE_LIMITED, GraphErrorKind.UNAVAILABLE, GraphErrorKind.BUDGET_EXHAUSTED}
)
_CREDENTIALS_REFUSED = frozenset(
    {
        GraphErrorKind.TOKEN_INVALID,
        GraphErrorKind.TOKEN_EXPIRED,
        GraphErrorKind.APP_SECRET_MISMATCH,
        GraphErrorKind.PHONE_NUMBER_NOT_FOUND,
        GraphErrorKind.ACCOUNT_NOT_FOUND,
        GraphErrorKind.WRONG_OBJECT_TYPE,
        GraphErrorKind.PERMISSION_DENIED,
        GraphErrorKind.ASSET_ACCESS_MISSING,
        GraphErrorKind.CAPABILITY_MISSING,
        GraphErrorKind.POLICY_BLOCKED,
        GraphErrorKind.ACCOUNT_LOCKED,
        GraphErrorKind.INVALID_REQUEST,
    }
)
# Codes whose meaning is a refusal Meta documents (WhatsApp's error codes page): each its own
# kind, never retried (asked again only on the slow refusal period).
_REFUSAL_CODES = {
    3: GraphErrorKind.CAPABILITY_MISSING,  # "Capability or permissions issue"
    200: GraphErrorKind.ASSET_ACCESS_MISSING,  # "Permission error": no access to the asset
    368: GraphErrorKind.POLICY_BLOCKED,  # "Temporarily blocked for policies violations"
    131031: GraphErrorKind.ACCOUNT_LOCKED,  # "Business Account locked"
    # Registering a number (POST /{id}/register): "Two step verification PIN Mismatch" (the
    # PIN given is not the one the number's two-step verification holds) ...
    133005: GraphErrorKind.REGISTRATION_PIN_MISMATCH,
    # ... and "Account register deregister rate limit exceeded": the number was registered
    # or deregistered too many times (10 in 72 hours); asking again within the window only
    # spends it, so a refusal asked again on the slow period, never looped.
    133016: GraphErrorKind.REGISTRATION_LIMITED,
}
# "Server Temporarily Unavailable" (133004, HTTP 503): the registration server is down for
# now; retried with backoff as any outage.
_UNAVAILABLE_CODES = frozenset({1, 2, 133004})
# Meta's rate limiting (https://developers.facebook.com/docs/graph-api/overview/rate-limiting):

_RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80007, 80008, 130429})


def classify(
    call: Call, http_status: int, code: int | None, subcode: int | None, message: str
) -> GraphErrorKind:
    """Meta's error → our kind. Branches on `code` first, as Meta advises; the message is
    consulted only where Meta gives no subcode (appsecret_proof, subscription required)."""
    if code in (190, 102):
        return GraphErrorKind.TOKEN_EXPIRED if subcode == 463 else GraphErrorKind.TOKEN_INVALID
    if code in (0, 104):
        return GraphErrorKind.TOKEN_INVALID
    if code in _REFUSAL_CODES:
        return _REFUSAL_CODES[code]
    if code == 100 and call == "exchange":
        return GraphErrorKind.SIGNUP_CODE_INVALID
    if code == 100:
        lowered = message.lower()
        if "appsecret_proof" in lowered:
            return GraphErrorKind.APP_SECRET_MISMATCH
        if subcode == 33:
            return (
                GraphErrorKind.ACCOUNT_NOT_FOUND
                if call in ("subscribe", "unsubscribe", "subscriptions", "phone_numbers")
                else GraphErrorKind.PHONE_NUMBER_NOT_FOUND
            )
        if "must be subscribed" in lowered:
            return GraphErrorKind.APP_NOT_SUBSCRIBED
        wrong = NONEXISTING_FIELD.search(message)
        if wrong is not None and wrong.group(2) != PHONE_NODE:
            return GraphErrorKind.WRONG_OBJECT_TYPE
        if call == "override":
            return GraphErrorKind.OVERRIDE_REFUSED
        return GraphErrorKind.INVALID_REQUEST
    if code == 10 or (code is not None and 200 <= code <= 299):
        return GraphErrorKind.PERMISSION_DENIED
    if code == 2200:
        return GraphErrorKind.CALLBACK_VERIFICATION_FAILED
    if code in _RATE_LIMIT_CODES or http_status == 429:
        return GraphErrorKind.RATE_LIMITED
    if code in _UNAVAILABLE_CODES or http_status >= 500:
        return GraphErrorKind.UNAVAILABLE
    return GraphErrorKind.UNEXPECTED


class GraphInputError(ValueError):
    """An argument refused before any call (a spec Meta could never take): the channel's
    InvalidSpec, never a retry."""


MESSAGE_CAP = 500


def explained(graph_error: dict[str, Any]) -> str:
    """Graph's message with Meta's own explanation when it gives one: `error_user_msg`
    (error-handling guide: "the message to display to the user") and `error_data.details`
    (WhatsApp's error codes page: "details: Error details")."""
    parts = [str(graph_error.get("message", ""))]
    user_msg = graph_error.get("error_user_msg")
    if isinstance(user_msg, str) and user_msg and user_msg not in parts[0]:
        parts.append(user_msg)
    data = graph_error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    if isinstance(details, str) and details and details not in " ".join(parts):
        parts.append(details)
    return "; ".join(parts)


class GraphError(Exception):
    """A Graph call that failed, after any retries. Its text holds Meta's code, subcode,
    fbtrace_id and Graph's message with every secret scrubbed, never a credential."""

    def __init__(
        self,
        kind: GraphErrorKind,
        call: Call,
        *,
        message: str,
        http_status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        attempts: int = 1,
        retry_after: float | None = None,
    ) -> None:
        self.kind = kind
        self.retry_after = retry_after  # Meta's stated throttle window, in seconds
        self.call = call
        self.message = message  # already scrubbed
        self.http_status = http_status
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id
        self.attempts = attempts
        super().__init__(str(self))

    def __str__(self) -> str:
        meta = []
        if self.code is not None:
            meta.append(f"code {self.code}" + (f"/{self.subcode}" if self.subcode else ""))
        if self.http_status is not None:
            meta.append(f"HTTP {self.http_status}")
        if self.fbtrace_id:
            meta.append(f"fbtrace_id {self.fbtrace_id}")
        detail = f" ({', '.join(meta)})" if meta else ""
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        return f"Graph {self.call} failed: {self.kind.value}{detail}{tries}: {self.message}"

    def __repr__(self) -> str:
        return f"GraphError({self.kind.value!r}, {self.call!r}, code={self.code!r})"

    @property
    def transient(self) -> bool:
        return self.kind.transient


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every given secret, token-like string and secret query parameter
    replaced by [redacted]."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _TOKEN_LIKE.sub(REDACTED, text)

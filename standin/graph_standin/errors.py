"""Graph API error bodies, as Meta sends them:
`{"error": {"message", "type", "code", "error_subcode"?, "fbtrace_id"}}`.

The texts are Meta's own where known (quoted in tests/graph/meta_documented.py with sources).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from aiohttp import web


def fbtrace_id() -> str:
    return secrets.token_urlsafe(8)


def error_body(
    message: str,
    code: int,
    *,
    type_: str,
    subcode: int | None,
    details: str | None,
    user_msg: str | None,
) -> dict[str, Any]:
    """`details`: WhatsApp's `error_data.details`; `user_msg`: Graph's `error_user_title` and
    `error_user_msg` (Meta's error-handling guide and WhatsApp's error codes page)."""
    error: dict[str, Any] = {"message": message, "type": type_, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if user_msg is not None:
        error["error_user_title"] = message.removeprefix("(#" + str(code) + ") ")
        error["error_user_msg"] = user_msg
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = fbtrace_id()
    return {"error": error}


class GraphFailure(Exception):
    """Raised inside a handler; becomes Meta's error body with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        code: int,
        *,
        type_: str = "OAuthException",
        subcode: int | None = None,
        details: str | None = None,
        user_msg: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}
        self.body = error_body(
            message, code, type_=type_, subcode=subcode, details=details, user_msg=user_msg
        )

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status, headers=self.headers)


def token_missing() -> GraphFailure:
    return GraphFailure(
        400,
        "An access token is required to request this resource.",  # wording
        104,
    )


def token_malformed(token: str) -> GraphFailure:
    # Meta echoes the token it could not parse: clients must scrub Graph's messages.
    return GraphFailure(401, f"Malformed access token {token}", 190)


def token_invalid() -> GraphFailure:
    return GraphFailure(
        401,
        "Invalid OAuth access token - Cannot parse access token",  # wording
        190,
    )


def token_expired() -> GraphFailure:
    return GraphFailure(
        401,
        "Error validating access token: Session has expired on Sunday, 01-Nov-26 04:00:00 PST. "
        "The current time is Monday, 30-Nov-26 04:00:00 PST.",  # wording
        190,
        subcode=463,
    )


def proof_missing() -> GraphFailure:
    return GraphFailure(
        400,
        "API calls from the server require an appsecret_proof argument",
        100,
        type_="GraphMethodException",
    )


def proof_invalid() -> GraphFailure:
    return GraphFailure(
        400,
        "Invalid appsecret_proof provided in the API argument",
        100,
        type_="GraphMethodException",
    )


def object_not_found(object_id: str, method: str) -> GraphFailure:
    return GraphFailure(
        400,
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, "
        "cannot be loaded due to missing permissions, or does not support this "  # wording
        "operation. Please read the Graph API documentation at "  # wording
        "https://developers.facebook.com/docs/graph-api",  # wording
        100,
        type_="GraphMethodException",
        subcode=33,
    )


def app_token_required() -> GraphFailure:
    """debug_token asked with a user token (the token about itself): Meta's refusal, as
    quoted in nyaruka/rapidpro PR 3734 and Meta's debug_token reference ("An app access
    token or an app developer's user access token ... is required")."""
    return GraphFailure(
        400,
        "(#100) You must provide an app access token, or a user access token that is an "
        "owner or developer of the app",
        100,
    )


def nonexisting_field(field: str, node_type: str = "WhatsAppBusinessPhoneNumber") -> GraphFailure:
    return GraphFailure(
        400,
        f"(#100) Tried accessing nonexisting field ({field}) on node type ({node_type})",
        100,
    )


def invalid_parameter(message: str) -> GraphFailure:
    return GraphFailure(400, f"(#100) {message}", 100)


def not_subscribed() -> GraphFailure:
    return GraphFailure(
        400,
        "(#100) Before override the current callback uri, your app must be subscribed to "
        "receive messages for WhatsApp Business Account.",
        100,
    )


def callback_verification_failed(detail: str) -> GraphFailure:
    return GraphFailure(
        400, f"(#2200) Callback verification failed with the following errors: {detail}", 2200
    )


def permission_denied() -> GraphFailure:
    return GraphFailure(
        403,
        "(#10) Application does not have permission for this action",  # wording
        10,
    )


def usage_header(object_id: str, kind: str, minutes: int) -> dict[str, str]:
    """`X-Business-Use-Case-Usage` as Meta's rate-limiting page shows it: per business object,
    the use case's percentages and `estimated_time_to_regain_access` in minutes."""
    entry = {
        "type": kind,
        "call_count": 100,
        "total_cputime": 1,
        "total_time": 1,
        "estimated_time_to_regain_access": minutes,
    }
    return {"X-Business-Use-Case-Usage": json.dumps({object_id: [entry]})}


def app_rate_limited() -> GraphFailure:
    return GraphFailure(
        400,
        "(#4) Application request limit reached",  # wording
        4,
        headers={"X-App-Usage": APP_FULL},
    )


def account_rate_limited(object_id: str, minutes: int) -> GraphFailure:
    return GraphFailure(
        400,
        "(#80007) Rate limit hit for WhatsApp Business Account",  # wording
        80007,
        headers=usage_header(object_id, "whatsapp_business_management", minutes),
    )


APP_FULL = json.dumps({"call_count": 100, "total_cputime": 1, "total_time": 1})


def unknown_error() -> GraphFailure:
    return GraphFailure(
        500,
        "An unknown error has occurred.",  # wording
        1,
    )


def service_unavailable() -> GraphFailure:
    return GraphFailure(
        503,
        "Service temporarily unavailable",  # wording
        2,
    )


# WhatsApp's error codes page (https://developers.facebook.com/docs/whatsapp/cloud-api/support/
# error-codes): the refusals a check can meet, with Meta's explanation in error_data.details.


def auth_exception() -> GraphFailure:
    return GraphFailure(
        401,
        "(#0) AuthException",  # wording
        0,
        details="We were unable to authenticate the app user.",
    )


def capability_missing() -> GraphFailure:
    # HTTP 500 as Meta's table gives it: a refusal all the same (the code says so).
    return GraphFailure(
        500,
        "(#3) API Method",  # wording
        3,
        details="Capability or permissions issue.",
    )


def asset_access_missing() -> GraphFailure:
    return GraphFailure(
        403,
        "(#200) Permission error",  # wording
        200,
        user_msg="The system user has no access to this WhatsApp Business Account; "  # wording
        "assign it in Business Settings.",  # wording
    )


def policy_blocked() -> GraphFailure:
    return GraphFailure(
        403,
        "(#368) Temporarily blocked for policies violations",  # wording
        368,
        details="The WhatsApp Business Account associated with the app has been restricted "
        "or disabled for violating a platform policy.",
    )


def account_locked() -> GraphFailure:
    return GraphFailure(
        403,
        "(#131031) Business Account locked",  # wording
        131031,
        details="The WhatsApp Business Account associated with the app has been restricted "
        "or disabled for violating a platform policy, or we were unable to verify data "
        "included in the request against data set on the WhatsApp Business Account.",
    )


# Exchanging an Embedded Signup code (`GET /oauth/access_token`): Meta's OAuth answers, as
# quoted in tests/graph/meta_documented.py (code 100, type OAuthException).
def code_used() -> GraphFailure:
    return GraphFailure(400, "This authorization code has been used.", 100, subcode=36009)


def code_expired() -> GraphFailure:
    return GraphFailure(400, "This authorization code has expired.", 100, subcode=36007)


def code_invalid() -> GraphFailure:
    return GraphFailure(
        400,
        "Invalid verification code format.",  # wording
        100,
    )


def client_secret_invalid() -> GraphFailure:
    return GraphFailure(
        400,
        "Error validating client secret.",  # wording
        1,
    )


def pin_mismatch() -> GraphFailure:
    """Registering a number with another PIN than its two-step verification one (WhatsApp's
    error codes page: 133005, "Two step verification PIN Mismatch")."""
    return GraphFailure(
        400,
        "Two step verification PIN Mismatch",  # wording
        133005,
    )


# The stand-in's window of register calls per number (Meta: 10 in 72 hours).
REGISTRATIONS_ALLOWED = 10


def registration_limited() -> GraphFailure:
    """WhatsApp's error codes page: 133016, "Account register deregister rate limit
    exceeded", registration or deregistration failed because there were too many attempts
    for the number in a short period (10 in 72 hours)."""
    return GraphFailure(
        400,
        "Account register deregister rate limit exceeded",  # wording
        133016,
        details="Registration or Deregistration failed because there were too many attempts "
        "for this phone number in a short period of time",
    )


def registration_unavailable() -> GraphFailure:
    """WhatsApp's error codes page: 133004, "Server Temporarily Unavailable" (HTTP 503)."""
    return GraphFailure(
        503,
        "Server Temporarily Unavailable",  # wording
        133004,
    )

"""What each of Meta's error codes means for a channel (issue 23 item 4): not only the kind a
Graph error is given, but the two things the reconcile acts on, whether Meta refused the
credentials or the number (CredentialsValid=False, the channel an error until they change)
and whether the call is only to be tried again (transient: Unknown, retried with backoff).
A break turning a token refusal into a retry, or a permission refusal into an outage, fails
here. The meanings are Meta's (https://developers.facebook.com/docs/whatsapp/cloud-api/
support/error-codes, https://developers.facebook.com/docs/graph-api/guides/error-handling).
"""

from __future__ import annotations

import pytest
from channel_operator.graph import Call, GraphError, GraphErrorKind, classify, scrub
from channel_operator.graph.errors import explained

K = GraphErrorKind
REFUSED, TRANSIENT, NEITHER = "refused", "transient", "neither"
WABA_AS_NUMBER = (
    "(#100) Tried accessing nonexisting field (status) on node type (WhatsAppBusinessAccount)"
)
NUMBER_FIELD = (
    "(#100) Tried accessing nonexisting field (throughput) on node type "
    "(WhatsAppBusinessPhoneNumber)"
)

# (what Meta says: call, HTTP status, code, subcode, message) -> (our kind, what it means)
MEANINGS: list[tuple[tuple[Call, int, int | None, int | None, str], GraphErrorKind, str]] = [
    (("check", 401, 190, None, "Invalid OAuth access token"), K.TOKEN_INVALID, REFUSED),
    (("check", 401, 190, 463, "Session has expired"), K.TOKEN_EXPIRED, REFUSED),
    (("check", 401, 190, 460, "password changed"), K.TOKEN_INVALID, REFUSED),
    (("check", 400, 102, None, "API Session"), K.TOKEN_INVALID, REFUSED),
    (("check", 400, 102, 463, "API Session expired"), K.TOKEN_EXPIRED, REFUSED),
    (("check", 400, 104, None, "Incorrect signature"), K.TOKEN_INVALID, REFUSED),
    (("check", 401, 0, None, "AuthException"), K.TOKEN_INVALID, REFUSED),
    (
        ("check", 400, 100, None, "Invalid appsecret_proof provided in the API argument"),
        K.APP_SECRET_MISMATCH,
        REFUSED,
    ),
    (("subscribe", 400, 100, None, "Invalid APPSECRET_PROOF"), K.APP_SECRET_MISMATCH, REFUSED),
    (("check", 400, 100, 33, "Unsupported get request"), K.PHONE_NUMBER_NOT_FOUND, REFUSED),
    (("override", 400, 100, 33, "Unsupported post request"), K.PHONE_NUMBER_NOT_FOUND, REFUSED),
    (("subscribe", 400, 100, 33, "Unsupported post request"), K.ACCOUNT_NOT_FOUND, REFUSED),
    (("unsubscribe", 400, 100, 33, "Unsupported"), K.ACCOUNT_NOT_FOUND, REFUSED),
    (("subscriptions", 400, 100, 33, "Unsupported"), K.ACCOUNT_NOT_FOUND, REFUSED),
    (("phone_numbers", 400, 100, 33, "Unsupported"), K.ACCOUNT_NOT_FOUND, REFUSED),
    (("check", 400, 100, None, WABA_AS_NUMBER), K.WRONG_OBJECT_TYPE, REFUSED),
    (("check", 400, 100, None, NUMBER_FIELD), K.INVALID_REQUEST, REFUSED),
    (("check", 400, 100, None, "Invalid parameter"), K.INVALID_REQUEST, REFUSED),
    (("check", 403, 10, None, "Permission denied"), K.PERMISSION_DENIED, REFUSED),
    (("check", 403, 201, None, "Permission"), K.PERMISSION_DENIED, REFUSED),
    (("check", 403, 299, None, "Permission"), K.PERMISSION_DENIED, REFUSED),
    (("check", 403, 200, None, "Permission error"), K.ASSET_ACCESS_MISSING, REFUSED),
    (("check", 403, 3, None, "Capability"), K.CAPABILITY_MISSING, REFUSED),
    (("check", 403, 368, None, "Temporarily blocked"), K.POLICY_BLOCKED, REFUSED),
    (("check", 403, 131031, None, "Business Account locked"), K.ACCOUNT_LOCKED, REFUSED),
    # Refusals of one call that say nothing of the credentials.
    (
        ("override", 400, 100, None, "Application must be subscribed to the WABA"),
        K.APP_NOT_SUBSCRIBED,
        NEITHER,
    ),
    (
        ("override", 400, 2200, None, "Callback verification failed"),
        K.CALLBACK_VERIFICATION_FAILED,
        NEITHER,
    ),
    (("override", 400, 100, None, "Param override_callback_uri"), K.OVERRIDE_REFUSED, NEITHER),
    (
        ("exchange", 400, 100, None, "This authorization code has expired"),
        K.SIGNUP_CODE_INVALID,
        NEITHER,
    ),
    (("register", 400, 133005, None, "PIN Mismatch"), K.REGISTRATION_PIN_MISMATCH, NEITHER),
    (("register", 400, 133016, None, "rate limit exceeded"), K.REGISTRATION_LIMITED, NEITHER),
    (("check", 404, None, None, ""), K.UNEXPECTED, NEITHER),
    (("check", 403, 300, None, "Permission"), K.UNEXPECTED, NEITHER),  # past 200-299
    (("check", 400, 131000, None, "Something went wrong"), K.UNEXPECTED, NEITHER),
    # Nothing refused: try again later.
    (("check", 400, 4, None, "Application request limit"), K.RATE_LIMITED, TRANSIENT),
    (("check", 400, 17, None, "User request limit"), K.RATE_LIMITED, TRANSIENT),
    (("check", 400, 32, None, "Page request limit"), K.RATE_LIMITED, TRANSIENT),
    (("check", 400, 613, None, "Calls within one hour"), K.RATE_LIMITED, TRANSIENT),
    (("check", 400, 80007, None, "Rate limit issues"), K.RATE_LIMITED, TRANSIENT),
    (("check", 400, 80008, None, "Rate limit issues"), K.RATE_LIMITED, TRANSIENT),
    (("check", 400, 130429, None, "Rate limit hit"), K.RATE_LIMITED, TRANSIENT),
    (("check", 429, None, None, ""), K.RATE_LIMITED, TRANSIENT),
    (("check", 500, 1, None, "An unknown error occurred"), K.UNAVAILABLE, TRANSIENT),
    (("check", 503, 2, None, "Service temporarily unavailable"), K.UNAVAILABLE, TRANSIENT),
    (("register", 503, 133004, None, "Server Temporarily Unavailable"), K.UNAVAILABLE, TRANSIENT),
    (("check", 500, None, None, ""), K.UNAVAILABLE, TRANSIENT),
    (("check", 502, 131000, None, "Something went wrong"), K.UNAVAILABLE, TRANSIENT),
]


@pytest.mark.parametrize(("said", "kind", "meaning"), MEANINGS, ids=lambda v: str(v))
def test_each_answer_of_meta_means_what_meta_documents(
    said: tuple[Call, int, int | None, int | None, str], kind: GraphErrorKind, meaning: str
) -> None:
    got = classify(*said)
    assert got is kind
    assert got.credentials_refused is (meaning == REFUSED)
    assert got.transient is (meaning == TRANSIENT)


def test_every_kind_means_one_thing() -> None:
    """Each kind is a refusal of the credentials, a transient failure, or neither; never
    both. Our own call budget is transient (nothing was refused: no call was made)."""
    for kind in GraphErrorKind:
        assert not (kind.credentials_refused and kind.transient), kind
    assert K.BUDGET_EXHAUSTED.transient
    assert not K.BUDGET_EXHAUSTED.credentials_refused
    assert {kind for _, kind, _ in MEANINGS} | {K.BUDGET_EXHAUSTED} == set(GraphErrorKind)


def test_the_error_text_says_what_meta_said_and_how_often_it_was_asked() -> None:
    """The text that reaches a channel's condition message and the operator's log."""
    full = GraphError(
        K.TOKEN_EXPIRED,
        "check",
        message="Session has expired",
        http_status=401,
        code=190,
        subcode=463,
        fbtrace_id="AbC123",
        attempts=3,
    )
    assert str(full) == (
        "Graph check failed: token_expired (code 190/463, HTTP 401, fbtrace_id AbC123)"
        " after 3 attempts: Session has expired"
    )
    assert full.args == (str(full),)
    assert (full.call, full.fbtrace_id, full.attempts) == ("check", "AbC123", 3)
    once = GraphError(K.INVALID_REQUEST, "override", message="Invalid parameter", code=100)
    assert str(once) == "Graph override failed: invalid_request (code 100): Invalid parameter"
    twice = GraphError(K.UNAVAILABLE, "check", message="Service unavailable", attempts=2)
    assert str(twice) == "Graph check failed: unavailable after 2 attempts: Service unavailable"
    bare = GraphError(K.UNAVAILABLE, "subscribe", message="connection refused")
    assert str(bare) == "Graph subscribe failed: unavailable: connection refused"
    assert bare.attempts == 1


def test_metas_own_explanation_is_added_once() -> None:
    assert explained({}) == ""
    assert explained({"message": "Invalid parameter"}) == "Invalid parameter"
    told = {
        "message": "Invalid parameter",
        "error_user_msg": "The PIN is wrong",
        "error_data": {"details": "PIN mismatch"},
    }
    assert explained(told) == "Invalid parameter; The PIN is wrong; PIN mismatch"
    repeated = {
        "message": "(#100) Invalid parameter",
        "error_user_msg": "Invalid parameter",
        "error_data": {"details": "Invalid parameter"},
    }
    assert explained(repeated) == "(#100) Invalid parameter"
    spanning = {
        "message": "Invalid",
        "error_user_msg": "parameter",
        "error_data": {"details": "Invalid parameter"},
    }
    assert explained(spanning) == "Invalid; parameter"
    odd = {"message": "m", "error_user_msg": 5, "error_data": {"details": {"x": 1}}}
    assert explained(odd) == "m"
    assert explained({"message": "m", "error_data": "details"}) == "m"


def test_a_secret_inside_another_is_never_left_half_shown() -> None:
    """The longer secret is redacted first: a token whose app secret is part of it leaves no
    tail of either in the text."""
    text = scrub("refused abcdef0123 and abcdef", ["abcdef", "abcdef0123"])
    assert text == "refused [redacted] and [redacted]"
    assert scrub("x as3cret y", ["s3cret", "as3cret"]) == "x [redacted] y"
    assert scrub("a=1&verify_token=s3cr3t&b=2", []) == "a=1&verify_token=[redacted]&b=2"

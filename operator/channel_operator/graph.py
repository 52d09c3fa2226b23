"""The operator's Graph API client: the calls that prove a channel's credentials, register its
webhook and watch its health (issue 11).

- async (aiohttp), at most `max_concurrency` requests in flight, a timeout per attempt;
- `appsecret_proof` (hex HMAC-SHA256 of the access token under the app secret) on every call,
  so one check proves the token, the number and the app secret together;
- retries with exponential backoff and full jitter on what Meta calls transient (codes 1, 2,
  4, 80007, HTTP 5xx, timeouts, connection failures), never on 190, 10/200-299 or 100;
- failures as `GraphError` with a `GraphErrorKind` the reconcile maps to condition reasons;
- no token, app secret, proof or verify token in any exception text, repr or log line,
  Graph's own error messages included (Meta echoes a malformed token back).

The base URL and version are parameters (default https://graph.facebook.com, v25.0); plain
http is accepted only for a loopback stand-in (or, in tests, the one host named by
`plain_http_host`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, TypeVar

import aiohttp
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from whatsapp_channel.model import META_ID_PATTERN
from yarl import URL

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_VERSION = "v25.0"
# The messaging limit's field by version: "The `messaging_limit_tier` field, which used to
# return a business phone number's messaging limit, has been deprecated. Request the
# `whatsapp_business_manager_messaging_limit` field instead"
# (https://developers.facebook.com/documentation/business-messaging/whatsapp/messaging-limits);
# from v24.0 the old field has no value (david-lev/pywa issue 221).
MESSAGING_LIMIT_FIELD_SINCE = (24, 0)
# The number's facts the check reads besides its messaging limit (by version, below): each
# degrades to None on a value it cannot read (`PhoneNumberCheck._tolerant`).
_NAMES = (
    "display_phone_number",
    "verified_name",
    "code_verification_status",
    "name_status",
    "quality_rating",
    "status",
    "platform_type",
    "throughput",
)
_CONFIGURATION = ("webhook_configuration", "health_status")


def check_fields(version: str) -> tuple[str, ...]:
    """One call proves token, number and app secret, and reads everything the status shows,
    each fact by the field the version has."""
    major, minor = (int(part) for part in version.removeprefix("v").split("."))
    limit = (
        "whatsapp_business_manager_messaging_limit"
        if (major, minor) >= MESSAGING_LIMIT_FIELD_SINCE
        else "messaging_limit_tier"
    )
    return ("id", *_NAMES, limit, *_CONFIGURATION)


# Meta's answer to a field the version does not have: "(#100) Tried accessing nonexisting
# field (<name>) on node type (...)".
_NONEXISTING_FIELD = re.compile(r"nonexisting field \(([a-z_]+)\) on node type \((\w+)\)")
_PHONE_NODE = "WhatsAppBusinessPhoneNumber"
# What a channel's token must grant: managing the account (subscriptions, the override,
# the number's fields) and messaging (https://developers.facebook.com/docs/whatsapp/
# access-tokens: "whatsapp_business_management" and "whatsapp_business_messaging").
WHATSAPP_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
CHECK_FIELDS = check_fields(DEFAULT_VERSION)
_VERSION_PATTERN = re.compile(r"^v[0-9]+\.[0-9]+$")
_ID_PATTERN = re.compile(META_ID_PATTERN)  # the contract's: an id the CRD takes, we take
REDACTED = "[redacted]"
# Token-like text Graph may echo back that we were not given (e.g. another token's prefix).
_TOKEN_LIKE = re.compile(r"\bEA[A-Za-z0-9]{20,}")
_SECRET_PARAM = re.compile(r"(access_token|appsecret_proof|verify_token)=[^&\s\"']+")

Call = Literal[
    "check",
    "subscribe",
    "unsubscribe",
    "subscriptions",
    "override",
    "debug_token",
    "app",
    "phone_numbers",
    "exchange",
    "register",
]
# Graph paths that are not a numeric object id.
_NAMED_NODES = frozenset({"debug_token", "app", "oauth"})
# Pages of `GET /{waba}/phone_numbers` read at most (100 numbers a page: Meta's maximum).
MAX_NUMBER_PAGES = 50


# -- results ------------------------------------------------------------------------------


class CanSendMessage(StrEnum):
    AVAILABLE = "AVAILABLE"
    LIMITED = "LIMITED"
    BLOCKED = "BLOCKED"


class _GraphModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class HealthError(_GraphModel):
    error_code: int
    error_description: str = ""
    possible_solution: str = ""


class HealthEntity(_GraphModel):
    entity_type: str
    id: str
    can_send_message: CanSendMessage
    errors: tuple[HealthError, ...] = ()
    additional_info: tuple[str, ...] = ()


class HealthStatus(_GraphModel):
    """`health_status`: the overall value is the worst of the entities' (Meta's rule)."""

    can_send_message: CanSendMessage
    entities: tuple[HealthEntity, ...] = ()

    @property
    def errors(self) -> tuple[HealthError, ...]:
        """Every entity's errors, for a condition message (Meta's codes and descriptions)."""
        return tuple(error for entity in self.entities for error in entity.errors)


class WebhookConfiguration(_GraphModel):
    """Where Meta sends the number's `messages` webhooks: the first level that is set."""

    phone_number: str | None = None
    whatsapp_business_account: str | None = None
    application: str | None = None

    @property
    def effective(self) -> str | None:
        return self.phone_number or self.whatsapp_business_account or self.application


class Throughput(_GraphModel):
    level: str


def _or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """A fact Meta answers in a shape or enum value this client does not know is None: it
    degrades that one fact, never the whole check."""
    try:
        return handler(value)
    except ValidationError:
        log.debug("an unknown shape or value of a phone number field: left out")
        return None


class PhoneNumberCheck(_GraphModel):
    """`GET /{phone_number_id}?fields=...`: what a field list asked for (others are None)."""

    id: str
    display_phone_number: str | None = None
    verified_name: str | None = None
    code_verification_status: str | None = None
    name_status: str | None = None
    quality_rating: str | None = None
    status: str | None = None
    platform_type: str | None = None
    throughput: Throughput | None = None
    messaging_limit_tier: str | None = None
    whatsapp_business_manager_messaging_limit: str | None = None
    webhook_configuration: WebhookConfiguration | None = None
    health_status: HealthStatus | None = None

    _tolerant = field_validator(*_NAMES, "messaging_limit_tier", *_CONFIGURATION, mode="wrap")(
        _or_none
    )

    @field_validator("whatsapp_business_manager_messaging_limit", mode="before")
    @classmethod
    def _limit(cls, value: Any) -> Any:
        """A tier name; an object is read for its `current_limit` (any other shape: None)."""
        if isinstance(value, dict):
            value = value.get("current_limit")
        return value if isinstance(value, str) else None

    @property
    def messaging_limit(self) -> str | None:
        return self.whatsapp_business_manager_messaging_limit or self.messaging_limit_tier


class SubscribedApp(_GraphModel):
    id: str
    name: str | None = None
    link: str | None = None
    override_callback_uri: str | None = None


class ExchangedToken(_GraphModel):
    """`GET /oauth/access_token`'s answer: the business token."""

    access_token: str = Field(min_length=1, repr=False)


class TokenApp(_GraphModel):
    """`GET /app` with a user or system user token: the app the token was issued for
    (https://developers.facebook.com/docs/graph-api/reference/application/: "id: The app
    ID")."""

    id: str
    name: str | None = None


class GranularScope(_GraphModel):
    scope: str
    target_ids: tuple[str, ...] = ()


class TokenInfo(_GraphModel):
    """`GET /debug_token?input_token=...`: what the token may do, and where."""

    is_valid: bool
    app_id: str | None = None
    application: str | None = None
    type: str | None = None
    expires_at: int | None = None  # 0: never
    data_access_expires_at: int | None = None
    scopes: tuple[str, ...] = ()
    granular_scopes: tuple[GranularScope, ...] = ()

    @property
    def missing_scopes(self) -> tuple[str, ...]:
        """The WhatsApp permissions a channel needs that the token lacks."""
        return tuple(scope for scope in WHATSAPP_SCOPES if scope not in self.scopes)

    @property
    def waba_ids(self) -> tuple[str, ...]:
        """The business accounts that granted whatsapp_business_management, newest first
        (Meta: "capture the first ID in the target_ids array")."""
        for granted in self.granular_scopes:
            if granted.scope == "whatsapp_business_management":
                return granted.target_ids
        return ()


# -- errors -------------------------------------------------------------------------------


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
# the `X-Business-Use-Case-Usage` header maps a business object id to entries carrying
# `estimated_time_to_regain_access` ("time, in minutes, until calls will not be throttled");
# `X-App-Usage` carries percentages only. Without a stated time, this long.
DEFAULT_THROTTLE_SECONDS = 60.0
_APP_WIDE = ""  # the key of a throttle of the whole app (code 4: "Application request limit")


def regain_seconds(headers: Mapping[str, str]) -> float | None:
    """The longest `estimated_time_to_regain_access` Meta states in the usage headers, in
    seconds; None when it states none (a malformed header counts as none)."""
    raw = headers.get("X-Business-Use-Case-Usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (usage.values() if isinstance(usage, dict) else ())
        for entry in (entries if isinstance(entries, list) else ())
        if isinstance(entry, dict)
    ]
    stated = [m for m in minutes if isinstance(m, int | float) and m >= 0]
    return max(stated) * 60.0 if stated else None


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
                if call in ("subscribe", "unsubscribe", "subscriptions")
                else GraphErrorKind.PHONE_NUMBER_NOT_FOUND
            )
        if "must be subscribed" in lowered:
            return GraphErrorKind.APP_NOT_SUBSCRIBED
        wrong = _NONEXISTING_FIELD.search(message)
        if wrong is not None and wrong.group(2) != _PHONE_NODE:
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


def _explained(graph_error: dict[str, Any]) -> str:
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


# -- credentials, budget, retries ---------------------------------------------------------


@dataclass(frozen=True)
class GraphCredentials:
    """A channel's access token and app secret; neither appears in its repr."""

    access_token: str = field(repr=False)
    app_secret: str = field(repr=False)

    @property
    def appsecret_proof(self) -> str:
        return hmac.new(
            self.app_secret.encode(), self.access_token.encode(), hashlib.sha256
        ).hexdigest()

    def secrets(self) -> tuple[str, ...]:
        return (self.access_token, self.app_secret, self.appsecret_proof)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every given secret, token-like string and secret query parameter
    replaced by [redacted]."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}={REDACTED}", text)
    return _TOKEN_LIKE.sub(REDACTED, text)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base·2ⁿ))."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("a retry policy needs at least one attempt and delays >= 0")

    def delay(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2**retry))
        return rng.uniform(0, ceiling) if self.jitter else ceiling


class CallBudget:
    """Graph management calls per business account in a sliding window, following Meta's
    tiers (https://developers.facebook.com/docs/graph-api/overview/rate-limiting, WhatsApp
    Business Management API: 200 calls an hour per app and account; 5,000 for an active
    account, one with at least one registered phone number). `limit` is the first,
    `active_limit` the second (accounts `mark_active` named). `try_acquire` is False once the
    window is full; the caller reports the account as rate limited."""

    def __init__(
        self,
        limit: int = 200,
        window_seconds: float = 3600.0,
        *,
        active_limit: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("a call budget needs a positive limit and window")
        self.limit = limit
        self.active_limit = max(active_limit or limit, limit)
        self.window = window_seconds
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._active: set[str] = set()

    def mark_active(self, account: str, active: bool) -> None:
        """Whether the account has a registered number (Meta's larger budget), as a check
        of one of its numbers just said."""
        if active:
            self._active.add(account)
        else:
            self._active.discard(account)

    def limit_of(self, account: str) -> int:
        return self.active_limit if account in self._active else self.limit

    def _live(self, account: str) -> deque[float]:
        calls = self._calls.setdefault(account, deque())
        horizon = self._clock() - self.window
        while calls and calls[0] <= horizon:
            calls.popleft()
        return calls

    def try_acquire(self, account: str) -> bool:
        calls = self._live(account)
        if len(calls) >= self.limit_of(account):
            return False
        calls.append(self._clock())
        return True

    def remaining(self, account: str) -> int:
        return self.limit_of(account) - len(self._live(account))

    def used(self, account: str) -> int:
        return len(self._live(account))

    def forget(self, account: str) -> None:
        self._calls.pop(account, None)
        self._active.discard(account)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# -- the client -----------------------------------------------------------------------------

_M = TypeVar("_M", bound=BaseModel)


class GraphClient:
    """One per operator process: shares a connection pool and the concurrency bound across
    every channel. Use `async with GraphClient(...)` or call `close()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        version: str = DEFAULT_VERSION,
        *,
        timeout: float = 10.0,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        budget: CallBudget | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        observe: Callable[[Call, str], None] | None = None,
        trust_env: bool = False,
        plain_http_host: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        throttle_seconds: float = DEFAULT_THROTTLE_SECONDS,
    ) -> None:
        """`observe(call, outcome)` is told every attempt's outcome ("ok" or an error kind),
        e.g. for `whatsapp_operator_graph_calls_total{call,outcome}`; `trust_env` lets
        HTTPS_PROXY/NO_PROXY apply where Meta is reached through a proxy; `plain_http_host`
        (tests only) is the one non-loopback host plain http may name, a stand-in on a test
        network."""
        url = URL(base_url)
        if not url.is_absolute() or url.scheme not in ("https", "http"):
            raise ValueError("the Graph base URL must be an absolute http(s) URL")
        plain_ok = _is_loopback(url.host) or (
            plain_http_host is not None and url.host == plain_http_host
        )
        if url.scheme == "http" and not plain_ok:
            raise ValueError("the Graph base URL must be https (http only for a loopback stand-in)")
        if url.query_string or url.fragment:
            raise ValueError("the Graph base URL takes no query or fragment")
        if not _VERSION_PATTERN.match(version):
            raise ValueError(f"a Graph API version looks like v25.0, not {version!r}")
        if timeout <= 0 or max_concurrency < 1:
            raise ValueError("the timeout and the concurrency must be positive")
        self.base_url = url
        self.version = version
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.budget = budget
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._slots = asyncio.Semaphore(max_concurrency)
        self._observe = observe
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._unknown_fields: set[str] = set()
        self._clock = clock
        self.throttle_seconds = throttle_seconds
        # Throttled until (clock time), per budget key and for the whole app: no call to Meta
        # for those within the window Meta stated (never a retry of 4 or 80007 in it).
        self._throttled: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"GraphClient({str(self.base_url)!r}, {self.version!r})"

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), trust_env=self._trust_env
            )
        return self._session

    # -- the calls --------------------------------------------------------------------------

    async def check_phone_number(
        self,
        phone_number_id: str,
        credentials: GraphCredentials,
        *,
        fields: Iterable[str] | None = None,
        account: str | None = None,
    ) -> PhoneNumberCheck:
        """The credentials check: token, number and app secret in one call, plus the
        number's names, rating, limits, webhook configuration and health (the version's
        fields by default). A field Meta says the version does not have is left out of this
        and every later check: it degrades that one fact, never the check."""
        asked = [
            name
            for name in (fields if fields is not None else check_fields(self.version))
            if name not in self._unknown_fields
        ]
        while True:
            try:
                body = await self._request(
                    "check",
                    "GET",
                    phone_number_id,
                    credentials,
                    params={"fields": ",".join(asked)},
                    account=account,
                )
            except GraphError as error:
                unknown = _NONEXISTING_FIELD.search(error.message) if error.code == 100 else None
                if (
                    unknown is None
                    or unknown.group(2) != _PHONE_NODE
                    or unknown.group(1) not in asked
                    or unknown.group(1) == "id"
                ):
                    raise
                log.warning("Graph %s has no field %s: not asked again", self.version, unknown[1])
                self._unknown_fields.add(unknown.group(1))
                asked.remove(unknown.group(1))
                continue
            return self._parse("check", PhoneNumberCheck, body, credentials)

    async def webhook_configuration(
        self, phone_number_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> WebhookConfiguration:
        """The read-back: where Meta delivers the number's messages now."""
        check = await self.check_phone_number(
            phone_number_id, credentials, fields=("webhook_configuration",), account=account
        )
        return check.webhook_configuration or WebhookConfiguration()

    async def subscribe_app(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> None:
        """`POST /{waba_id}/subscribed_apps`: the app receives the account's webhooks.
        `account`: the budget's key (default: the business account)."""
        body = await self._request(
            "subscribe",
            "POST",
            f"{waba_id}/subscribed_apps",
            credentials,
            account=account or waba_id,
        )
        self._succeeded("subscribe", body)

    async def unsubscribe_app(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> None:
        body = await self._request(
            "unsubscribe",
            "DELETE",
            f"{waba_id}/subscribed_apps",
            credentials,
            account=account or waba_id,
        )
        self._succeeded("unsubscribe", body)

    async def subscribed_apps(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> list[SubscribedApp]:
        """`GET /{waba_id}/subscribed_apps`: the apps subscribed to the account, each with its
        account-level override when one is set."""
        body = await self._request(
            "subscriptions",
            "GET",
            f"{waba_id}/subscribed_apps",
            credentials,
            account=account or waba_id,
        )
        data = body.get("data")
        apps = []
        for item in data if isinstance(data, list) else []:
            if not isinstance(item, dict):
                continue
            # Meta's reference page nests the app in whatsapp_business_api_data; its OpenAPI
            # description (SubscribedApp) puts id and name on the item itself: either is read.
            app = dict(item.get("whatsapp_business_api_data") or item)
            if "override_callback_uri" in item:  # an account-level override, when set
                app["override_callback_uri"] = item["override_callback_uri"]
            apps.append(self._parse("subscriptions", SubscribedApp, app, credentials))
        return apps

    async def set_webhook_override(
        self,
        phone_number_id: str,
        credentials: GraphCredentials,
        callback_uri: str,
        verify_token: str,
        *,
        account: str | None = None,
    ) -> None:
        """The phone-level override. Meta calls the GET challenge on `callback_uri` during
        this call and fails it with 2200 unless the challenge is echoed."""
        if not callback_uri or not verify_token:
            raise GraphInputError("an override needs a callback URI and a verify token")
        body = await self._request(
            "override",
            "POST",
            phone_number_id,
            credentials,
            json_body={
                "webhook_configuration": {
                    "override_callback_uri": callback_uri,
                    "verify_token": verify_token,
                }
            },
            account=account,
            extra_secrets=(verify_token,),
        )
        self._succeeded("override", body)

    async def clear_webhook_override(
        self, phone_number_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> None:
        body = await self._request(
            "override",
            "POST",
            phone_number_id,
            credentials,
            json_body={"webhook_configuration": {"override_callback_uri": ""}},
            account=account,
        )
        self._succeeded("override", body)

    async def token_app(self, credentials: GraphCredentials) -> TokenApp:
        """`GET /app`: the app the channel's token belongs to (its id keys subscriptions and
        makes the app access token for `debug_token`)."""
        body = await self._request("app", "GET", "app", credentials, params={"fields": "id,name"})
        return self._parse("app", TokenApp, body, credentials)

    async def debug_token(self, credentials: GraphCredentials, app_id: str) -> TokenInfo:
        """`GET /debug_token?input_token=<the channel's token>`, asked with the app access
        token `{app_id}|{app_secret}`: Meta's reference requires "an app access token or an
        app developer's user access token for the app associated with the input_token"
        (https://developers.facebook.com/docs/graph-api/reference/debug_token), and a token
        asking about itself is refused with (#100). `waba_ids` lists the accounts that
        granted the app the token's whatsapp_business_management."""
        if not _ID_PATTERN.match(app_id):
            raise ValueError("an app id is numeric")
        app_token = GraphCredentials(f"{app_id}|{credentials.app_secret}", credentials.app_secret)
        body = await self._request(
            "debug_token",
            "GET",
            "debug_token",
            app_token,
            params={"input_token": credentials.access_token},
            extra_secrets=credentials.secrets(),
        )
        data = body.get("data")
        return self._parse(
            "debug_token", TokenInfo, data if isinstance(data, dict) else {}, credentials
        )

    async def phone_number_ids(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> frozenset[str]:
        """`GET /{waba_id}/phone_numbers?fields=id`, every page (Meta's cursor paging:
        `paging.cursors.after` while `paging.next` is given; `limit` at most 100 per the
        OpenAPI description): the ids of the account's numbers."""
        ids: set[str] = set()
        params = {"fields": "id", "limit": "100"}
        for _ in range(MAX_NUMBER_PAGES):
            body = await self._request(
                "phone_numbers",
                "GET",
                f"{waba_id}/phone_numbers",
                credentials,
                params=params,
                account=account or waba_id,
            )
            data = body.get("data")
            for item in data if isinstance(data, list) else []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    ids.add(item["id"])
            paging = body.get("paging")
            cursors = paging.get("cursors") if isinstance(paging, dict) else None
            after = cursors.get("after") if isinstance(cursors, dict) else None
            if not isinstance(paging, dict) or "next" not in paging or not isinstance(after, str):
                break
            params = {**params, "after": after}
        return frozenset(ids)

    async def exchange_code(self, app_id: str, app_secret: str, code: str) -> str:
        """`GET /oauth/access_token?client_id&client_secret&code`: an Embedded Signup code
        for a business token (Meta's Tech Provider onboarding guide, step 1), asked with the
        app's id and secret and no access token. The code is exchanged once and lives 30 s:
        a refusal (code 100) is never retried."""
        if not _ID_PATTERN.match(app_id):
            raise ValueError("an app id is numeric")
        body = await self._request(
            "exchange",
            "GET",
            "oauth/access_token",
            None,
            params={"client_id": app_id, "client_secret": app_secret, "code": code},
            extra_secrets=(app_secret, code),
        )
        return self._parse(
            "exchange", ExchangedToken, body, GraphCredentials(code, app_secret)
        ).access_token

    async def register_number(
        self, phone_number_id: str, credentials: GraphCredentials, pin: str
    ) -> None:
        """`POST /{phone_number_id}/register` with `messaging_product` and the two-step
        verification `pin` (six digits): the number is registered for the Cloud API."""
        body = await self._request(
            "register",
            "POST",
            f"{phone_number_id}/register",
            credentials,
            json_body={"messaging_product": "whatsapp", "pin": pin},
            extra_secrets=(pin,),
        )
        self._succeeded("register", body)

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _succeeded(call: Call, body: dict[str, Any]) -> None:
        """A write answers `{"success": true}`; anything else did not happen."""
        if body.get("success") is not True:
            raise GraphError(
                GraphErrorKind.UNEXPECTED, call, message='the answer is not {"success": true}'
            )

    def _parse(
        self, call: Call, model: type[_M], body: dict[str, Any], credentials: GraphCredentials
    ) -> _M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
            raise GraphError(
                GraphErrorKind.UNEXPECTED,
                call,
                message=scrub(
                    f"unexpected answer shape at {', '.join(fields)}", credentials.secrets()
                ),
            ) from None

    async def _request(
        self,
        call: Call,
        method: str,
        path: str,
        credentials: GraphCredentials | None,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        account: str | None = None,
        extra_secrets: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """One call, retried as its errors allow; `credentials` None: asked with no access
        token (the code exchange, which names the app in its parameters)."""
        object_id = path.split("/", 1)[0]
        if object_id not in _NAMED_NODES and not _ID_PATTERN.match(object_id):
            raise GraphInputError(f"a Graph object id is numeric, not {object_id!r}")
        secrets = (*(credentials.secrets() if credentials else ()), *extra_secrets)
        url = self.base_url / self.version / path
        query = dict(params or {})
        headers = {}
        if credentials is not None:
            query["appsecret_proof"] = credentials.appsecret_proof
            headers["Authorization"] = f"Bearer {credentials.access_token}"
        attempt = 0
        while True:
            attempt += 1
            self._not_throttled(call, account)
            if (
                self.budget is not None
                and account is not None
                and not self.budget.try_acquire(account)
            ):
                log.debug("graph %s %s: the account's call budget is used up", call, object_id)
                if self._observe is not None:
                    self._observe(call, GraphErrorKind.BUDGET_EXHAUSTED.value)
                raise GraphError(
                    GraphErrorKind.BUDGET_EXHAUSTED,
                    call,
                    message="the account's Graph call budget is used up for now",
                    attempts=attempt,
                )
            outcome = await self._attempt(
                call, method, url, object_id, query, headers, json_body, secrets, attempt
            )
            if self._observe is not None:
                self._observe(call, "ok" if isinstance(outcome, dict) else outcome.kind.value)
            if isinstance(outcome, dict):
                return outcome
            if outcome.kind is GraphErrorKind.RATE_LIMITED:
                self._throttle(outcome, account)
                raise outcome  # never retried within Meta's window
            if not outcome.transient or attempt >= self.retry.attempts:
                raise outcome
            delay = self.retry.delay(attempt - 1, self._rng)
            log.debug(
                "graph %s %s: %s, retry %d in %.2fs", call, object_id, outcome.kind, attempt, delay
            )
            await self._sleep(delay)

    def _not_throttled(self, call: Call, account: str | None) -> None:
        now = self._clock()
        for key in (_APP_WIDE, account):
            until = self._throttled.get(key) if key is not None else None
            if until is not None and now < until:
                if self._observe is not None:
                    self._observe(call, GraphErrorKind.RATE_LIMITED.value)
                raise GraphError(
                    GraphErrorKind.RATE_LIMITED,
                    call,
                    message=f"Meta's rate limit: no call for {until - now:.0f}s more "
                    "(estimated_time_to_regain_access)",
                    retry_after=until - now,
                )

    def _throttle(self, error: GraphError, account: str | None) -> None:
        window = self.throttle_seconds if error.retry_after is None else error.retry_after
        key = _APP_WIDE if error.code == 4 or account is None else account
        self._throttled[key] = max(self._throttled.get(key, 0.0), self._clock() + window)

    async def _attempt(
        self,
        call: Call,
        method: str,
        url: URL,
        object_id: str,
        query: dict[str, str],
        headers: dict[str, str],
        json_body: dict[str, Any] | None,
        secrets: tuple[str, ...],
        attempt: int,
    ) -> dict[str, Any] | GraphError:
        """One HTTP exchange: the answer's JSON object, or the error it amounts to."""
        session = self._client_session()
        try:
            async with (
                self._slots,
                session.request(
                    method,
                    url,
                    params=query,
                    headers=headers,
                    json=json_body,
                    allow_redirects=False,
                ) as response,
            ):
                status = response.status
                raw = await response.read()
                regain = regain_seconds(response.headers)
        except TimeoutError:
            log.debug("graph %s %s: attempt %d timed out", call, object_id, attempt)
            return GraphError(
                GraphErrorKind.UNAVAILABLE, call, message="timed out", attempts=attempt
            )
        except aiohttp.ClientError as exc:
            # The exception's own text may carry the URL and its query (the proof): never used.
            log.debug("graph %s %s: attempt %d: %s", call, object_id, attempt, type(exc).__name__)
            return GraphError(
                GraphErrorKind.UNAVAILABLE,
                call,
                message=f"connection failed ({type(exc).__name__})",
                attempts=attempt,
            )
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if status < 300 and isinstance(body, dict) and "error" not in body:
            log.debug("graph %s %s: HTTP %d", call, object_id, status)
            return body
        graph_error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(graph_error, dict):
            kind = classify(call, status, None, None, "")
            log.debug("graph %s %s: HTTP %d without a Graph error", call, object_id, status)
            return GraphError(
                kind,
                call,
                message="an answer that is not a Graph error",
                http_status=status,
                attempts=attempt,
            )
        code = graph_error.get("code")
        subcode = graph_error.get("error_subcode")
        code = code if isinstance(code, int) else None
        subcode = subcode if isinstance(subcode, int) else None
        message = scrub(_explained(graph_error), secrets)[:MESSAGE_CAP]
        trace = graph_error.get("fbtrace_id")
        error = GraphError(
            classify(call, status, code, subcode, message),
            call,
            message=message,
            http_status=status,
            code=code,
            subcode=subcode,
            fbtrace_id=scrub(trace, secrets)[:64] if isinstance(trace, str) else None,
            attempts=attempt,
            retry_after=regain,
        )
        log.debug(
            "graph %s %s: HTTP %d, code %s/%s (%s)",
            call,
            object_id,
            status,
            code,
            subcode,
            error.kind,
        )
        return error

"""What the stand-in remembers: apps, tokens, business accounts (WABAs) and phone numbers,
with per-number faults. Seeded over the admin API (`/_standin/...`) or a seed file."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CanSendMessage = Literal["AVAILABLE", "LIMITED", "BLOCKED"]

# Which Graph call a request is, for fault filters and call counts.
CallName = Literal[
    "check",
    "override",
    "subscribe",
    "unsubscribe",
    "subscriptions",
    "debug_token",
    "app",
    "phone_numbers",
    "exchange",
    "register",
]


class FaultKind(StrEnum):
    TOKEN_INVALID = "token_invalid"  # 190
    TOKEN_EXPIRED = "token_expired"  # 190 / 463
    PERMISSION_DENIED = "permission_denied"  # 10
    APP_RATE_LIMITED = "app_rate_limited"  # 4
    ACCOUNT_RATE_LIMITED = "account_rate_limited"  # 80007
    UNKNOWN_ERROR = "unknown_error"  # 1, HTTP 500
    SERVICE_UNAVAILABLE = "service_unavailable"  # 2, HTTP 503
    SERVER_ERROR = "server_error"  # HTTP 502 with a non-Graph body
    TIMEOUT = "timeout"  # no answer for `seconds` (default: until the stand-in stops)
    SLOW = "slow"  # a normal answer after `seconds`
    AUTH_EXCEPTION = "auth_exception"  # 0
    CAPABILITY_MISSING = "capability_missing"  # 3
    ASSET_ACCESS_MISSING = "asset_access_missing"  # 200
    POLICY_BLOCKED = "policy_blocked"  # 368
    ACCOUNT_LOCKED = "account_locked"  # 131031
    PIN_MISMATCH = "pin_mismatch"  # 133005
    REGISTRATION_LIMITED = "registration_limited"  # 133016
    REGISTRATION_UNAVAILABLE = "registration_unavailable"  # 133004, HTTP 503


class Fault(BaseModel):
    """One injected fault of a phone number: applies to the next `times` matching calls (all
    of them while `times` is None), to calls named `call` (any call when None)."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    times: int | None = Field(default=None, ge=1)
    call: CallName | None = None
    seconds: float | None = Field(default=None, ge=0)


class NumberSeed(BaseModel):
    """A phone number as the admin API creates it (replacing one with the same id)."""

    model_config = ConfigDict(extra="forbid")

    phone_number_id: str = Field(pattern=r"^[0-9]{1,20}$")
    waba_id: str = Field(pattern=r"^[0-9]{1,20}$")
    access_token: str = Field(min_length=1)
    app_secret: str = Field(min_length=1)
    app_id: str | None = Field(default=None, pattern=r"^[0-9]{1,20}$")
    display_phone_number: str = "+1 555-010-0000"
    verified_name: str = "Stand-in Business"
    quality_rating: str = "GREEN"
    status: str = "CONNECTED"
    name_status: str = "APPROVED"
    code_verification_status: str = "VERIFIED"
    messaging_limit_tier: str = "TIER_1K"
    health: CanSendMessage = "AVAILABLE"
    # The callback entered for the app in the App Dashboard: where Meta sends account
    # webhooks (and events of numbers without an override). None: as before, else the
    # stand-in's own recorder.
    app_callback_url: str | None = None
    # The number's two-step verification PIN, when one is set already (a register call with
    # another PIN is Meta's 133005).
    pin: str | None = Field(default=None, pattern=r"^[0-9]{6}$", repr=False)


class NumberPatch(BaseModel):
    """Changes to a seeded number: health, rating, credentials (a new token, an expired one,
    another app secret)."""

    model_config = ConfigDict(extra="forbid")

    health: CanSendMessage | None = None
    quality_rating: str | None = None
    status: str | None = None
    messaging_limit_tier: str | None = None
    access_token: str | None = Field(default=None, min_length=1)
    token_expired: bool | None = None
    # debug_token's expires_at of the number's token (epoch seconds; 0: never).
    token_expires_at: int | None = Field(default=None, ge=0)
    app_secret: str | None = Field(default=None, min_length=1)


class AppSeed(BaseModel):
    """An app as the admin API creates it (a platform's own app, for Embedded Signup)."""

    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(pattern=r"^[0-9]{1,20}$")
    app_secret: str = Field(min_length=1)
    name: str = "Stand-in Platform App"


class SignupRequest(BaseModel):
    """The admin call that stands for a tenant finishing Embedded Signup in the popup: the
    seeded number (and its account) granted to `app_id`, whose code this issues.
    `issued_seconds_ago`: a code as old as that (tests of the 30 s window)."""

    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(pattern=r"^[0-9]{1,20}$")
    phone_number_id: str = Field(pattern=r"^[0-9]{1,20}$")
    issued_seconds_ago: float = Field(default=0.0, ge=0)
    # The popup this finishes (the SDK stand-in's session, `GET /_standin/sessions`).
    session: str | None = None


# The code Embedded Signup returns "has a time-to-live of 30 seconds" (Meta's Tech Provider
# onboarding guide, step 1); it is exchanged once.
SIGNUP_CODE_SECONDS = 30.0


@dataclass
class PopupSession:
    """An Embedded Signup popup the SDK stand-in opened; `result` once the tenant (the
    admin call) finished it: the code and the session event's ids."""

    app_id: str
    config_id: str
    result: dict[str, str] | None = None


@dataclass
class SignupCode:
    app_id: str
    phone_number_id: str
    waba_id: str
    issued_at: float
    used: bool = False


def derived_app_id(app_secret: str) -> str:
    """A stable numeric app id for an app seeded without one."""
    return str(int(hashlib.sha256(app_secret.encode()).hexdigest()[:12], 16)).rjust(15, "1")


@dataclass
class App:
    app_id: str
    secret: str
    name: str = "Stand-in App"
    # The callback a person entered in the App Dashboard (Meta's `application` level, how a
    # manual webhook is registered); None: the stand-in's own recorder.
    callback_url: str | None = None


@dataclass
class Token:
    app_id: str
    expired: bool = False
    expires_at: int = 0  # debug_token's expires_at: 0 is Meta's "never"
    # What the token may see: Meta answers anything else as not existing (100/33).
    numbers: set[str] = field(default_factory=set)
    # Business accounts that granted the app this token's permissions, oldest first (a dict
    # as an ordered set: debug_token lists the newest first, as Meta does).
    wabas: dict[str, None] = field(default_factory=dict)


@dataclass
class Waba:
    waba_id: str
    subscribed_apps: set[str] = field(default_factory=set)
    numbers: set[str] = field(default_factory=set)
    # The WABA-level alternate callback per app (Meta's webhook override page: set with
    # `override_callback_uri` and `verify_token` on POST subscribed_apps, removed by a
    # POST without a body).
    overrides: dict[str, str] = field(default_factory=dict)


@dataclass
class PhoneNumber:
    id: str
    waba_id: str
    app_id: str
    access_token: str
    display_phone_number: str
    verified_name: str
    quality_rating: str
    status: str
    name_status: str
    code_verification_status: str
    messaging_limit_tier: str
    health: CanSendMessage
    override_callback_uri: str | None = None
    override_verify_token: str | None = None
    # The two-step verification PIN set by registering the number.
    pin: str | None = field(default=None, repr=False)
    # Register calls answered (Meta allows 10 per number in 72 hours: 133016 beyond).
    registrations: int = 0
    faults: list[Fault] = field(default_factory=list)

    def take_fault(self, call: CallName) -> Fault | None:
        """The first fault that applies to `call`, counted down."""
        for index, fault in enumerate(self.faults):
            if fault.call is not None and fault.call != call:
                continue
            if fault.times is not None:
                if fault.times <= 1:
                    del self.faults[index]
                else:
                    self.faults[index] = fault.model_copy(update={"times": fault.times - 1})
            return fault
        return None


@dataclass
class World:
    apps: dict[str, App] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    wabas: dict[str, Waba] = field(default_factory=dict)
    numbers: dict[str, PhoneNumber] = field(default_factory=dict)
    # Graph calls answered (faults included), by (object id, call name).
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Embedded Signup codes issued (the admin call), by code.
    codes: dict[str, SignupCode] = field(default_factory=dict)
    popups: dict[str, PopupSession] = field(default_factory=dict)

    def seed(self, seed: NumberSeed) -> PhoneNumber:
        app_id = seed.app_id or derived_app_id(seed.app_secret)
        before = self.apps.get(app_id)
        callback = seed.app_callback_url or (before.callback_url if before else None)
        self.apps[app_id] = App(app_id, seed.app_secret, callback_url=callback)
        token = self.tokens.get(seed.access_token)
        if token is None or token.app_id != app_id:
            token = self.tokens[seed.access_token] = Token(app_id)
        token.numbers.add(seed.phone_number_id)
        token.wabas[seed.waba_id] = None
        previous = self.numbers.get(seed.phone_number_id)
        if previous is not None:
            self.wabas[previous.waba_id].numbers.discard(previous.id)
        self.wabas.setdefault(seed.waba_id, Waba(seed.waba_id)).numbers.add(seed.phone_number_id)
        number = PhoneNumber(
            id=seed.phone_number_id,
            waba_id=seed.waba_id,
            app_id=app_id,
            access_token=seed.access_token,
            display_phone_number=seed.display_phone_number,
            verified_name=seed.verified_name,
            quality_rating=seed.quality_rating,
            status=seed.status,
            name_status=seed.name_status,
            code_verification_status=seed.code_verification_status,
            messaging_limit_tier=seed.messaging_limit_tier,
            health=seed.health,
            pin=seed.pin,
        )
        self.numbers[number.id] = number
        return number

    def add_app(self, seed: AppSeed) -> App:
        app = self.apps[seed.app_id] = App(seed.app_id, seed.app_secret, seed.name)
        return app

    def business_token(self, code: SignupCode, token_text: str) -> Token:
        """The business token a code is exchanged for: the platform app's, granted the
        customer's account and number."""
        token = self.tokens[token_text] = Token(code.app_id)
        token.numbers.add(code.phone_number_id)
        token.wabas[code.waba_id] = None
        return token

    def remove(self, number: PhoneNumber) -> None:
        self.wabas[number.waba_id].numbers.discard(number.id)
        del self.numbers[number.id]

    def waba_numbers(self, waba_id: str) -> list[PhoneNumber]:
        waba = self.wabas.get(waba_id)
        return [self.numbers[n] for n in sorted(waba.numbers)] if waba else []

    def patch(self, number: PhoneNumber, patch: NumberPatch) -> None:
        if patch.health is not None:
            number.health = patch.health
        if patch.quality_rating is not None:
            number.quality_rating = patch.quality_rating
        if patch.status is not None:
            number.status = patch.status
        if patch.messaging_limit_tier is not None:
            number.messaging_limit_tier = patch.messaging_limit_tier
        if patch.app_secret is not None:
            self.apps[number.app_id].secret = patch.app_secret
        if patch.access_token is not None:
            token = self.tokens.setdefault(patch.access_token, Token(number.app_id))
            token.numbers.add(number.id)
            token.wabas[number.waba_id] = None
            number.access_token = patch.access_token
        if patch.token_expired is not None:
            self.tokens[number.access_token].expired = patch.token_expired
        if patch.token_expires_at is not None:
            self.tokens[number.access_token].expires_at = patch.token_expires_at

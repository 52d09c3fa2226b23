"""What Graph answers: the fields a check reads by version, and the models of each answer."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

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

# What a channel's token must grant: managing the account (subscriptions, the override,
# the number's fields) and messaging (https://developers.facebook.com/docs/whatsapp/
# access-tokens: "whatsapp_business_management" and "whatsapp_business_messaging").
WHATSAPP_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
CHECK_FIELDS = check_fields(DEFAULT_VERSION)

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

"""The WhatsAppChannel contract: one source of truth for facade, operator and receiver.

The CRD in `crds/` is generated from this module (`python -m whatsapp_channel.crd`) and a
test proves they agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    SecretStr,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

GROUP = "whatsapp.hydracore.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "WhatsAppChannel"
PLURAL = "whatsappchannels"
SINGULAR = "whatsappchannel"
SHORT_NAMES = ("wac",)
CATEGORIES = ("hydracore", "whatsapp")

# Every Meta id (phone number, business account, app) is a numeric string that fits 20 digits
# (15-16 today). One pattern for the REST body, the CRD and the Graph client alike: an id one
# accepts and another refuses is a channel stuck `pending` forever.
META_ID_MAX_LENGTH = 20
META_ID_PATTERN = rf"^[0-9]{{5,{META_ID_MAX_LENGTH}}}$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
TOKEN_MAX_LENGTH = 2048
# Meta's tokens and secrets are printable ASCII; anything else is a client mistake, and
# rejecting it here keeps every accepted token's seal within SEALED_MAX_LENGTH.
TOKEN_PATTERN = r"^[\x21-\x7e]+$"
SEALED_MAX_LENGTH = 8192
# Status times are RFC 3339 (`now_rfc3339`: 20 characters); the CRD also checks the format.
TIME_MAX_LENGTH = 40

# Fields of a channel's credentials: the CR's sealed field names and the keys of the
# generated Secret (and of a user's secretRef Secret).
CREDENTIAL_FIELDS: Mapping[str, str] = {
    "accessToken": "access_token",
    "appSecret": "app_secret",
    "verifyToken": "verify_token",
}

# The operator's finalizer. The facade creates channels with it already in place, which
# saves the operator a patch per channel; channels applied by hand get it from the operator.
FINALIZER = f"{GROUP}/finalizer"

# The prefix of our labels and annotations (the channel Secret's: `channel_secret`).
LABEL_PREFIX = GROUP

# Where the operator keeps its sealing keys, in its own namespace.
SEALING_KEYS_SECRET = "whatsapp-channels-sealing-keys"
SEALING_PUBLIC_CONFIGMAP = "whatsapp-channels-sealing-public"
# The ConfigMap's data: the key id new seals use, and every active public key as JSON
# {key id: base64 of the raw X25519 public key}. The Secret's data: {key id: raw private key}.
ACTIVE_KEY_ID_FIELD = "activeKeyId"
PUBLIC_KEYS_FIELD = "publicKeys"
DEFAULT_NAMESPACE = "whatsapp-channels"

# Condition types; the reasons they carry are in `whatsapp_channel.reasons`.
READY = "Ready"
SECRET_SYNCED = "SecretSynced"
WEBHOOK_CONFIGURED = "WebhookConfigured"
CREDENTIALS_VALID = "CredentialsValid"
WEBHOOK_REGISTERED = "WebhookRegistered"
CAN_SEND_MESSAGE = "CanSendMessage"
CONDITION_TYPES = (
    SECRET_SYNCED,
    WEBHOOK_CONFIGURED,
    CREDENTIALS_VALID,
    WEBHOOK_REGISTERED,
    CAN_SEND_MESSAGE,
    READY,
)
# How the channel's webhook gets to Meta: the operator registers it (a phone-level override)
# or a person enters it in the Meta app (the receiver reports Meta's challenge).
WebhookMode = Literal["managed", "manual"]
WEBHOOK_MODES: tuple[WebhookMode, ...] = ("managed", "manual")

RestStatus = Literal["pending", "active", "disabled", "error", "deleting"]


def webhook_path(instance_id: str) -> str:
    """The receiver's per-channel path; the base URL is configuration."""
    return f"/hooks/whatsapp/{instance_id}"


def webhook_url(public_base_url: str, instance_id: str) -> str:
    return public_base_url.rstrip("/") + webhook_path(instance_id)


# --- the custom resource ----------------------------------------------------------------


class _CamelModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class SealedCredentials(_CamelModel):
    """Each field is a seal made by `whatsapp_channel.sealing.seal` for this channel.
    `appSecret` unset: the operator's platform app's secret; `signupCode` instead of
    `accessToken`: an Embedded Signup code the operator exchanges (docs/embedded-signup.md)."""

    access_token: str | None = Field(
        default=None, alias="accessToken", min_length=1, max_length=SEALED_MAX_LENGTH
    )
    signup_code: str | None = Field(
        default=None, alias="signupCode", min_length=1, max_length=SEALED_MAX_LENGTH
    )
    app_secret: str | None = Field(
        default=None, alias="appSecret", min_length=1, max_length=SEALED_MAX_LENGTH
    )
    verify_token: str = Field(alias="verifyToken", min_length=1, max_length=SEALED_MAX_LENGTH)

    @model_validator(mode="after")
    def _one_token(self) -> SealedCredentials:
        if (self.access_token is None) == (self.signup_code is None):
            raise ValueError("give exactly one of accessToken and signupCode")
        return self


# The field names of what the operator seals for itself in status.signup.
SIGNUP_TOKEN_FIELD = "signupAccessToken"
SIGNUP_PIN_FIELD = "registrationPin"


class SignupStatus(_CamelModel):
    """status.signup: the business token an Embedded Signup code was exchanged for and the
    number's two-step verification PIN, both sealed by the operator to its own key; `code`
    is the sha256 of the sealed code (a new code in the spec is exchanged anew)."""

    code: str
    access_token: str = Field(alias="accessToken")
    pin: str
    registered: bool = False


class RegistrationSpec(_CamelModel):
    """spec.registration: the operator registers the number for the Cloud API when Meta says
    it is PENDING (docs/meta.md, "Registering a number"). `pin`: the number's two-step
    verification PIN sealed for this channel (field `REGISTRATION_PIN_FIELD`); unset: the
    operator generates one and keeps it sealed to its own key in status.registration."""

    pin: str | None = Field(default=None, min_length=1, max_length=SEALED_MAX_LENGTH)


# Meta's two-step verification PIN.
REGISTRATION_PIN_PATTERN = r"^[0-9]{6}$"
# The sealing field of a registration PIN: spec.registration.pin and status.registration.pin
# (and the PIN kept in status.signup).
REGISTRATION_PIN_FIELD = SIGNUP_PIN_FIELD


class RegistrationStatus(_CamelModel):
    """status.registration: the PIN the operator generated (sealed to its own key; unset when
    the spec gives one) and whether Meta registered the number with it."""

    pin: str | None = None
    registered: bool = False


# A Secret named by spec.secretRef is read only when this annotation on it names the channel
# (a comma-separated list of channel names, i.e. instance ids): writing a channel must not
# be a way to read a Secret its author cannot read.
SECRET_REF_CHANNELS_ANNOTATION = f"{LABEL_PREFIX}/channels"


class SecretRef(_CamelModel):
    """An existing Secret in the channel's namespace with keys access_token, app_secret,
    verify_token, and the annotation `SECRET_REF_CHANNELS_ANNOTATION` naming the channel."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS1123_SUBDOMAIN_PATTERN)


class WebhookSpec(_CamelModel):
    """`mode`: managed (the operator registers the webhook at Meta) or manual; unset: the
    operator's default (WA_OPERATOR_WEBHOOK_MODE)."""

    mode: WebhookMode | None = None


class ChannelSpec(_CamelModel):
    instance_id: str = Field(alias="instanceId", pattern=UUID_PATTERN)
    phone_number_id: str = Field(alias="phoneNumberId", pattern=META_ID_PATTERN)
    display_phone: str | None = Field(default=None, alias="displayPhone", pattern=E164_PATTERN)
    # The WhatsApp Business Account of the number (managed webhooks subscribe the app to it);
    # unset: the operator asks Meta (debug_token's granular scopes).
    waba_id: str | None = Field(default=None, alias="wabaId", pattern=META_ID_PATTERN)
    webhook: WebhookSpec | None = None
    enabled: bool = True
    sealed: SealedCredentials | None = None
    secret_ref: SecretRef | None = Field(default=None, alias="secretRef")
    # Opt-in: the operator registers a PENDING number (issue 19).
    registration: RegistrationSpec | None = None


class Condition(_CamelModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str
    last_transition_time: str = Field(alias="lastTransitionTime")
    observed_generation: int = Field(alias="observedGeneration")


class PhoneClaim(_CamelModel):
    """The operator's record of a proven claim on a number (`whatsapp_channel.phone_claims`)."""

    phone_number_id: str = Field(alias="phoneNumberId", pattern=META_ID_PATTERN)
    since: str = Field(max_length=TIME_MAX_LENGTH)


class ChannelStatus(_CamelModel):
    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    conditions: list[Condition] = Field(default_factory=list)
    webhook_url: str | None = Field(default=None, alias="webhookUrl")
    secret_name: str | None = Field(default=None, alias="secretName")
    last_challenge_at: str | None = Field(
        default=None, alias="lastChallengeAt", max_length=TIME_MAX_LENGTH
    )
    last_event_at: str | None = Field(default=None, alias="lastEventAt", max_length=TIME_MAX_LENGTH)
    last_account_event_at: str | None = Field(
        default=None, alias="lastAccountEventAt", max_length=TIME_MAX_LENGTH
    )
    # What Meta's last check said about the number (issue 11), and when it was asked.
    verified_name: str | None = Field(default=None, alias="verifiedName")
    quality_rating: str | None = Field(default=None, alias="qualityRating")
    phone_status: str | None = Field(default=None, alias="phoneStatus")
    messaging_limit: str | None = Field(default=None, alias="messagingLimit")
    checked_at: str | None = Field(default=None, alias="checkedAt", max_length=TIME_MAX_LENGTH)
    # The business account the managed webhook was registered under (spec.wabaId, or found).
    waba_id: str | None = Field(default=None, alias="wabaId")
    phone_claim: PhoneClaim | None = Field(default=None, alias="phoneClaim")
    name_status: str | None = Field(default=None, alias="nameStatus")
    throughput: str | None = None
    platform_type: str | None = Field(default=None, alias="platformType")
    # The token's Meta app (subscriptions are keyed by it, issue 19), and who subscribed the
    # app to the account: "operator" (undone with the account's last channel) or
    # "preexisting" (never undone).
    app_id: str | None = Field(default=None, alias="appId")
    app_subscription: str | None = Field(default=None, alias="appSubscription")
    # What Meta's debug_token says of the access token (issue 19): its type, when it and its
    # data access expire (RFC 3339, or "never").
    token_type: str | None = Field(default=None, alias="tokenType")
    token_expires_at: str | None = Field(default=None, alias="tokenExpiresAt")
    data_access_expires_at: str | None = Field(default=None, alias="dataAccessExpiresAt")
    signup: SignupStatus | None = None
    registration: RegistrationStatus | None = None


def channel_body(
    *,
    namespace: str,
    name: str,
    spec: ChannelSpec,
    resource_version: str | None = None,
    finalizers: Sequence[str] = (),
) -> dict[str, Any]:
    """A WhatsAppChannel object as the apiserver takes it."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    if finalizers:
        metadata["finalizers"] = list(finalizers)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
    }


# --- conditions -------------------------------------------------------------------------


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type_: str,
    *,
    ok: bool | None,
    reason: str,
    message: str,
    generation: int,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Return the full conditions list with `type_` set.

    lastTransitionTime moves only when the status flips; observedGeneration is always
    written. The whole list is returned because a merge patch replaces lists whole.
    `ok=None` is status Unknown (nothing decided, e.g. Meta did not answer).
    """
    status = "Unknown" if ok is None else "True" if ok else "False"
    previous = next((c for c in conditions if c.get("type") == type_), None)
    if previous is not None and previous.get("status") == status:
        transition = str(previous.get("lastTransitionTime") or now or now_rfc3339())
    else:
        transition = now or now_rfc3339()
    updated = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
        "observedGeneration": generation,
    }
    result = [dict(c) for c in conditions if c.get("type") != type_]
    result.append(updated)
    order = {t: i for i, t in enumerate(CONDITION_TYPES)}
    result.sort(key=lambda c: order.get(str(c.get("type")), len(order)))
    return result


def find_condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def rest_status(obj: Mapping[str, Any]) -> RestStatus:
    """The one mapping from a WhatsAppChannel's conditions to the REST `status` string."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    if metadata.get("deletionTimestamp"):
        return "deleting"
    ready = find_condition(status.get("conditions") or [], READY)
    generation = metadata.get("generation")
    if ready is None or ready.get("observedGeneration") != generation:
        return "pending"
    if ready.get("status") == "True":
        return "active" if spec.get("enabled", True) else "disabled"
    if ready.get("status") == "Unknown":
        return "pending"
    return "error"


def status_reason(obj: Mapping[str, Any]) -> str | None:
    """The reason of the Ready condition for the current generation (REST `status_reason`)."""
    metadata = obj.get("metadata") or {}
    if metadata.get("deletionTimestamp"):
        return None
    ready = find_condition((obj.get("status") or {}).get("conditions") or [], READY)
    if ready is None or ready.get("observedGeneration") != metadata.get("generation"):
        return None
    reason = ready.get("reason")
    return str(reason) if reason else None


# --- the REST shapes (the seed contract) -------------------------------------------------


def _secret_token(
    min_length: int, max_length: int, pattern: str = TOKEN_PATTERN
) -> GetPydanticSchema:
    """A token validated exactly as a constrained string (same JSON schema, same 422 error
    types), then held as a SecretStr, so no repr, log or dump of the model prints it."""
    checked = core_schema.str_schema(min_length=min_length, max_length=max_length, pattern=pattern)
    masked = core_schema.plain_serializer_function_ser_schema(str)  # "**********"
    return GetPydanticSchema(
        lambda _type, _handler: core_schema.no_info_after_validator_function(
            SecretStr, checked, serialization=masked
        )
    )


class ChannelSetup(BaseModel):
    """POST body of /v1/instances/{instance_id}/channels/whatsapp. The secrets are
    `SecretStr`: `.get_secret_value()` is the one way to read them. Either an access token
    or an Embedded Signup code (the document says so with oneOf)."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["access_token"]}, {"required": ["signup_code"]}]}
    )

    access_token: Annotated[SecretStr, _secret_token(1, TOKEN_MAX_LENGTH)] | None = Field(
        default=None,
        title="Access Token",
        description="WABA access token (stored encrypted via MCP credentials)",
    )
    app_secret: Annotated[SecretStr, _secret_token(1, TOKEN_MAX_LENGTH)] | None = Field(
        default=None,
        title="App Secret",
        description="Meta App Secret for X-Hub-Signature-256 verification on POST webhooks",
    )
    display_phone: str | None = Field(
        default=None,
        title="Display Phone",
        description="Display phone number (e.g. +61400111222)",
        pattern=E164_PATTERN,
    )
    phone_number_id: str = Field(
        title="Phone Number Id",
        description="Meta phone number ID from Embedded Signup",
        pattern=META_ID_PATTERN,
    )
    verify_token: Annotated[SecretStr, _secret_token(8, 256)] | None = Field(
        default=None,
        title="Verify Token",
        description="Custom verify token for GET webhook challenge. "
        "Auto-generated if not provided.",
    )
    waba_id: str | None = Field(
        default=None,
        title="Waba Id",
        description="The number's WhatsApp Business Account id, for the managed webhook "
        "(the app is subscribed to it). Optional: without it the operator finds the account "
        "from the token's granular scopes (debug_token).",
        pattern=META_ID_PATTERN,
    )
    signup_code: Annotated[SecretStr, _secret_token(1, TOKEN_MAX_LENGTH)] | None = Field(
        default=None,
        title="Signup Code",
        description="Instead of access_token: the code Embedded Signup returned (it lives 30 "
        "seconds). Stored encrypted; the operator exchanges it with the platform's Meta app "
        "for a business token, subscribes the app and registers the number "
        "(docs/embedded-signup.md). Give phone_number_id and, from the session's "
        "WA_EMBEDDED_SIGNUP event, waba_id.",
    )
    register_number: bool = Field(
        default=False,
        strict=True,
        title="Register Number",
        description="Opt-in: the operator registers the number for the Cloud API when Meta "
        'says it is PENDING (docs/meta.md, "Registering a number"); the channel is pending '
        "until Meta says CONNECTED. Without registration_pin the operator generates the PIN.",
    )
    registration_pin: Annotated[SecretStr, _secret_token(6, 6, REGISTRATION_PIN_PATTERN)] | None = (
        Field(
            default=None,
            title="Registration Pin",
            description="The number's two-step verification PIN (six digits), stored "
            "encrypted; implies register_number.",
        )
    )

    @model_validator(mode="wrap")
    @classmethod
    def _one_token(cls, data: Any, handler: Any, info: ValidationInfo) -> Any:
        """Exactly one of access_token and signup_code, each a string when given (never
        null). Neither: access_token is reported missing beside the body's other errors,
        exactly as when it was required; both: a refusal of the body."""
        ours: list[InitErrorDetails] = []
        if isinstance(data, dict):
            tokens = ("access_token", "signup_code")
            ours = [
                {"type": "string_type", "loc": (key,), "input": None}
                for key in tokens
                if key in data and data[key] is None
            ]
            if not any(data.get(key) is not None for key in tokens) and not ours:
                ours = [{"type": "missing", "loc": ("access_token",), "input": data}]
        try:
            setup = handler(data)
        except ValidationError as exc:
            if not ours:
                raise
            raise ValidationError.from_exception_data(
                exc.title, [*ours, *map(_init_details, exc.errors())]
            ) from None
        if ours:
            raise ValidationError.from_exception_data(cls.__name__, ours)
        if setup.access_token is not None and setup.signup_code is not None:
            raise PydanticCustomError(
                "credentials_conflict", "give access_token or signup_code, not both"
            )
        return setup


def _init_details(error: Any) -> InitErrorDetails:
    """A reported error as `ValidationError.from_exception_data` takes it again."""
    if error["type"] == "value_error":  # its ctx holds the exception: re-raised as custom
        return {
            "type": PydanticCustomError("value_error", error["msg"]),
            "loc": error["loc"],
            "input": error["input"],
        }
    details: InitErrorDetails = {
        "type": error["type"],
        "loc": error["loc"],
        "input": error["input"],
    }
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


class ChannelView(BaseModel):
    """The body GET and POST answer with."""

    display_phone: str | None = Field(default=None, title="Display Phone")
    enabled: bool = Field(title="Enabled")
    phone_number_id: str = Field(title="Phone Number Id")
    status: str = Field(title="Status")
    webhook_url: str | None = Field(default=None, title="Webhook Url")
    status_reason: str | None = Field(
        default=None,
        title="Status Reason",
        description="Why the status is what it is: the Ready condition's reason "
        "(e.g. ChannelReady, TokenExpired, CallbackVerificationFailed, MetaUnavailable).",
    )


class ChannelCreated(ChannelView):
    """POST's answer: when the verify token was generated, it is shown this once."""

    verify_token: str | None = Field(
        default=None,
        title="Verify Token",
        description="The generated verify token, returned only by the POST that made it.",
    )


def channel_view(obj: Mapping[str, Any]) -> ChannelView:
    """The one mapping from a WhatsAppChannel object to its REST shape."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    return ChannelView(
        display_phone=spec.get("displayPhone"),
        enabled=bool(spec.get("enabled", True)),
        phone_number_id=str(spec.get("phoneNumberId", "")),
        status=rest_status(obj),
        webhook_url=status.get("webhookUrl"),
        status_reason=status_reason(obj),
    )


_UUID_RE = re.compile(UUID_PATTERN)


def is_channel_name(value: str) -> bool:
    """True when `value` is a canonical (lower-case) UUID, the only valid channel name."""
    return bool(_UUID_RE.fullmatch(value))

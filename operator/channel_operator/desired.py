"""What a channel should have, as plain data: the generated Secret and the status.

Pure functions, no I/O: everything here is tested without a cluster. Reasons come from
`whatsapp_channel.reasons`; messages never carry a credential; `Credentials` refuses to
print its values.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from whatsapp_channel import channel_secret
from whatsapp_channel.channel_secret import DATA_KEYS, MANAGED_BY_LABEL, MANAGED_BY_VALUE
from whatsapp_channel.model import (
    CAN_SEND_MESSAGE,
    CREDENTIAL_FIELDS,
    CREDENTIALS_VALID,
    KIND,
    READY,
    SECRET_SYNCED,
    WEBHOOK_CONFIGURED,
    WEBHOOK_REGISTERED,
    ChannelSpec,
    SealedCredentials,
    WebhookMode,
    find_condition,
    set_condition,
    webhook_url,
)
from whatsapp_channel.reasons import (
    CHANNEL_DISABLED,
    CHANNEL_READY,
    INVALID_SPEC,
    NOT_CHECKED,
    NUMBER_REGISTERING,
    PLATFORM_APP_MISSING,
    SECRET_NOT_SYNCED,
    SECRET_REF_INCOMPLETE,
    SYNCED,
    WEBHOOK_DISABLED,
    WEBHOOK_ENABLED,
    ReasonedFailure,
)
from whatsapp_channel.sealing import SealError, unseal
from whatsapp_channel.untrusted import shown

JSON = dict[str, Any]


class ChannelFailure(ReasonedFailure):
    """Why a channel cannot be made real now (`whatsapp_channel.reasons` lists the reasons)."""


@dataclass(frozen=True)
class ChannelRef:
    """Who a channel is: enough to name, own and report on what it gets."""

    namespace: str
    name: str
    uid: str
    generation: int

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ChannelRef:
        metadata = body["metadata"]
        return cls(
            namespace=str(metadata["namespace"]),
            name=str(metadata["name"]),
            uid=str(metadata["uid"]),
            generation=int(metadata.get("generation") or 1),
        )

    @property
    def secret_name(self) -> str:
        return channel_secret.secret_name(self.name)


@dataclass(frozen=True, repr=False)
class Credentials:
    access_token: str
    app_secret: str
    verify_token: str

    def __repr__(self) -> str:
        return "Credentials(<redacted>)"

    def as_data(self) -> dict[str, str]:
        """The channel Secret's data, in clear text."""
        return {
            "access_token": self.access_token,
            "app_secret": self.app_secret,
            "verify_token": self.verify_token,
        }


# --- credentials ------------------------------------------------------------------------


def open_seals(
    private_keys: Mapping[str, bytes],
    ref: ChannelRef,
    sealed: SealedCredentials,
    platform_app_secret: str | None = None,
    access_token: str | None = None,
) -> Credentials:
    """Unseal the fields for exactly this channel; SealError says which and why. Without a
    sealed app secret, the platform app's (`platform_app`) is used; without that either,
    the channel fails with PlatformAppMissing. `access_token`: the business token of a
    signup code (`signup`), for a spec that seals no access token."""
    values = {
        field: unseal(
            private_keys,
            namespace=ref.namespace,
            name=ref.name,
            field=field,
            sealed=value,
        )
        for field, attribute in CREDENTIAL_FIELDS.items()
        if (value := getattr(sealed, attribute)) is not None
    }
    app_secret = values.get("appSecret", platform_app_secret)
    if app_secret is None:
        raise ChannelFailure(
            PLATFORM_APP_MISSING,
            "spec.sealed has no appSecret and the operator holds no platform app "
            "(operator.platformApp.existingSecret): seal the app secret",
        )
    token = values.get("accessToken", access_token)
    if token is None:
        raise ChannelFailure(INVALID_SPEC, "spec.sealed gives no access token")
    return Credentials(
        access_token=token,
        app_secret=app_secret,
        verify_token=values["verifyToken"],
    )


def seal_failure(error: SealError) -> ChannelFailure:
    return ChannelFailure(error.reason, error.message)


def credentials_from_secret(secret: Mapping[str, Any]) -> Credentials:
    """The credentials of a user's Secret named by `spec.secretRef`."""
    name = shown((secret.get("metadata") or {}).get("name", ""))
    data = secret.get("data") or {}
    missing = [key for key in DATA_KEYS if not data.get(key)]
    if missing:
        raise ChannelFailure(
            SECRET_REF_INCOMPLETE,
            f"Secret {name} named by spec.secretRef lacks the key(s) {', '.join(missing)}",
        )
    try:
        values = {key: base64.b64decode(data[key], validate=True).decode() for key in DATA_KEYS}
    except (binascii.Error, UnicodeDecodeError):
        raise ChannelFailure(
            SECRET_REF_INCOMPLETE,
            f"Secret {name} named by spec.secretRef holds a value that is not UTF-8 text",
        ) from None
    return Credentials(**values)


# --- the generated Secret ---------------------------------------------------------------


def build_secret(
    ref: ChannelRef,
    spec: ChannelSpec,
    credentials: Credentials,
    *,
    webhook_mode: WebhookMode = "manual",
    waba_id: str | None = None,
) -> JSON:
    """The channel's Secret: its credentials and, in labels and annotations, the webhook
    configuration the receiver routes by. `webhook_mode` is the channel's effective mode
    (`meta.mode_of`; "manual" when Meta is not asked): the receiver notes Meta's challenges
    in status only for a manual channel. `waba_id`: the number's business account, when
    known (the receiver verifies account webhooks with its channels' app secrets)."""
    return channel_secret.build(
        channel_secret.ChannelSecret(
            namespace=ref.namespace,
            channel=ref.name,
            channel_uid=ref.uid,
            instance_id=spec.instance_id,
            phone_number_id=spec.phone_number_id,
            enabled=spec.enabled,
            access_token=credentials.access_token,
            app_secret=credentials.app_secret,
            verify_token=credentials.verify_token,
            webhook_mode=webhook_mode,
            waba_id=waba_id,
        )
    )


def is_managed(secret: Mapping[str, Any]) -> bool:
    labels = (secret.get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE)


def is_owned_by(secret: Mapping[str, Any], uid: str) -> bool:
    refs = (secret.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid and r.get("controller") for r in refs)


def may_write(existing: Mapping[str, Any], ref: ChannelRef) -> bool:
    """True when an existing Secret of the generated name is ours to overwrite: it carries
    our label (an earlier channel of this name) or our channel owns it."""
    return is_managed(existing) or is_owned_by(existing, ref.uid)


def secret_is_current(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when `existing` holds exactly the desired data, labels, annotations and owner;
    what others added beside ours is left alone."""
    if existing.get("type", "Opaque") != desired["type"]:
        return False
    if (existing.get("data") or {}) != desired["data"]:
        return False
    metadata = existing.get("metadata") or {}
    wanted = desired["metadata"]
    for field in ("labels", "annotations"):
        have = metadata.get(field) or {}
        if any(have.get(key) != value for key, value in wanted[field].items()):
            return False
    owner = wanted["ownerReferences"][0]
    return any(
        all(r.get(key) == value for key, value in owner.items())
        for r in metadata.get("ownerReferences") or []
    )


def merged_secret(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> JSON:
    """The body that replaces `existing`: the desired Secret, keeping others' labels,
    annotations and non-controller owners, at the existing resourceVersion."""
    metadata = existing.get("metadata") or {}
    wanted = desired["metadata"]
    others = [
        r
        for r in metadata.get("ownerReferences") or []
        if not r.get("controller") and r.get("kind") != KIND
    ]
    merged_metadata = {
        **wanted,
        "labels": {**(metadata.get("labels") or {}), **wanted["labels"]},
        "annotations": {**(metadata.get("annotations") or {}), **wanted["annotations"]},
        "ownerReferences": wanted["ownerReferences"] + others,
    }
    if metadata.get("resourceVersion"):
        merged_metadata["resourceVersion"] = metadata["resourceVersion"]
    return {**desired, "metadata": merged_metadata}


# --- status -----------------------------------------------------------------------------

# A condition as Meta's answers set it: status (None: Unknown), reason, message.
ConditionState = tuple[bool | None, str, str]


@dataclass(frozen=True)
class MetaReport:
    """What Meta said about a channel (`channel_operator.channel_at_meta` asks): the
    conditions it sets (None: leave that condition as it is) and the status fields it fills
    (verifiedName, qualityRating, phoneStatus, messagingLimit, checkedAt)."""

    credentials: ConditionState | None = None
    webhook: ConditionState | None = None
    can_send: ConditionState | None = None
    facts: Mapping[str, str] | None = None


def _ready_from_meta(
    conditions: list[JSON], generation: int, url: str
) -> tuple[bool | None, str, str]:
    """Ready from CredentialsValid and WebhookRegistered: False names the first refusal;
    True when both are True; Unknown otherwise, except that a channel Ready for this
    generation stays Ready while Meta's answers are only inconclusive (a flapping Graph API
    never turns a working channel into an error)."""
    states = []
    for type_ in (CREDENTIALS_VALID, WEBHOOK_REGISTERED):
        c = find_condition(conditions, type_) or {}
        states.append((str(c.get("status", "Unknown")), str(c.get("reason", NOT_CHECKED)), c))
    for status, reason, c in states:
        if status == "False":
            return False, reason, str(c.get("message", ""))
    # Ready means the number can send (issue 19): CanSendMessage=False (Meta's BLOCKED, or a
    # number status that cannot send) takes Ready to False with its own reason.
    can_send = find_condition(conditions, CAN_SEND_MESSAGE) or {}
    if can_send.get("status") == "False":
        return False, str(can_send.get("reason", "")), str(can_send.get("message", ""))
    if can_send.get("reason") == NUMBER_REGISTERING:  # pending until Meta says CONNECTED
        return None, NUMBER_REGISTERING, str(can_send.get("message", ""))
    if all(status == "True" for status, _, _ in states):
        return True, CHANNEL_READY, f"Meta accepts the credentials and delivers events to {url}"
    status, reason, c = next(state for state in states if state[0] != "True")
    message = str(c.get("message", "not asked at Meta yet"))
    ready = find_condition(conditions, READY) or {}
    if ready.get("status") == "True" and ready.get("observedGeneration") == generation:
        return True, CHANNEL_READY, f"the channel was ready; Meta's last answer: {message}"
    return None, reason, message


def build_status(
    current: Mapping[str, Any],
    ref: ChannelRef,
    *,
    webhook_base_url: str,
    enabled: bool,
    failure: ChannelFailure | None,
    meta: MetaReport | None = None,
    settled: bool = True,
    ask_meta: bool = True,
    now: str | None = None,
) -> JSON:
    """The status fields the operator owns, with the full conditions list.

    `meta` is what Meta said, if it was asked this time (else its conditions stay as they
    are); Ready needs SecretSynced, CredentialsValid and WebhookRegistered. `settled`: False
    while the channel is retried (Meta unavailable, a challenge to try again), which keeps
    observedGeneration behind. `ask_meta=False` (a runtime without a Graph client: unit
    tests of the Secret's life only) leaves Meta's conditions out of Ready.

    `observedGeneration` moves only when the generation is fully reconciled: it is also what
    tells Kopf which generation it has handled (see `startup.ObservedGeneration`). The
    receiver's fields (lastChallengeAt, lastEventAt) are not ours and not touched.
    """
    conditions: list[JSON] = list(current.get("conditions") or [])
    generation = ref.generation
    url = webhook_url(webhook_base_url, ref.name)

    def put(type_: str, ok: bool | None, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = set_condition(
            conditions,
            type_,
            ok=ok,
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        )

    if failure is not None:
        put(SECRET_SYNCED, False, failure.reason, failure.message)
        put(
            WEBHOOK_CONFIGURED,
            False,
            SECRET_NOT_SYNCED,
            f"the webhook waits for Secret {ref.secret_name}",
        )
        for type_ in (CREDENTIALS_VALID, WEBHOOK_REGISTERED):
            put(type_, None, NOT_CHECKED, f"not asked at Meta: Secret {ref.secret_name} waits")
        put(READY, False, failure.reason, failure.message)
        return {"conditions": conditions, "webhookUrl": url}

    put(SECRET_SYNCED, True, SYNCED, f"Secret {ref.secret_name} holds the channel's credentials")
    facts: Mapping[str, str] = {}
    if enabled:
        put(WEBHOOK_CONFIGURED, True, WEBHOOK_ENABLED, f"the receiver takes events at {url}")
        if meta is not None:
            for type_, state in (
                (CREDENTIALS_VALID, meta.credentials),
                (WEBHOOK_REGISTERED, meta.webhook),
                (CAN_SEND_MESSAGE, meta.can_send),
            ):
                if state is not None:
                    put(type_, *state)
            facts = meta.facts or {}
        if ask_meta:
            for type_ in (CREDENTIALS_VALID, WEBHOOK_REGISTERED):
                if find_condition(conditions, type_) is None:
                    put(type_, None, NOT_CHECKED, "not asked at Meta yet")
            put(READY, *_ready_from_meta(conditions, generation, url))
        else:
            put(READY, True, CHANNEL_READY, "the channel is ready")
    else:
        put(WEBHOOK_CONFIGURED, True, WEBHOOK_DISABLED, "the webhook refuses events")
        put(READY, True, CHANNEL_DISABLED, "the channel is disabled; set spec.enabled to use it")
    status: JSON = {
        "conditions": conditions,
        "webhookUrl": url,
        "secretName": ref.secret_name,
        **facts,
    }
    if settled:
        status["observedGeneration"] = generation
    return status


def status_changes(current: Mapping[str, Any], desired: Mapping[str, Any]) -> JSON:
    """Only the fields that differ: an unchanged channel costs no write."""
    return {key: value for key, value in desired.items() if current.get(key) != value}


def retry_delay(retry: int) -> float:
    """Backoff between attempts at a failing channel: 5s doubling to 5 minutes."""
    return float(min(5 * 2 ** min(retry, 10), 300))

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
    CREDENTIAL_FIELDS,
    KIND,
    READY,
    SECRET_SYNCED,
    WEBHOOK_CONFIGURED,
    ChannelSpec,
    SealedCredentials,
    set_condition,
    webhook_url,
)
from whatsapp_channel.reasons import (
    CHANNEL_DISABLED,
    CHANNEL_READY,
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
    private_keys: Mapping[str, bytes], ref: ChannelRef, sealed: SealedCredentials
) -> Credentials:
    """Unseal the three fields for exactly this channel; SealError says which and why."""
    values = {
        field: unseal(
            private_keys,
            namespace=ref.namespace,
            name=ref.name,
            field=field,
            sealed=getattr(sealed, attribute),
        )
        for field, attribute in CREDENTIAL_FIELDS.items()
    }
    return Credentials(
        access_token=values["accessToken"],
        app_secret=values["appSecret"],
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


def build_secret(ref: ChannelRef, spec: ChannelSpec, credentials: Credentials) -> JSON:
    """The channel's Secret: its credentials and, in labels and annotations, the webhook
    configuration the receiver routes by."""
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


def build_status(
    current: Mapping[str, Any],
    ref: ChannelRef,
    *,
    webhook_base_url: str,
    enabled: bool,
    failure: ChannelFailure | None,
    now: str | None = None,
) -> JSON:
    """The status fields the operator owns, with the full conditions list.

    `observedGeneration` moves only when the generation is fully reconciled: it is also what
    tells Kopf which generation it has handled (see `startup.ObservedGeneration`). The
    receiver's fields (lastChallengeAt, lastEventAt) are not ours and not touched.
    """
    conditions: list[JSON] = list(current.get("conditions") or [])
    generation = ref.generation
    url = webhook_url(webhook_base_url, ref.name)

    def put(type_: str, ok: bool, reason: str, message: str) -> None:
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
        put(READY, False, failure.reason, failure.message)
        return {"conditions": conditions, "webhookUrl": url}

    put(SECRET_SYNCED, True, SYNCED, f"Secret {ref.secret_name} holds the channel's credentials")
    if enabled:
        put(WEBHOOK_CONFIGURED, True, WEBHOOK_ENABLED, f"the receiver takes events at {url}")
        put(READY, True, CHANNEL_READY, "the channel is ready")
    else:
        put(WEBHOOK_CONFIGURED, True, WEBHOOK_DISABLED, "the webhook refuses events")
        put(READY, True, CHANNEL_DISABLED, "the channel is disabled; set spec.enabled to use it")
    return {
        "observedGeneration": generation,
        "conditions": conditions,
        "webhookUrl": url,
        "secretName": ref.secret_name,
    }


def status_changes(current: Mapping[str, Any], desired: Mapping[str, Any]) -> JSON:
    """Only the fields that differ: an unchanged channel costs no write."""
    return {key: value for key, value in desired.items() if current.get(key) != value}


def retry_delay(retry: int) -> float:
    """Backoff between attempts at a failing channel: 5s doubling to 5 minutes."""
    return float(min(5 * 2 ** min(retry, 10), 300))

"""The channel Secret: what the operator writes for each channel and the receiver reads.

It is the operator-to-receiver interface, so its name, labels, selector, builder and parser
live here together: `build` and `parse` are inverses (a test proves parse(build(x)) == x).

    metadata.name                       whatsapp-<channel name>
    labels        managed-by            whatsapp-channel-operator
                  <group>/instance-id   the instance id (a canonical UUID)
                  <group>/phone-number-id
                  <group>/waba-id         the number's business account (spec.wabaId, or
                                        the one the operator found): the receiver verifies
                                        account webhooks (entry id) with these channels'
                                        app secrets
    annotations   <group>/enabled       "true" or "false"
                  <group>/data-hash     what the data should be (the operator's drift check)
                  <group>/webhook-mode  "managed" or "manual": the channel's effective
                                        spec.webhook.mode (the operator's default when unset;
                                        "manual" when the operator does not talk to Meta).
                                        The receiver notes lastChallengeAt only for manual
                                        channels; a Secret without it (an older operator's)
                                        is treated as manual.
    ownerReferences                     the WhatsAppChannel, as controller
    data          access_token, app_secret, verify_token (base64, as every Secret's data)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from whatsapp_channel.model import (
    API_VERSION,
    CREDENTIAL_FIELDS,
    KIND,
    LABEL_PREFIX,
    META_ID_PATTERN,
    WEBHOOK_MODES,
    WebhookMode,
    is_channel_name,
)

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "whatsapp-channel-operator"
INSTANCE_LABEL = f"{LABEL_PREFIX}/instance-id"
PHONE_NUMBER_ID_LABEL = f"{LABEL_PREFIX}/phone-number-id"
WABA_ID_LABEL = f"{LABEL_PREFIX}/waba-id"
ENABLED_ANNOTATION = f"{LABEL_PREFIX}/enabled"
DATA_HASH_ANNOTATION = f"{LABEL_PREFIX}/data-hash"
WEBHOOK_MODE_ANNOTATION = f"{LABEL_PREFIX}/webhook-mode"
# Channel Secrets only: the managed-by label alone could match other Secrets of the operator.
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{INSTANCE_LABEL}"
# The data keys (also those of a user's secretRef Secret).
DATA_KEYS = tuple(CREDENTIAL_FIELDS.values())

_PHONE_RE = re.compile(META_ID_PATTERN)


def secret_name(channel_name: str) -> str:
    """The name of the Secret the operator writes for a channel."""
    return f"whatsapp-{channel_name}"


@dataclass(frozen=True)
class ChannelSecret:
    """What a channel Secret says. A credential is None when the Secret lacks it (or holds
    nothing, or something that is not base64 of UTF-8 text): whoever needs it fails closed."""

    namespace: str
    channel: str  # the WhatsAppChannel's name: the owner, where status is written
    channel_uid: str | None  # None: no owner reference (then `channel` is the instance id)
    instance_id: str
    phone_number_id: str | None
    enabled: bool
    access_token: str | None = field(repr=False)  # never printed
    app_secret: str | None = field(repr=False)
    verify_token: str | None = field(repr=False)
    # Who registers the webhook at Meta; None: not said (a Secret of an older operator).
    webhook_mode: WebhookMode | None = None
    # The number's business account, when known: account webhooks name it (entry id).
    waba_id: str | None = None

    @property
    def notes_challenges(self) -> bool:
        """True when the receiver records Meta's challenges in lastChallengeAt: the webhook
        is registered by hand, so that is how the operator learns it works. A managed
        channel's registration is confirmed at Meta by the operator itself."""
        return self.webhook_mode != "managed"

    def data(self) -> dict[str, str]:
        """The credentials present, in clear text."""
        values = (self.access_token, self.app_secret, self.verify_token)
        return {
            key: value for key, value in zip(DATA_KEYS, values, strict=True) if value is not None
        }


def data_hash(data: Mapping[str, str]) -> str:
    """A fingerprint of what a channel Secret should hold; an edit by hand changes it."""
    canonical = json.dumps(dict(data), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def build(secret: ChannelSecret) -> dict[str, Any]:
    """The Secret object, as the apiserver takes it."""
    data = secret.data()
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, INSTANCE_LABEL: secret.instance_id}
    if secret.phone_number_id is not None:
        labels[PHONE_NUMBER_ID_LABEL] = secret.phone_number_id
    if secret.waba_id is not None:
        labels[WABA_ID_LABEL] = secret.waba_id
    metadata: dict[str, Any] = {
        "name": secret_name(secret.channel),
        "namespace": secret.namespace,
        "labels": labels,
        "annotations": {
            ENABLED_ANNOTATION: "true" if secret.enabled else "false",
            DATA_HASH_ANNOTATION: data_hash(data),
        },
    }
    if secret.webhook_mode is not None:
        metadata["annotations"][WEBHOOK_MODE_ANNOTATION] = secret.webhook_mode
    if secret.channel_uid is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": secret.channel,
                "uid": secret.channel_uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata,
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def instance_of(secret: Mapping[str, Any]) -> str | None:
    """The instance id a Secret's label names, as written (not yet validated)."""
    labels = (secret.get("metadata") or {}).get("labels") or {}
    value = labels.get(INSTANCE_LABEL)
    return str(value) if value else None


def is_generated(secret: Mapping[str, Any]) -> bool:
    """True for a Secret shaped as the operator writes a channel's: named after its instance
    id label (`whatsapp-<instance id>`) and controlled by the WhatsAppChannel of that name.
    Anything else carrying the labels is forged: the receiver ignores it, the operator
    deletes it."""
    metadata = secret.get("metadata") or {}
    instance = instance_of(secret)
    if instance is None or not is_channel_name(instance):
        return False
    if metadata.get("name") != secret_name(instance):
        return False
    return any(
        r.get("controller") is True
        and r.get("apiVersion") == API_VERSION
        and r.get("kind") == KIND
        and r.get("name") == instance
        for r in metadata.get("ownerReferences") or []
    )


def _decoded(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True).decode() or None
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None


def _webhook_mode(value: object) -> WebhookMode | None:
    for mode in WEBHOOK_MODES:
        if value == mode:
            return mode
    return None


def parse(secret: Mapping[str, Any]) -> ChannelSecret | None:
    """What a Secret says about its channel; None when it is no channel's (its instance id
    label is missing or not a canonical UUID, which ends up in a host name)."""
    instance_id = instance_of(secret)
    if instance_id is None or not is_channel_name(instance_id):
        return None
    metadata = secret.get("metadata") or {}
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    owner = next(
        (
            ref
            for ref in metadata.get("ownerReferences") or []
            if ref.get("kind") == KIND and ref.get("name")
        ),
        None,
    )
    phone = labels.get(PHONE_NUMBER_ID_LABEL)
    waba = labels.get(WABA_ID_LABEL)
    data = secret.get("data") or {}
    return ChannelSecret(
        namespace=str(metadata.get("namespace") or ""),
        channel=str(owner["name"]) if owner else instance_id,
        channel_uid=str(owner.get("uid") or "") if owner else None,
        instance_id=instance_id,
        phone_number_id=phone if isinstance(phone, str) and _PHONE_RE.fullmatch(phone) else None,
        enabled=annotations.get(ENABLED_ANNOTATION) == "true",
        access_token=_decoded(data.get("access_token")),
        app_secret=_decoded(data.get("app_secret")),
        verify_token=_decoded(data.get("verify_token")),
        webhook_mode=_webhook_mode(annotations.get(WEBHOOK_MODE_ANNOTATION)),
        waba_id=waba if isinstance(waba, str) and _PHONE_RE.fullmatch(waba) else None,
    )

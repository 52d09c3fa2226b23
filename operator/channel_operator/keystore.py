"""The operator's sealing key pairs: kept in a Secret, public halves published in a ConfigMap.

Secret `SEALING_KEYS_SECRET` data: {key id: raw X25519 private key}; its annotation
`ACTIVE_KEY_ANNOTATION` names the key new seals use (the newest). ConfigMap
`SEALING_PUBLIC_CONFIGMAP` data: `activeKeyId` and `publicKeys` (JSON {key id: base64 of the
raw public key}), derived from the Secret. Creation is create-or-get, so two operators
starting at once end up with the same keys; rotation adds a key and keeps the old ones, so old
seals still open.

Both live in the keys namespace, the operator's own, never where the channels are: the webhook
receiver may list every Secret of the channel namespace.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from whatsapp_channel.kube import Conflict, Kube, NotFound, core_path
from whatsapp_channel.model import (
    ACTIVE_KEY_ID_FIELD,
    LABEL_PREFIX,
    PUBLIC_KEYS_FIELD,
    SEALING_KEYS_SECRET,
    SEALING_PUBLIC_CONFIGMAP,
)
from whatsapp_channel.sealing import key_id_of, new_private_key, public_key_of

from channel_operator import metrics

log = logging.getLogger(__name__)

ACTIVE_KEY_ANNOTATION = f"{LABEL_PREFIX}/active-key-id"
# Not the managed-by label of channel Secrets: the receiver must never take this for a channel.
KEY_LABELS = {
    "app.kubernetes.io/part-of": "whatsapp-channels",
    "app.kubernetes.io/component": "sealing-keys",
}
WRITE_ATTEMPTS = 5

JSON = dict[str, Any]


class KeyringError(Exception):
    """The keys Secret exists but cannot be used (edited by hand into nonsense)."""


@dataclass(frozen=True, repr=False)
class Keyring:
    private_keys: Mapping[str, bytes]
    active_key_id: str

    def __repr__(self) -> str:
        return f"Keyring(active={self.active_key_id}, keys={sorted(self.private_keys)})"

    def public_keys(self) -> dict[str, str]:
        return {key_id: public_key_of(raw).b64 for key_id, raw in self.private_keys.items()}


# --- pure: the objects and how to read them ----------------------------------------------


def new_keyring() -> Keyring:
    key_id, private = new_private_key()
    return Keyring(private_keys={key_id: private}, active_key_id=key_id)


def rotated(keyring: Keyring) -> Keyring:
    """The keyring with a fresh key that becomes active; the old keys stay to open old seals."""
    key_id, private = new_private_key()
    return Keyring(private_keys={**keyring.private_keys, key_id: private}, active_key_id=key_id)


def without(keyring: Keyring, key_id: str) -> Keyring:
    """The keyring without `key_id` (never the active key)."""
    if key_id == keyring.active_key_id:
        raise KeyringError(f"key {key_id} is the active one; rotate first")
    keys = {k: v for k, v in keyring.private_keys.items() if k != key_id}
    return Keyring(private_keys=keys, active_key_id=keyring.active_key_id)


def keyring_from_secret(secret: Mapping[str, Any]) -> Keyring:
    data = secret.get("data") or {}
    keys: dict[str, bytes] = {}
    for key_id, value in data.items():
        try:
            raw = base64.b64decode(value, validate=True)
            if key_id_of(public_key_of(raw).public_key) != key_id:
                raise ValueError("key id does not match")
        except (binascii.Error, ValueError):
            raise KeyringError(f"sealing key {key_id} in the keys Secret is unusable") from None
        keys[key_id] = raw
    if not keys:
        raise KeyringError("the sealing keys Secret holds no key")
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    active = annotations.get(ACTIVE_KEY_ANNOTATION)
    if active not in keys:
        if len(keys) != 1:
            raise KeyringError(f"the keys Secret does not say which key is active ({active})")
        active = next(iter(keys))
    return Keyring(private_keys=keys, active_key_id=str(active))


def build_keys_secret(namespace: str, keyring: Keyring) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": SEALING_KEYS_SECRET,
            "namespace": namespace,
            "labels": dict(KEY_LABELS),
            "annotations": {ACTIVE_KEY_ANNOTATION: keyring.active_key_id},
        },
        "data": {
            key_id: base64.b64encode(raw).decode() for key_id, raw in keyring.private_keys.items()
        },
    }


def public_data(keyring: Keyring) -> dict[str, str]:
    return {
        ACTIVE_KEY_ID_FIELD: keyring.active_key_id,
        PUBLIC_KEYS_FIELD: json.dumps(keyring.public_keys(), sort_keys=True),
    }


def build_public_configmap(namespace: str, keyring: Keyring) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": SEALING_PUBLIC_CONFIGMAP,
            "namespace": namespace,
            "labels": dict(KEY_LABELS),
        },
        "data": public_data(keyring),
    }


# --- cluster I/O ------------------------------------------------------------------------


async def load(kube: Kube, namespace: str) -> Keyring:
    secret = await kube.get(core_path("secrets", namespace, SEALING_KEYS_SECRET))
    return keyring_from_secret(secret)


async def ensure(kube: Kube, namespace: str) -> Keyring:
    """The keyring, created on first start; then the public ConfigMap made to match it."""
    path = core_path("secrets", namespace, SEALING_KEYS_SECRET)
    try:
        keyring = keyring_from_secret(await kube.get(path))
    except NotFound:
        fresh = new_keyring()
        try:
            await kube.create(core_path("secrets", namespace), build_keys_secret(namespace, fresh))
            log.info("created sealing key %s", fresh.active_key_id)
            keyring = fresh
        except Conflict:  # another operator made them first: use those
            keyring = keyring_from_secret(await kube.get(path))
    await publish(kube, namespace, keyring)
    return keyring


async def publish(kube: Kube, namespace: str, keyring: Keyring) -> None:
    """Make the public ConfigMap say what `keyring` says (no write when it already does)."""
    path = core_path("configmaps", namespace, SEALING_PUBLIC_CONFIGMAP)
    wanted = build_public_configmap(namespace, keyring)
    for _ in range(WRITE_ATTEMPTS):
        try:
            current = await kube.get(path)
        except NotFound:
            try:
                await kube.create(core_path("configmaps", namespace), wanted)
                return
            except Conflict:
                continue
        if current.get("data") == wanted["data"]:
            return
        body = {**wanted, "metadata": {**wanted["metadata"], **_version(current)}}
        try:
            await kube.replace(path, body)
            log.info("published sealing key %s", keyring.active_key_id)
            return
        except Conflict:
            continue
    raise KeyringError("could not publish the sealing public keys (conflicting writers)")


async def rotate(kube: Kube, namespace: str) -> Keyring:
    """Add a fresh key and make it the one new seals use; publish it. Returns the keyring."""
    keyring = await _rewrite(kube, namespace, rotated, "rotate the sealing key")
    log.info("rotated: new seals use key %s", keyring.active_key_id)
    return keyring


async def remove_key(kube: Kube, namespace: str, key_id: str) -> Keyring:
    """Remove a (retired) key from the keys Secret and the public ConfigMap."""

    def remove(keyring: Keyring) -> Keyring:
        return without(keyring, key_id) if key_id in keyring.private_keys else keyring

    keyring = await _rewrite(kube, namespace, remove, "remove the sealing key")
    log.info("removed sealing key %s", key_id)
    return keyring


async def _rewrite(
    kube: Kube, namespace: str, change: Callable[[Keyring], Keyring], doing: str
) -> Keyring:
    """The keys Secret's keyring after `change`, written back on the resourceVersion it was
    read at (read and changed again when another writer came first), then published.

    No keys Secret in `namespace` is an error, not a reason to create one: the operator
    creates it on start, and a keyring made in a mistaken namespace would seal to keys the
    operator never reads."""
    path = core_path("secrets", namespace, SEALING_KEYS_SECRET)
    for _ in range(WRITE_ATTEMPTS):
        try:
            current = await kube.get(path)
        except NotFound:
            raise KeyringError(
                f"no sealing keys in namespace {namespace} (Secret {SEALING_KEYS_SECRET}): "
                "is it the operator's keys namespace, and has the operator started?"
            ) from None
        keyring = keyring_from_secret(current)
        changed = change(keyring)
        if changed != keyring:
            body = build_keys_secret(namespace, changed)
            body["metadata"].update(_version(current))
            try:
                await kube.replace(path, body)
            except Conflict:
                continue
        await publish(kube, namespace, changed)
        return changed
    raise KeyringError(f"could not {doing} (conflicting writers)")


def _version(obj: Mapping[str, Any]) -> dict[str, str]:
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return {"resourceVersion": str(version)} if version else {}


@dataclass
class Keys:
    """The running operator's keyring. A seal under a key it lacks makes it read the Secret
    again (a rotation by another process), at most once per `reload_interval`."""

    kube: Kube
    namespace: str
    keyring: Keyring
    reload_interval: float = 5.0
    refresh_interval: float = 1.0
    _loaded_at: float = field(default_factory=time.monotonic)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def private_keys(self) -> Mapping[str, bytes]:
        return self.keyring.private_keys

    async def refresh(self) -> None:
        """Read the keys again if they were read more than `refresh_interval` ago (called
        before opening seals: at most one read a second however many channels reconcile),
        so a key removed by `whatsapp-operator retire-key` stops opening seals here within a
        second, not at the next restart."""
        async with self._lock:
            if time.monotonic() - self._loaded_at < self.refresh_interval:
                return
            self._loaded_at = time.monotonic()
            self.keyring = await load(self.kube, self.namespace)
            metrics.SEALING_KEY_RELOADS.labels("refreshed").inc()

    async def reload_for(self, key_id: str) -> bool:
        """Read the keys again if `key_id` is unknown; True when it is known afterwards."""
        async with self._lock:
            if key_id in self.keyring.private_keys:
                return True
            if time.monotonic() - self._loaded_at < self.reload_interval:
                return False
            self._loaded_at = time.monotonic()
            self.keyring = await load(self.kube, self.namespace)
            found = key_id in self.keyring.private_keys
            metrics.SEALING_KEY_RELOADS.labels("found" if found else "not_found").inc()
            return found

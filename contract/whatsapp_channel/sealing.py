"""Sealing: credentials encrypted to the operator's public key, bound to where they belong.

A seal is a libsodium sealed box (X25519 + XSalsa20-Poly1305, PyNaCl `SealedBox`) whose
plaintext carries its scope (namespace, name, field, key id) beside the value; `unseal`
checks the scope after opening, so a seal copied into another channel or field is refused.
Format: ``wa1:<key id>:<base64 of the box>``. The key id picks among several active keys
(rotation: seal with the newest, open with any).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from whatsapp_channel.model import ACTIVE_KEY_ID_FIELD, PUBLIC_KEYS_FIELD
from whatsapp_channel.reasons import (
    MALFORMED_SEAL,
    SEAL_DOES_NOT_OPEN,
    SEAL_SCOPE_MISMATCH,
    UNKNOWN_SEALING_KEY,
    ReasonedFailure,
)
from whatsapp_channel.untrusted import shown

PREFIX = "wa1"
# What `key_id_of` makes; anything else in a seal is not a key id (and is never looked up).
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}")


class SealError(ReasonedFailure):
    """A seal that cannot be opened here; the message never contains the plaintext or the
    ciphertext."""


@dataclass(frozen=True)
class PublicSealingKey:
    key_id: str
    public_key: bytes

    @classmethod
    def from_b64(cls, key_id: str, public_key_b64: str) -> PublicSealingKey:
        raw = base64.b64decode(public_key_b64, validate=True)
        if key_id_of(raw) != key_id:
            raise ValueError("public key does not match its key id")
        return cls(key_id=key_id, public_key=raw)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.public_key).decode()


@dataclass(frozen=True)
class PublishedKeys:
    """What the operator publishes in its public ConfigMap: the key to seal with, and the
    ids of every key it can still open (a seal under another id is stale)."""

    active: PublicSealingKey
    key_ids: frozenset[str]


def published_keys(data: Mapping[str, Any]) -> PublishedKeys:
    """From the public ConfigMap's data (activeKeyId; publicKeys, as JSON or a mapping);
    ValueError when it is not that."""
    try:
        active = str(data[ACTIVE_KEY_ID_FIELD])
        keys = data[PUBLIC_KEYS_FIELD]
        keys = json.loads(keys) if isinstance(keys, str) else keys
        return PublishedKeys(
            active=PublicSealingKey.from_b64(active, str(keys[active])),
            key_ids=frozenset(str(k) for k in keys),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # binascii.Error is one
        raise ValueError(f"not a sealing public key ConfigMap: {exc}") from None


def key_id_of(public_key: bytes) -> str:
    """A short fingerprint naming a key pair; derived, so it cannot disagree with the key."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def new_private_key() -> tuple[str, bytes]:
    """A fresh key pair as (key id, raw private key)."""
    private = PrivateKey.generate()
    return key_id_of(bytes(private.public_key)), bytes(private)


def public_key_of(private_key: bytes) -> PublicSealingKey:
    public = bytes(PrivateKey(private_key).public_key)
    return PublicSealingKey(key_id=key_id_of(public), public_key=public)


def _scope(namespace: str, name: str, field: str, key_id: str) -> str:
    return f"{namespace}/{name}/{field}/{key_id}"


def seal(key: PublicSealingKey, *, namespace: str, name: str, field: str, value: str) -> str:
    plaintext = json.dumps(
        {"scope": _scope(namespace, name, field, key.key_id), "value": value},
        separators=(",", ":"),
    ).encode()
    box = SealedBox(PublicKey(key.public_key)).encrypt(plaintext)
    return f"{PREFIX}:{key.key_id}:{base64.b64encode(box).decode()}"


def seal_key_id(sealed: str) -> str:
    parts = sealed.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        raise SealError(MALFORMED_SEAL, "the value is not a seal made by whatsapp-seal")
    if not KEY_ID_PATTERN.fullmatch(parts[1]):
        raise SealError(
            MALFORMED_SEAL, f"the seal's key id {shown(parts[1])} is not one whatsapp-seal makes"
        )
    return parts[1]


@lru_cache(maxsize=64)
def _opening_box(private_key: bytes) -> SealedBox[PrivateKey]:
    # Building the box derives the public key (a scalar multiplication): once per key, not
    # once per field of every channel.
    return SealedBox(PrivateKey(private_key))


def unseal(
    private_keys: Mapping[str, bytes], *, namespace: str, name: str, field: str, sealed: str
) -> str:
    """Open `sealed` for exactly this namespace/name/field or raise SealError."""
    key_id = seal_key_id(sealed)
    private = private_keys.get(key_id)
    if private is None:
        raise SealError(
            UNKNOWN_SEALING_KEY, f"{field} was sealed with key {key_id}, which this operator lacks"
        )
    try:
        box = base64.b64decode(sealed.split(":", 2)[2], validate=True)
        opened = _opening_box(private).decrypt(box)
        # A sealer holds only the public key, so the plaintext is anyone's: deeply nested
        # JSON exhausts the parser's recursion (RecursionError), which is refused like the rest.
        content = json.loads(opened)
    except (binascii.Error, CryptoError, ValueError, TypeError, RecursionError):
        raise SealError(SEAL_DOES_NOT_OPEN, f"{field} does not open with key {key_id}") from None
    if not isinstance(content, dict) or not isinstance(content.get("value"), str):
        raise SealError(SEAL_DOES_NOT_OPEN, f"{field} does not open with key {key_id}")
    if content.get("scope") != _scope(namespace, name, field, key_id):
        raise SealError(
            SEAL_SCOPE_MISMATCH,
            f"{field} was sealed for another channel or field; seal it for {namespace}/{name}",
        )
    value: str = content["value"]
    return value

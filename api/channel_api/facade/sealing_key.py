"""The operator's sealing public keys, read from its ConfigMap and cached.

The facade seals with the active key and cannot unseal. The ConfigMap is read again when
the cache is older than the refresh interval, so a rotation reaches every replica without
a restart.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import time
from dataclasses import dataclass

from whatsapp_channel.kube import Kube, KubeError, NotFound, core_path
from whatsapp_channel.model import (
    ACTIVE_KEY_ID_FIELD,
    PUBLIC_KEYS_FIELD,
    SEALING_PUBLIC_CONFIGMAP,
)
from whatsapp_channel.sealing import PublicSealingKey

log = logging.getLogger(__name__)


class SealingKeyUnavailable(Exception):
    """No usable public key: the operator has not published one, or it is malformed."""


@dataclass(frozen=True)
class SealingKeys:
    active: PublicSealingKey
    # Every key the operator can still open; a seal under another key id is stale.
    key_ids: frozenset[str]


class SealingKeyCache:
    def __init__(self, kube: Kube, namespace: str, *, refresh_seconds: float) -> None:
        self._kube = kube
        self._path = core_path("configmaps", namespace, SEALING_PUBLIC_CONFIGMAP)
        self._refresh_seconds = refresh_seconds
        self._keys: SealingKeys | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> SealingKeys | None:
        if self._keys is not None and time.monotonic() - self._read_at < self._refresh_seconds:
            return self._keys
        return None

    async def get(self) -> SealingKeys:
        """The keys. Raises SealingKeyUnavailable, or a KubeError when nothing is cached."""
        keys = self._fresh()
        if keys is not None:
            return keys
        async with self._lock:  # one read for a burst of callers
            keys = self._fresh()
            if keys is not None:
                return keys
            try:
                keys = await self._read()
            except KubeError:
                if self._keys is None:
                    raise
                return self._keys  # stale but usable; the next call tries again
            if self._keys is None or self._keys.active.key_id != keys.active.key_id:
                log.info("sealing with key %s", keys.active.key_id)
            self._keys, self._read_at = keys, time.monotonic()
            return keys

    async def _read(self) -> SealingKeys:
        try:
            configmap = await self._kube.get(self._path)
        except NotFound:
            raise SealingKeyUnavailable(
                "the operator has not published its sealing key yet"
            ) from None
        data = configmap.get("data") or {}
        try:
            key_id = str(data[ACTIVE_KEY_ID_FIELD])
            public_keys = json.loads(data[PUBLIC_KEYS_FIELD])
            active = PublicSealingKey.from_b64(key_id, str(public_keys[key_id]))
            key_ids = frozenset(str(k) for k in public_keys)
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            raise SealingKeyUnavailable(
                "the operator's sealing key ConfigMap is malformed"
            ) from None
        return SealingKeys(active=active, key_ids=key_ids)

"""The operator's sealing public keys, read from its ConfigMap and cached.

The facade seals with the active key and cannot unseal. The ConfigMap is read again when
the cache is older than the refresh interval, so a rotation reaches every replica without
a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time

from whatsapp_channel.kube import Kube, KubeError, NotFound, core_path
from whatsapp_channel.model import SEALING_PUBLIC_CONFIGMAP
from whatsapp_channel.sealing import PublishedKeys, published_keys

log = logging.getLogger(__name__)


class SealingKeyUnavailable(Exception):
    """No usable public key: the operator has not published one, or it is malformed."""


class SealingKeyCache:
    def __init__(self, kube: Kube, namespace: str, *, refresh_seconds: float) -> None:
        self._kube = kube
        self._path = core_path("configmaps", namespace, SEALING_PUBLIC_CONFIGMAP)
        self._refresh_seconds = refresh_seconds
        self._keys: PublishedKeys | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> PublishedKeys | None:
        if self._keys is not None and time.monotonic() - self._read_at < self._refresh_seconds:
            return self._keys
        return None

    async def get(self) -> PublishedKeys:
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

    async def _read(self) -> PublishedKeys:
        try:
            configmap = await self._kube.get(self._path)
        except NotFound:
            raise SealingKeyUnavailable(
                "the operator has not published its sealing key yet"
            ) from None
        try:
            return published_keys(configmap.get("data") or {})
        except ValueError:
            raise SealingKeyUnavailable(
                "the operator's sealing key ConfigMap is malformed"
            ) from None

"""The receiver's view of every channel, kept in memory from a watch on the Secrets the
operator generates: no apiserver call per webhook request.

A channel Secret (`whatsapp_channel.channel_secret`) is a channel's whole webhook
configuration: its instance and phone number id, whether it is enabled, its verify token and
app secret, and whether its challenges are noted in status (manual webhooks only). Updates
arrive from `whatsapp_channel.kube.reflect` on the event loop, so a lookup never sees half of
an update.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from whatsapp_channel import channel_secret
from whatsapp_channel.untrusted import shown

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class Channel:
    """What the receiver knows about one channel. Secrets are bytes; None means missing
    (and anything that needs them fails closed)."""

    secret_name: str
    name: str  # the WhatsAppChannel's name: where status is written
    instance_id: str
    phone_number_id: str | None
    enabled: bool
    app_secret: bytes | None = field(repr=False)  # never printed
    verify_token: bytes | None = field(repr=False)
    # True: a challenge answered is noted in status (lastChallengeAt), which is how the
    # operator learns that a manually registered webhook works. False for a managed webhook:
    # the operator confirms it at Meta, and a note would cost an apiserver write per channel.
    notes_challenges: bool = True
    # The number's business account (the Secret's waba-id label): account webhooks name it.
    waba_id: str | None = None


def channel_from_secret(secret: Mapping[str, Any]) -> Channel | None:
    """The channel a channel Secret describes, or None when it is not a channel's."""
    parsed = channel_secret.parse(secret)
    secret_name = str((secret.get("metadata") or {}).get("name") or "")
    if parsed is None or not channel_secret.is_generated(secret):
        log.warning(
            "secret %s is not named whatsapp-<its %s label> and owned by that channel; ignored",
            shown(secret_name),
            channel_secret.INSTANCE_LABEL,
        )
        return None
    return Channel(
        secret_name=secret_name,
        name=parsed.channel,
        instance_id=parsed.instance_id,
        phone_number_id=parsed.phone_number_id,
        enabled=parsed.enabled,
        app_secret=parsed.app_secret.encode() if parsed.app_secret else None,
        verify_token=parsed.verify_token.encode() if parsed.verify_token else None,
        notes_challenges=parsed.notes_challenges,
        waba_id=parsed.waba_id,
    )


K = TypeVar("K", bound=Hashable)


class _Index(Generic[K]):
    """key -> the enabled channels that claim it, kept current as channels come and go."""

    def __init__(self, what: str, *, shared: bool = False) -> None:
        self._what = what
        self._shared = shared  # several channels per key are normal: no warning
        self._claims: dict[K, dict[str, Channel]] = {}
        self.enabled: dict[K, tuple[Channel, ...]] = {}

    def add(self, key: K | None, channel: Channel) -> None:
        if key is not None:
            self._claims.setdefault(key, {})[channel.secret_name] = channel
            self._refresh(key)

    def remove(self, key: K | None, channel: Channel) -> None:
        claims = self._claims.get(key) if key is not None else None
        if key is None or claims is None:
            return
        claims.pop(channel.secret_name, None)
        if not claims:
            del self._claims[key]
        self._refresh(key)

    def clear(self) -> None:
        self._claims.clear()
        self.enabled.clear()

    def _refresh(self, key: K) -> None:
        channels = tuple(c for c in self._claims.get(key, {}).values() if c.enabled)
        if not channels:
            self.enabled.pop(key, None)
            return
        self.enabled[key] = channels
        if len(channels) > 1 and not self._shared:
            names = ", ".join(sorted(c.secret_name for c in channels))
            log.warning("enabled channels share one %s: %s", self._what, names)


class ChannelCache:
    """Lookups for the hot path, fed by `apply` (a `reflect` event handler)."""

    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}
        self._by_instance: _Index[str] = _Index("instance id")
        self._by_phone: _Index[str] = _Index("phone number id")
        self._by_token: _Index[bytes] = _Index("verify token")
        self._by_waba: _Index[str] = _Index("business account", shared=True)
        # Verify tokens are indexed by a keyed hash, so the dict never compares a guess
        # with a token; the match itself is confirmed in constant time.
        self._token_key = os.urandom(32)
        self.synced = False

    def __len__(self) -> int:
        return len(self._channels)

    def mark_synced(self) -> None:
        if not self.synced:
            log.info("channel cache synced: %d channels", len(self._channels))
        self.synced = True

    def apply(self, kind: str, obj: Mapping[str, Any]) -> None:
        """ADDED/MODIFIED/DELETED of one Secret, or SYNC with the whole list."""
        if kind == "SYNC":
            self._channels.clear()
            for index in (self._by_instance, self._by_phone, self._by_token, self._by_waba):
                index.clear()
            for item in obj.get("items") or []:
                self._put(item)
        elif kind in ("ADDED", "MODIFIED"):
            self._put(obj)
        elif kind == "DELETED":
            self._drop(str((obj.get("metadata") or {}).get("name") or ""))

    def _put(self, secret: Mapping[str, Any]) -> None:
        name = str((secret.get("metadata") or {}).get("name") or "")
        self._drop(name)
        channel = channel_from_secret(secret)
        if channel is None:
            return
        self._channels[name] = channel
        self._by_instance.add(channel.instance_id, channel)
        self._by_phone.add(channel.phone_number_id, channel)
        self._by_token.add(self._token_digest(channel.verify_token), channel)
        self._by_waba.add(channel.waba_id, channel)

    def _drop(self, secret_name: str) -> None:
        channel = self._channels.pop(secret_name, None)
        if channel is not None:
            self._by_instance.remove(channel.instance_id, channel)
            self._by_phone.remove(channel.phone_number_id, channel)
            self._by_token.remove(self._token_digest(channel.verify_token), channel)
            self._by_waba.remove(channel.waba_id, channel)

    def _token_digest(self, token: bytes | None) -> bytes | None:
        if not token:
            return None
        return hashlib.blake2b(token, key=self._token_key, digest_size=32).digest()

    # --- the hot path ------------------------------------------------------------------

    def for_instance(self, instance_id: str) -> Channel | None:
        """The enabled channel of an instance; None when unknown, disabled or ambiguous."""
        channels = self._by_instance.enabled.get(instance_id)
        return channels[0] if channels is not None and len(channels) == 1 else None

    def for_phone(self, phone_number_id: str) -> tuple[Channel, ...]:
        """The enabled channels that claim a phone number id (normally one)."""
        return self._by_phone.enabled.get(phone_number_id, ())

    def for_waba(self, waba_id: str) -> tuple[Channel, ...]:
        """The enabled channels of a business account (several numbers: several channels)."""
        return self._by_waba.enabled.get(waba_id, ())

    def for_verify_token(self, token: bytes) -> tuple[Channel, ...]:
        """The enabled channels whose verify token is `token`, compared in constant time."""
        digest = self._token_digest(token)
        candidates = self._by_token.enabled.get(digest, ()) if digest is not None else ()
        return tuple(
            c for c in candidates if c.verify_token and hmac.compare_digest(c.verify_token, token)
        )

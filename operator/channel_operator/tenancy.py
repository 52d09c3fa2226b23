"""What a channel may claim, decided from what the apiserver says, never from labels a user
could write: whose a phone number id is, and which Secret a `spec.secretRef` may read.

The phone claims come from `PhoneClaimIndex`, fed by a list+watch of the channels, synced
before Kopf handles any channel. (Not a Kopf index: Kopf holds every worker until all
indexes are full, which deadlocks a restart over more channels than its worker limit.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from whatsapp_channel import channel_secret
from whatsapp_channel.model import (
    SEALING_KEYS_SECRET,
    SECRET_REF_CHANNELS_ANNOTATION,
    is_channel_name,
)
from whatsapp_channel.phone_claims import Claim, claim_of, owner
from whatsapp_channel.reasons import (
    PHONE_NUMBER_TAKEN,
    SECRET_REF_NOT_ALLOWED,
    SECRET_REF_NOT_OPTED_IN,
)
from whatsapp_channel.untrusted import shown

from channel_operator.desired import ChannelFailure, ChannelRef, is_managed

PhoneClaims = Mapping[str, Collection[Claim]]


def holds_number(secret: Mapping[str, Any] | None, channel: str, phone_number_id: str) -> bool:
    """True when `secret` is the operator's Secret of `channel` for that number (whoever
    could forge one could also feed the receiver directly: no new power)."""
    if secret is None or not is_managed(secret):
        return False
    parsed = channel_secret.parse(secret)
    return (
        parsed is not None
        and parsed.channel_uid is not None  # owned by a channel, not named by a label only
        and parsed.channel == channel
        and parsed.phone_number_id == phone_number_id
    )


class PhoneClaimIndex(Mapping[str, Collection[Claim]]):
    """{phone number id: the claims of the channels that name it}, kept by `on_event` (a
    `whatsapp_channel.kube.reflect` handler on the channels)."""

    def __init__(self) -> None:
        self._by_name: dict[str, tuple[str, Claim]] = {}
        self._by_phone: dict[str, set[Claim]] = {}
        self.synced = asyncio.Event()

    def __getitem__(self, phone: str) -> Collection[Claim]:
        return frozenset(self._by_phone[phone])

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_phone)

    def __len__(self) -> int:
        return len(self._by_phone)

    def _drop(self, name: str) -> None:
        old = self._by_name.pop(name, None)
        if old is not None:
            claims = self._by_phone.get(old[0], set())
            claims.discard(old[1])
            if not claims:
                self._by_phone.pop(old[0], None)

    def _put(self, body: Mapping[str, Any]) -> None:
        name = str((body.get("metadata") or {}).get("name") or "")
        self._drop(name)
        claim = claim_of(body)
        if claim is not None:
            self._by_name[name] = claim
            self._by_phone.setdefault(claim[0], set()).add(claim[1])

    def on_event(self, kind: str, obj: Mapping[str, Any]) -> None:
        if kind == "SYNC":
            self._by_name.clear()
            self._by_phone.clear()
            for item in obj.get("items") or []:
                self._put(item)
        elif kind in ("ADDED", "MODIFIED"):
            self._put(obj)
        elif kind == "DELETED":
            self._drop(str((obj.get("metadata") or {}).get("name") or ""))


def check_phone_claim(
    body: Mapping[str, Any], claims: PhoneClaims, holders: Collection[str] = ()
) -> None:
    """Raise PhoneNumberTaken unless this channel's claim holds its number
    (`whatsapp_channel.phone_claims`; `holders`: the claimants whose Secret holds it now).
    The message names no other channel: tenants learn nothing of each other."""
    claim = claim_of(body)
    if claim is None:
        return
    phone, own = claim
    others = {c for c in claims.get(phone, ()) if c.name != own.name}
    holder = owner({*others, own}, holders)
    if holder is not None and holder.name != own.name:
        raise ChannelFailure(
            PHONE_NUMBER_TAKEN,
            f"phone number id {shown(phone)} is held by another channel; this channel gets "
            "no Secret until that one lets the number go",
        )


def is_generated_secret_name(name: str) -> bool:
    """True for names the operator gives its own Secrets (a channel's, its sealing keys)."""
    prefix = channel_secret.secret_name("")
    generated = name.startswith(prefix) and is_channel_name(name[len(prefix) :])
    return generated or name == SEALING_KEYS_SECRET


def refuse_generated_name(name: str) -> None:
    """Before any read: a secretRef may never name a Secret the operator writes."""
    if is_generated_secret_name(name):
        raise ChannelFailure(
            SECRET_REF_NOT_ALLOWED,
            f"spec.secretRef names {shown(name)}, a Secret the operator generates; "
            "name a Secret of your own",
        )


def check_secret_ref(secret: Mapping[str, Any], ref: ChannelRef) -> None:
    """After the read, before the data is used: not the operator's, and opted in to `ref`."""
    metadata = secret.get("metadata") or {}
    name = str(metadata.get("name") or "")
    if is_managed(secret):
        raise ChannelFailure(
            SECRET_REF_NOT_ALLOWED,
            f"spec.secretRef names {shown(name)}, a Secret the operator generates; "
            "name a Secret of your own",
        )
    annotations = metadata.get("annotations") or {}
    allowed = str(annotations.get(SECRET_REF_CHANNELS_ANNOTATION) or "")
    if ref.name not in {part.strip() for part in allowed.split(",")}:
        raise ChannelFailure(
            SECRET_REF_NOT_OPTED_IN,
            f"Secret {shown(name)} does not opt in to this channel: annotate it "
            f"{SECRET_REF_CHANNELS_ANNOTATION}={ref.name}",
        )

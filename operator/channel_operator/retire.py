"""`whatsapp-operator retire-key <id>`: re-seal every channel still on a sealing key to the
active key, then remove the key, so a leaked key stops opening anything.

Only the operator's keys can do this (a seal opens with the private key). A channel whose
seals under the key do not open (or that kept changing while being re-sealed) is named and
the key is kept: removing it would leave that channel unable to open its credentials. The
running operator re-reads its keys before opening seals, at most every few seconds
(`keystore.Keys.refresh`), so a retired key stops opening seals there too.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from whatsapp_channel.kube import JSON, Conflict, Kube, NotFound, channels_path
from whatsapp_channel.sealing import (
    PublicSealingKey,
    SealError,
    public_key_of,
    seal,
    unseal,
)
from whatsapp_channel.untrusted import shown

from channel_operator import keystore
from channel_operator.keystore import Keyring, KeyringError, seals_of

log = logging.getLogger(__name__)

PATCH_ATTEMPTS = 5
PASSES = 3  # channels sealed to the key while we worked are picked up by the next pass


@dataclass
class Retirement:
    key_id: str
    resealed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # channel -> why (reason: message)
    removed: bool = False
    sealed_since: list[str] = field(default_factory=list)  # on the key after its removal


def on_key(channel: Mapping[str, Any], key_id: str) -> list[str]:
    """The sealed fields (CR names) of `channel` sealed with `key_id`."""
    return [cr_field for cr_field, sealed_to in seals_of(channel).items() if sealed_to == key_id]


def resealed_fields(
    channel: Mapping[str, Any], key_id: str, keyring: Keyring, active: PublicSealingKey
) -> dict[str, str]:
    """The new seals of the fields still on `key_id`; SealError when one does not open."""
    metadata = channel["metadata"]
    namespace, name = str(metadata["namespace"]), str(metadata["name"])
    sealed = channel["spec"]["sealed"]
    return {
        cr_field: seal(
            active,
            namespace=namespace,
            name=name,
            field=cr_field,
            value=unseal(
                keyring.private_keys,
                namespace=namespace,
                name=name,
                field=cr_field,
                sealed=sealed[cr_field],
            ),
        )
        for cr_field in on_key(channel, key_id)
    }


async def _reseal(
    kube: Kube, channel: JSON, key_id: str, keyring: Keyring, active: PublicSealingKey
) -> str | None:
    """Re-seal one channel (a patch conditional on what was read); why not, or None."""
    path = channels_path(str(channel["metadata"]["namespace"]), str(channel["metadata"]["name"]))
    for _ in range(PATCH_ATTEMPTS):
        if not on_key(channel, key_id) or channel["metadata"].get("deletionTimestamp"):
            return None
        try:
            fields = resealed_fields(channel, key_id, keyring, active)
        except SealError as exc:
            return f"{exc.reason}: {exc.message}"
        version = channel["metadata"]["resourceVersion"]
        try:
            await kube.merge_patch(
                path,
                {"metadata": {"resourceVersion": version}, "spec": {"sealed": fields}},
            )
            return None
        except Conflict:  # changed since read: read again, re-seal what is still on the key
            try:
                channel = await kube.get(path)
            except NotFound:
                return None
        except NotFound:
            return None
    return "the channel kept changing while being re-sealed; run retire-key again"


async def _on_key(kube: Kube, namespace: str, key_id: str) -> list[JSON]:
    listed = await kube.get(channels_path(namespace))
    return [c for c in listed.get("items") or [] if on_key(c, key_id)]


async def retire_key(
    kube: Kube, keys_namespace: str, channels_namespace: str, key_id: str
) -> Retirement:
    """Re-seal, then remove the key unless a channel failed. KeyringError when the key is
    unknown or the active one (rotate first); KubeError on apiserver errors."""
    keyring = await keystore.load(kube, keys_namespace)
    if key_id not in keyring.private_keys:
        raise KeyringError(f"no sealing key {shown(key_id)} in namespace {keys_namespace}")
    if key_id == keyring.active_key_id:
        raise KeyringError(
            f"key {key_id} is the active one: run `whatsapp-operator rotate-key` first"
        )
    active = public_key_of(keyring.private_keys[keyring.active_key_id])
    result = Retirement(key_id)
    for _ in range(PASSES):
        todo = [
            c
            for c in await _on_key(kube, channels_namespace, key_id)
            if c["metadata"]["name"] not in result.failed
        ]
        if not todo:
            break
        for channel in todo:
            name = str(channel["metadata"]["name"])
            why = await _reseal(kube, channel, key_id, keyring, active)
            if why is None:
                result.resealed.append(name)
                log.info("channel %s re-sealed to key %s", name, keyring.active_key_id)
            else:
                result.failed[name] = why
    if result.failed:
        return result
    remaining = await _on_key(kube, channels_namespace, key_id)
    if remaining:  # still being sealed to it (a facade with an old public key): keep it
        result.failed.update(
            {str(c["metadata"]["name"]): "sealed to the key again meanwhile" for c in remaining}
        )
        return result
    await keystore.remove_key(kube, keys_namespace, key_id)
    result.removed = True
    result.sealed_since = [
        str(c["metadata"]["name"]) for c in await _on_key(kube, channels_namespace, key_id)
    ]
    return result

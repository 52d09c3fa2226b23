"""Reconciling one channel: its credentials, its Secret, its status; releasing it; repairing
its Secret after drift. Kopf-free (the handlers translate failures into Kopf's retries), so
it runs against any `Kube`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from whatsapp_channel.kube import Kube, KubeError, NotFound, channels_path, core_path
from whatsapp_channel.model import ChannelSpec
from whatsapp_channel.reasons import (
    APISERVER_ERROR,
    CHANNEL_DISABLED,
    CHANNEL_READY,
    INVALID_SPEC,
    SECRET_REF_NOT_FOUND,
    UNKNOWN_SEALING_KEY,
)
from whatsapp_channel.sealing import SealError, seal_key_id

from channel_operator import metrics
from channel_operator.channel_secrets import ChannelSecrets, Written
from channel_operator.desired import (
    ChannelFailure,
    ChannelRef,
    Credentials,
    build_secret,
    build_status,
    credentials_from_secret,
    open_seals,
    seal_failure,
    status_changes,
)
from channel_operator.keystore import Keys

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the handlers share: the client, the keys, the Secret cache, the settings."""

    kube: Kube
    namespace: str
    webhook_base_url: str
    keys: Keys
    secrets: ChannelSecrets
    watcher: asyncio.Task[None] | None = None  # the Secret watch, started with the operator


def parse_spec(spec: Mapping[str, Any]) -> ChannelSpec:
    try:
        return ChannelSpec.model_validate(dict(spec))
    except ValidationError as exc:
        # Field locations only: pydantic's messages would quote the (sealed) input.
        fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
        raise ChannelFailure(
            INVALID_SPEC, f"spec does not fit the contract at: {', '.join(fields)}"
        ) from None


async def read_credentials(rt: Runtime, ref: ChannelRef, spec: ChannelSpec) -> Credentials:
    if spec.sealed is not None:
        sealed = spec.sealed
        try:
            return open_seals(rt.keys.private_keys, ref, sealed)
        except SealError as exc:
            if exc.reason != UNKNOWN_SEALING_KEY:
                raise seal_failure(exc) from None
            # Perhaps rotated by another process since we loaded the keys: read them again.
            ids = {seal_key_id(v) for v in (sealed.access_token, sealed.app_secret)}
            ids.add(seal_key_id(sealed.verify_token))
            try:
                known = [await rt.keys.reload_for(key_id) for key_id in sorted(ids)]
            except KubeError:
                raise seal_failure(exc) from None
            if not all(known):
                raise seal_failure(exc) from None
        try:
            return open_seals(rt.keys.private_keys, ref, sealed)
        except SealError as exc:
            raise seal_failure(exc) from None
    if spec.secret_ref is not None:
        name = spec.secret_ref.name
        try:
            secret = await rt.kube.get(core_path("secrets", ref.namespace, name))
        except NotFound:
            raise ChannelFailure(
                SECRET_REF_NOT_FOUND,
                f"Secret {name} named by spec.secretRef does not exist in {ref.namespace}",
            ) from None
        return credentials_from_secret(secret)
    raise ChannelFailure(INVALID_SPEC, "spec gives no credentials: set sealed or secretRef")


async def sync_secret(rt: Runtime, ref: ChannelRef, spec: ChannelSpec) -> Written | None:
    """Make the channel's Secret what the spec says; how it was written, None if it was not."""
    try:
        credentials = await read_credentials(rt, ref, spec)
        return await rt.secrets.ensure(ref, build_secret(ref, spec, credentials))
    except KubeError as exc:
        # The apiserver's own message may quote what was sent: status and reason only.
        raise ChannelFailure(
            APISERVER_ERROR,
            f"the apiserver refused work on Secrets ({exc.status} {exc.reason}); will retry",
        ) from None


async def reconcile(
    rt: Runtime, body: Mapping[str, Any], status_patch: MutableMapping[str, Any]
) -> ChannelFailure | None:
    """Bring one channel to its desired state; put the status changes (only those) into
    `status_patch`. Returns the failure, if any, for the caller to retry."""
    ref = ChannelRef.from_body(body)
    spec_body = body.get("spec") or {}
    enabled = bool(spec_body.get("enabled", True))
    failure: ChannelFailure | None = None
    try:
        spec = parse_spec(spec_body)
        written = await sync_secret(rt, ref, spec)
        if written is not None:
            metrics.SECRET_WRITES.labels(written).inc()
            log.info("channel %s: Secret %s %s", ref.name, ref.secret_name, written)
    except ChannelFailure as exc:
        failure = exc
    current = body.get("status") or {}
    desired = build_status(
        current, ref, webhook_base_url=rt.webhook_base_url, enabled=enabled, failure=failure
    )
    status_patch.update(status_changes(current, desired))
    if failure is not None:
        metrics.reconciled(ref.name, failure.reason, ready=False)
    else:
        metrics.reconciled(ref.name, CHANNEL_READY if enabled else CHANNEL_DISABLED, ready=True)
    return failure


async def release(rt: Runtime, body: Mapping[str, Any]) -> None:
    """The channel is being deleted: delete what it owns."""
    ref = ChannelRef.from_body(body)
    try:
        await rt.secrets.delete(ref)
    except KubeError as exc:
        raise ChannelFailure(
            APISERVER_ERROR, f"deleting Secret {ref.secret_name} failed ({exc.status} {exc.reason})"
        ) from None
    metrics.released(ref.name)


async def repair(rt: Runtime, channel_name: str) -> None:
    """A generated Secret changed behind our back: put it back as the channel says.
    KubeErrors propagate (the caller retries); a channel that cannot be synced now is left
    to its own reconcile, which reports it in status."""
    try:
        body = await rt.kube.get(channels_path(rt.namespace, channel_name))
    except NotFound:
        await rt.secrets.delete_orphan(channel_name)
        return
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    ref = ChannelRef.from_body(body)
    try:
        if await sync_secret(rt, ref, parse_spec(body.get("spec") or {})) is not None:
            metrics.SECRET_WRITES.labels("restored").inc()
            log.info("channel %s: Secret %s restored", ref.name, ref.secret_name)
    except ChannelFailure as exc:
        log.warning("channel %s: Secret not restored (%s)", ref.name, exc.reason)

"""Kopf handler registration, and nothing else: each handler is one call into a module.

Handlers return nothing (Kopf would store a return value in status, where the schema prunes
it) and write `patch.status` themselves. A failure becomes a TemporaryError with a growing
delay: Ready=False in status, a Warning event (with the condition's reason) when it is new, a
retry later, never a crash.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
from whatsapp_channel.kube import Kube
from whatsapp_channel.model import GROUP, PLURAL, VERSION, WEBHOOK_REGISTERED

from channel_operator import reconcile as channel
from channel_operator import startup
from channel_operator.channel_at_meta import MetaRetry
from channel_operator.desired import ChannelFailure, retry_delay
from channel_operator.keystore import KeysMissing
from channel_operator.reconcile import Runtime
from channel_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

KEYS_MISSING_RETRY = 10.0

CHANNELS: dict[str, Any] = {
    "group": GROUP,
    "version": VERSION,
    "plural": PLURAL,
    # Unexpected exceptions (bugs) are retried too, slowly, instead of stopping the channel.
    "errors": kopf.ErrorsMode.TEMPORARY,
    "backoff": 30,
}


def kube_of(memo: kopf.Memo) -> Kube:
    kube = memo["kube"]
    assert isinstance(kube, Kube)
    return kube


def runtime_of(memo: kopf.Memo) -> Runtime:
    rt = memo["runtime"]
    assert isinstance(rt, Runtime)
    return rt


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator_settings = memo["settings"]
    assert isinstance(operator_settings, OperatorSettings)
    streaming = operator_settings.watch_initial_streaming and await startup.streams_initial_events(
        kube_of(memo)
    )
    if streaming:
        log.info("the channels are taken as a watch's initial events (sendInitialEvents)")
    startup.configure(settings, initial_streaming=streaming)
    try:
        memo["runtime"] = await startup.start(operator_settings, kube_of(memo))
    except KeysMissing as missing:  # not ready until the keys are restored; asked again
        log.error("not starting: %s", missing)
        raise kopf.TemporaryError(str(missing), delay=KEYS_MISSING_RETRY) from None


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    if "runtime" in memo:
        await startup.stop(runtime_of(memo))


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    return startup.connection_info(kube_of(memo))


@kopf.on.probe(id="channelSecrets")
def cached_secrets(memo: kopf.Memo, **_: Any) -> int:
    return len(runtime_of(memo).secrets)


@kopf.on.probe(id="backgroundTasks", errors=kopf.ErrorsMode.PERMANENT)
def background_tasks(memo: kopf.Memo, **_: Any) -> str:
    return startup.background_tasks(runtime_of(memo))


@kopf.on.resume(**CHANNELS)
@kopf.on.create(**CHANNELS)
@kopf.on.update(**CHANNELS)
async def reconcile(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any
) -> None:
    def warn(reason: str, message: str) -> None:
        kopf.warn(body, reason=reason, message=message)

    failure = await channel.reconcile(runtime_of(memo), body, patch.status, warn)
    if failure is not None:
        # A new failure, not a retry of the same one; Meta's refusals are warned as they turn.
        if "conditions" in patch.status and not isinstance(failure, MetaRetry):
            kopf.warn(body, reason=failure.reason, message=failure.message)
        raise kopf.TemporaryError(f"{failure.reason}: {failure.message}", delay=retry_delay(retry))


def awaits_challenge(body: kopf.Body, **_: Any) -> bool:
    """Only a channel whose receiver saw Meta's challenge and whose webhook is not yet
    registered: every other event costs no handler call."""
    status = body.get("status") or {}
    if not status.get("lastChallengeAt"):
        return False
    conditions = status.get("conditions") or []
    return not any(
        c.get("type") == WEBHOOK_REGISTERED and c.get("status") == "True" for c in conditions
    )


@kopf.on.event(
    **{k: v for k, v in CHANNELS.items() if k not in ("errors", "backoff")},
    when=awaits_challenge,
)
async def challenged(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A manual channel's receiver saw Meta's challenge: Meta is asked (its read-back
    decides WebhookRegistered)."""
    if "runtime" in memo:
        await channel.challenge_seen(runtime_of(memo), body)


def awaits_account_check(body: kopf.Body, **_: Any) -> bool:
    """Only a channel whose receiver noted an account webhook (lastAccountEventAt) later
    than Meta's last check: every other event costs no handler call."""
    status = body.get("status") or {}
    noted = status.get(channel.ACCOUNT_EVENT_FIELD)
    checked = status.get("checkedAt")
    return bool(noted) and (not checked or str(noted) >= str(checked))


@kopf.on.event(
    **{k: v for k, v in CHANNELS.items() if k not in ("errors", "backoff")},
    when=awaits_account_check,
)
async def account_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The receiver got a verified account webhook (a ban, a quality change, ...) of the
    channel's business account: Meta is asked about the number now."""
    if "runtime" in memo:
        await channel.account_event_seen(runtime_of(memo), body)


@kopf.on.delete(**CHANNELS)
async def release(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    try:
        await channel.release(runtime_of(memo), body)
    except ChannelFailure as failure:
        kopf.warn(body, reason=failure.reason, message=failure.message)
        raise kopf.TemporaryError(
            f"{failure.reason}: {failure.message}", delay=retry_delay(retry)
        ) from None

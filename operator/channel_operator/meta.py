"""Asking Meta about a channel (issue 11): the check that proves token, number and app secret,
the managed webhook (subscribe the app to the account, set the number's override, repair
drift), and the release in the finalizer. Kopf-free; the reconcile turns the answer into
conditions through `desired.build_status`.

Graph calls per new channel: the check (which also reads the webhook back), the subscribe
(skipped when this operator already subscribed the account) and the override; one check per
health period after that. A failure Meta did not blame on the credentials (timeouts, 5xx,
rate limits) is Unknown, never False.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from whatsapp_channel import reasons
from whatsapp_channel.model import (
    CAN_SEND_MESSAGE,
    CREDENTIALS_VALID,
    WEBHOOK_REGISTERED,
    ChannelSpec,
    WebhookMode,
    find_condition,
    now_rfc3339,
)

from channel_operator.desired import ChannelFailure, ChannelRef, ConditionState, Credentials
from channel_operator.desired import MetaReport as MetaReport
from channel_operator.discovery import Discovery, DiscoveryRefused
from channel_operator.graph import (
    CanSendMessage,
    GraphClient,
    GraphCredentials,
    GraphError,
    GraphErrorKind,
    HealthStatus,
    PhoneNumberCheck,
    scrub,
)

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 400
_CREDENTIAL_REASONS = {
    GraphErrorKind.TOKEN_INVALID: reasons.TOKEN_INVALID,
    GraphErrorKind.TOKEN_EXPIRED: reasons.TOKEN_EXPIRED,
    GraphErrorKind.APP_SECRET_MISMATCH: reasons.APP_SECRET_MISMATCH,
    GraphErrorKind.PHONE_NUMBER_NOT_FOUND: reasons.PHONE_NUMBER_NOT_FOUND,
    GraphErrorKind.ACCOUNT_NOT_FOUND: reasons.PHONE_NUMBER_NOT_FOUND,
    GraphErrorKind.PERMISSION_DENIED: reasons.PERMISSION_DENIED,
}
Warn = Callable[[str, str], None]
# Awaited right before the override call: until the receiver likely knows the channel.
BeforeOverride = Callable[[], Awaitable[None]]
META_CONDITIONS = (CREDENTIALS_VALID, WEBHOOK_REGISTERED, CAN_SEND_MESSAGE)
# The CanSendMessage gauge's value for each reason.
CAN_SEND_VALUES = {
    reasons.MESSAGING_AVAILABLE: "AVAILABLE",
    reasons.MESSAGING_LIMITED: "LIMITED",
    reasons.MESSAGING_BLOCKED: "BLOCKED",
}


class MetaRetry(ChannelFailure):
    """Meta's answer was inconclusive (or its challenge failed): the same generation is
    tried again with backoff; no Warning for it by itself."""


@dataclass
class Accounts:
    """The business accounts this operator subscribed the app to, and the managed channels
    registered under each (known from their status after a restart, with no Graph call)."""

    subscribed: set[str] = field(default_factory=set)
    channels: dict[str, set[str]] = field(default_factory=dict)
    # The subscribe call in flight per account, awaited by every channel that needs it.
    subscribing: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    def bind(self, channel: str, waba_id: str) -> None:
        for names in self.channels.values():
            names.discard(channel)
        self.channels.setdefault(waba_id, set()).add(channel)
        self.subscribed.add(waba_id)

    def unbind(self, channel: str, waba_id: str) -> bool:
        """Forget `channel`; True when it was the account's last channel."""
        names = self.channels.get(waba_id, set())
        names.discard(channel)
        others = {n for n in names if n != channel}
        if not others:
            self.channels.pop(waba_id, None)
            return True
        return False


@dataclass
class Meta:
    """What the operator needs to ask Meta: the client, the defaults, what it learned."""

    graph: GraphClient
    webhook_mode: WebhookMode = "managed"
    health_period: float = 3600.0
    accounts: Accounts = field(default_factory=Accounts)
    discovery: Discovery = field(default_factory=Discovery)
    # Waits between override attempts when Meta's challenge fails (the receiver may not
    # have the channel's Secret in its cache yet); then Kopf's own backoff.
    callback_retries: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


@dataclass(frozen=True)
class Asked:
    """One round of questions: the report for the status, whether to try again soon, and
    whether the credentials were refused (no more calls until the spec changes)."""

    report: MetaReport
    retry: ChannelFailure | None = None
    refused: bool = False


def subscription(credentials: Credentials, waba_id: str) -> str:
    """The key of an (app, account) subscription: the app is known by its secret's hash."""
    app = hashlib.sha256(credentials.app_secret.encode()).hexdigest()[:16]
    return f"{app}/{waba_id}"


def mode_of(spec: ChannelSpec, default: WebhookMode) -> WebhookMode:
    return spec.webhook.mode if spec.webhook is not None and spec.webhook.mode else default


def waba_of(spec: ChannelSpec, status: Mapping[str, Any]) -> str | None:
    known = status.get("wabaId")
    return spec.waba_id or (str(known) if known else None)


def account_confirmed(spec: ChannelSpec, status: Mapping[str, Any]) -> bool:
    """The status names the number's account, found or checked at Meta for this spec."""
    known = status.get("wabaId")
    return bool(known) and (spec.waba_id is None or known == spec.waba_id)


def parse_time(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def checked_ago(status: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds since Meta last answered the check (status.checkedAt), if it has."""
    checked = parse_time(status.get("checkedAt"))
    if checked is None:
        return None
    return max((now if now is not None else datetime.now(UTC).timestamp()) - checked, 0.0)


def is_settled(status: Mapping[str, Any], generation: int, mode: WebhookMode) -> bool:
    """Meta answered for this generation (True or False, not Unknown) on both conditions:
    nothing to ask until the health period says so."""
    conditions = status.get("conditions") or []
    credentials = find_condition(conditions, CREDENTIALS_VALID)
    webhook = find_condition(conditions, WEBHOOK_REGISTERED)
    if credentials is None or credentials.get("observedGeneration") != generation:
        return False
    if credentials.get("status") == "False":
        return True
    if credentials.get("status") != "True" or webhook is None:
        return False
    if webhook.get("observedGeneration") != generation:
        return False
    return webhook.get("status") == "True" or mode == "manual"


def is_refused(status: Mapping[str, Any], generation: int) -> bool:
    credentials = find_condition(status.get("conditions") or [], CREDENTIALS_VALID)
    return bool(
        credentials
        and credentials.get("status") == "False"
        and credentials.get("observedGeneration") == generation
    )


def remember(
    meta: Meta,
    ref: ChannelRef,
    spec: ChannelSpec,
    credentials: Credentials,
    status: Mapping[str, Any],
) -> None:
    """A channel seen without asking Meta (a restart): what it tells about its account."""
    webhook = find_condition(status.get("conditions") or [], WEBHOOK_REGISTERED)
    waba_id = waba_of(spec, status)
    if (
        waba_id
        and webhook is not None
        and webhook.get("status") == "True"
        and webhook.get("reason") == reasons.OVERRIDE_REGISTERED
    ):
        meta.accounts.bind(ref.name, subscription(credentials, waba_id))


def _text(error: GraphError | str, credentials: Credentials) -> str:
    secrets = (credentials.access_token, credentials.app_secret, credentials.verify_token)
    return scrub(str(error), secrets)[:MESSAGE_LIMIT]


def _transient(error: GraphError, credentials: Credentials) -> ConditionState:
    reason = (
        reasons.RATE_LIMITED
        if error.kind in (GraphErrorKind.RATE_LIMITED, GraphErrorKind.BUDGET_EXHAUSTED)
        else reasons.META_UNAVAILABLE
    )
    return None, reason, _text(error, credentials)


def can_send(health: HealthStatus | None, credentials: Credentials) -> ConditionState | None:
    if health is None:
        return None
    detail = "; ".join(
        f"{e.error_code}: {e.error_description}".strip() for e in health.errors
    ) or "; ".join(info for entity in health.entities for info in entity.additional_info)
    message = f"Meta: {health.can_send_message.value}" + (f" ({detail})" if detail else "")
    message = _text(message, credentials)
    if health.can_send_message is CanSendMessage.BLOCKED:
        return False, reasons.MESSAGING_BLOCKED, message
    if health.can_send_message is CanSendMessage.LIMITED:
        return True, reasons.MESSAGING_LIMITED, message
    return True, reasons.MESSAGING_AVAILABLE, message


def facts(check: PhoneNumberCheck, waba_id: str | None) -> dict[str, str]:
    values = {
        "verifiedName": check.verified_name,
        "qualityRating": check.quality_rating,
        "phoneStatus": check.status,
        "messagingLimit": check.messaging_limit_tier,
        "wabaId": waba_id,
    }
    found = {key: value[:200] for key, value in values.items() if value}
    found["checkedAt"] = now_rfc3339()
    return found


def _refused(reason: str, message: str) -> Asked:
    """Meta ruled the channel out: nothing more is asked until the spec changes."""
    not_asked = (None, reasons.NOT_CHECKED, "not registered: Meta refused the credentials")
    return Asked(
        MetaReport(
            credentials=(False, reason, message),
            webhook=not_asked,
            facts={"checkedAt": now_rfc3339()},
        ),
        refused=True,
    )


def _failed(error: GraphError, credentials: Credentials) -> Asked:
    """A Graph call failed: a refusal of the credentials, else Unknown and tried again."""
    if error.kind.credentials_refused:
        return _refused(_CREDENTIAL_REASONS[error.kind], _text(error, credentials))
    state = _transient(error, credentials)
    return Asked(MetaReport(credentials=state), retry=MetaRetry(state[1], state[2]))


async def ask(
    meta: Meta,
    ref: ChannelRef,
    spec: ChannelSpec,
    credentials: Credentials,
    status: Mapping[str, Any],
    url: str,
    warn: Warn,
    before_override: BeforeOverride | None = None,
) -> Asked:
    """Check the channel at Meta and, when managed, make its webhook ours
    (`before_override`: see `register`)."""
    graph_credentials = GraphCredentials(credentials.access_token, credentials.app_secret)
    mode = mode_of(spec, meta.webhook_mode)
    waba_id = waba_of(spec, status)
    # Meta budgets management calls per app and business account: so does the operator.
    budget = subscription(credentials, waba_id) if waba_id else None
    try:
        check = await meta.graph.check_phone_number(
            spec.phone_number_id, graph_credentials, account=budget
        )
    except GraphError as error:
        return _failed(error, credentials)
    if mode == "managed" and not account_confirmed(spec, status):
        try:
            waba_id = await meta.discovery.account_of(
                meta.graph, graph_credentials, spec.phone_number_id, spec.waba_id
            )
        except DiscoveryRefused as refusal:
            return _refused(refusal.reason, _text(refusal.message, credentials))
        except GraphError as error:
            return _failed(error, credentials)
    accepted = (
        True,
        reasons.CREDENTIALS_ACCEPTED,
        f"Meta accepts the token and app secret for phone number {spec.phone_number_id}",
    )
    retry: ChannelFailure | None = None
    if mode == "manual":
        challenged = status.get("lastChallengeAt")
        webhook: ConditionState = (
            (True, reasons.CHALLENGE_ANSWERED, f"Meta's challenge reached {url} at {challenged}")
            if challenged
            else (
                None,
                reasons.AWAITING_CHALLENGE,
                f"enter {url} and the channel's verify token in the Meta app",
            )
        )
    else:
        readback = check.webhook_configuration.phone_number if check.webhook_configuration else None
        if readback == url:
            webhook = (
                True,
                reasons.OVERRIDE_REGISTERED,
                f"Meta delivers the number's events to {url}",
            )
            if waba_id:
                meta.accounts.bind(ref.name, subscription(credentials, waba_id))
        else:
            if readback:
                warn(
                    reasons.WEBHOOK_DRIFT,
                    _text(
                        f"Meta delivered the number's events to {readback[:200]}, not {url}; "
                        "re-applying the override",
                        credentials,
                    ),
                )
            webhook, waba_id = await register(
                meta, ref, spec, credentials, url, waba_id, before_override
            )
            if webhook[0] is None or webhook[1] == reasons.CALLBACK_VERIFICATION_FAILED:
                retry = MetaRetry(webhook[1], webhook[2])
            if webhook[0] is None and readback:
                webhook = (None, reasons.WEBHOOK_DRIFT, webhook[2])
    report = MetaReport(
        credentials=accepted,
        webhook=webhook,
        can_send=can_send(check.health_status, credentials),
        facts=facts(check, waba_id),
    )
    return Asked(report, retry=retry)


async def subscribe_once(
    meta: Meta, key: str, waba_id: str, graph_credentials: GraphCredentials
) -> None:
    """Subscribe the app to the account unless this operator already did. Channels of one
    account registered at once share a single call: the first asks Meta, the others await
    its answer. A transient failure reaches them all (each retries later); a refusal was
    about the first channel's token, so each of the others then asks with its own."""
    if key in meta.accounts.subscribed:
        return
    pending = meta.accounts.subscribing.get(key)
    if pending is None:
        pending = asyncio.ensure_future(
            meta.graph.subscribe_app(waba_id, graph_credentials, account=key)
        )
        meta.accounts.subscribing[key] = pending
        pending.add_done_callback(lambda done: _subscribed(meta.accounts, key, done))
        await asyncio.shield(pending)
        return
    try:
        # shield: a waiter cancelled (its handler timed out) must not cancel the others' call.
        await asyncio.shield(pending)
    except GraphError as error:
        if error.kind.transient:
            raise
        await meta.graph.subscribe_app(waba_id, graph_credentials, account=key)
        meta.accounts.subscribed.add(key)


def _subscribed(accounts: Accounts, key: str, done: asyncio.Future[None]) -> None:
    accounts.subscribing.pop(key, None)
    if not done.cancelled() and done.exception() is None:
        accounts.subscribed.add(key)


async def register(
    meta: Meta,
    ref: ChannelRef,
    spec: ChannelSpec,
    credentials: Credentials,
    url: str,
    waba_id: str | None,
    before_override: BeforeOverride | None = None,
) -> tuple[ConditionState, str | None]:
    """Subscribe the app to the account (once per account) and set the number's override;
    Meta calls the receiver's challenge during the override call. `before_override` is
    awaited once right before it: the reconcile waits there (bounded) until the receiver
    likely has the channel's Secret, so the first override usually passes Meta's challenge
    instead of costing a 2200, a pause and a second call; the retries stay the fallback."""
    graph_credentials = GraphCredentials(credentials.access_token, credentials.app_secret)
    if waba_id is None:  # ask finds or checks the account before it registers
        return (None, reasons.NOT_CHECKED, "the number's business account is not known"), None
    key = subscription(credentials, waba_id)
    try:
        await subscribe_once(meta, key, waba_id, graph_credentials)
    except GraphError as error:
        if error.kind.transient:
            return _transient(error, credentials), waba_id
        return (False, reasons.APP_NOT_SUBSCRIBED, _text(error, credentials)), waba_id
    if before_override is not None:
        await before_override()
    for delay in (*meta.callback_retries, None):
        try:
            await meta.graph.set_webhook_override(
                spec.phone_number_id,
                graph_credentials,
                url,
                credentials.verify_token,
                account=key,
            )
        except GraphError as error:
            kind = error.kind
            if kind is GraphErrorKind.CALLBACK_VERIFICATION_FAILED and delay is not None:
                log.debug("channel %s: Meta's challenge failed; again in %.1fs", ref.name, delay)
                await meta.sleep(delay)
                continue
            if kind is GraphErrorKind.CALLBACK_VERIFICATION_FAILED:
                return (
                    False,
                    reasons.CALLBACK_VERIFICATION_FAILED,
                    _text(error, credentials),
                ), waba_id
            if kind is GraphErrorKind.APP_NOT_SUBSCRIBED:
                meta.accounts.subscribed.discard(key)  # subscribe again on the retry
                return (None, reasons.APP_NOT_SUBSCRIBED, _text(error, credentials)), waba_id
            if kind.transient:
                return _transient(error, credentials), waba_id
            return (False, reasons.OVERRIDE_REFUSED, _text(error, credentials)), waba_id
        break
    meta.accounts.bind(ref.name, key)
    message = f"Meta accepted {url} as the number's webhook (its challenge reached the receiver)"
    return (True, reasons.OVERRIDE_REGISTERED, message), waba_id


async def release(
    meta: Meta,
    ref: ChannelRef,
    spec: ChannelSpec,
    credentials: Credentials,
    status: Mapping[str, Any],
) -> None:
    """The channel is being deleted: clear its override; unsubscribe the app from the
    account with the account's last channel. Transient failures raise MetaRetry (the
    finalizer tries again); a refusal (say, a revoked token) leaves Meta as it is."""
    if mode_of(spec, meta.webhook_mode) != "managed":
        return
    webhook = find_condition(status.get("conditions") or [], WEBHOOK_REGISTERED)
    if webhook is None or webhook.get("reason") not in (
        reasons.OVERRIDE_REGISTERED,
        reasons.WEBHOOK_DRIFT,
        reasons.CALLBACK_VERIFICATION_FAILED,
    ):
        return  # never registered by us
    graph_credentials = GraphCredentials(credentials.access_token, credentials.app_secret)
    waba_id = waba_of(spec, status)
    try:
        key = subscription(credentials, waba_id) if waba_id else None
        await meta.graph.clear_webhook_override(
            spec.phone_number_id, graph_credentials, account=key
        )
        if waba_id is not None and key is not None and meta.accounts.unbind(ref.name, key):
            await meta.graph.unsubscribe_app(waba_id, graph_credentials, account=key)
            meta.accounts.subscribed.discard(key)
    except GraphError as error:
        if error.kind.transient:
            _, reason, message = _transient(error, credentials)
            raise MetaRetry(reason, message) from None
        log.warning(
            "channel %s: Meta refused to release the webhook (%s); left as it is",
            ref.name,
            error.kind.value,
        )

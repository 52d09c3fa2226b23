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
from whatsapp_channel.untrusted import shown

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
    TokenInfo,
    scrub,
)

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 400
# status.appSubscription: the operator subscribed the app to the account (and undoes it with
# the account's last channel), or found it subscribed (and never undoes it).
OWNED_BY_OPERATOR = "operator"
PREEXISTING = "preexisting"
_CREDENTIAL_REASONS = {
    GraphErrorKind.TOKEN_INVALID: reasons.TOKEN_INVALID,
    GraphErrorKind.TOKEN_EXPIRED: reasons.TOKEN_EXPIRED,
    GraphErrorKind.APP_SECRET_MISMATCH: reasons.APP_SECRET_MISMATCH,
    GraphErrorKind.PHONE_NUMBER_NOT_FOUND: reasons.PHONE_NUMBER_NOT_FOUND,
    GraphErrorKind.ACCOUNT_NOT_FOUND: reasons.PHONE_NUMBER_NOT_FOUND,
    GraphErrorKind.PERMISSION_DENIED: reasons.PERMISSION_DENIED,
    GraphErrorKind.WRONG_OBJECT_TYPE: reasons.WRONG_OBJECT_TYPE,
    GraphErrorKind.ASSET_ACCESS_MISSING: reasons.ASSET_ACCESS_MISSING,
    GraphErrorKind.CAPABILITY_MISSING: reasons.CAPABILITY_MISSING,
    GraphErrorKind.POLICY_BLOCKED: reasons.POLICY_BLOCKED,
    GraphErrorKind.ACCOUNT_LOCKED: reasons.ACCOUNT_LOCKED,
    GraphErrorKind.INVALID_REQUEST: reasons.INVALID_REQUEST,
}
Warn = Callable[[str, str], None]
# Awaited right before the override call: until the receiver likely knows the channel.
BeforeOverride = Callable[[], Awaitable[None]]
META_CONDITIONS = (CREDENTIALS_VALID, WEBHOOK_REGISTERED, CAN_SEND_MESSAGE)
# A number `status` that cannot send (issue 19), with Meta's meaning
# (https://developers.facebook.com/docs/whatsapp/business-management-api/manage-phone-numbers
# and WhatsApp Manager's phone number statuses).
STATUS_REASONS = {
    "PENDING": (reasons.NUMBER_NOT_REGISTERED, "the number is not registered for the Cloud API"),
    "BANNED": (reasons.NUMBER_BANNED, "the number is banned from sending or receiving messages"),
    "RESTRICTED": (
        reasons.NUMBER_RESTRICTED,
        "the number reached its messaging limit and can only reply to customers",
    ),
    "DISCONNECTED": (reasons.NUMBER_DISCONNECTED, "the number is disconnected from WhatsApp"),
    "FLAGGED": (
        reasons.NUMBER_FLAGGED,
        "the number's quality rating fell to low; its messaging limit drops unless it recovers",
    ),
}


# The CanSendMessage gauge's value for each reason.
CAN_SEND_VALUES = {
    reasons.MESSAGING_AVAILABLE: "AVAILABLE",
    reasons.MESSAGING_LIMITED: "LIMITED",
    reasons.MESSAGING_BLOCKED: "BLOCKED",
    **{reason: "BLOCKED" for reason, _ in STATUS_REASONS.values()},
}


class MetaRetry(ChannelFailure):
    """Meta's answer was inconclusive (or its challenge failed): the same generation is
    tried again with backoff; no Warning for it by itself."""


@dataclass
class Accounts:
    """Per (app, business account) key: whether the app is known subscribed, whether this
    operator made that subscription (`owned`: only those are ever undone), and the channels
    of the account, managed or manual (known from their status after a restart, with no
    Graph call)."""

    subscribed: set[str] = field(default_factory=set)
    owned: set[str] = field(default_factory=set)
    channels: dict[str, set[str]] = field(default_factory=dict)
    # The subscription read (and subscribe) in flight per key, awaited by every channel
    # that needs it.
    subscribing: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    def bind(self, channel: str, key: str) -> None:
        for names in self.channels.values():
            names.discard(channel)
        self.channels.setdefault(key, set()).add(channel)

    def ownership(self, key: str) -> str | None:
        """status.appSubscription: who made the app's subscription to the account."""
        if key in self.owned:
            return OWNED_BY_OPERATOR
        return PREEXISTING if key in self.subscribed else None

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
    # A refusal (CredentialsValid=False) is asked again this often: most are fixed in
    # Business Settings, not in the channel's spec.
    refusal_period: float = 6 * 3600.0
    # A TokenExpiresSoon Warning this long before the token's expires_at.
    token_warning: float = 7 * 86400.0
    accounts: Accounts = field(default_factory=Accounts)
    discovery: Discovery = field(default_factory=Discovery)
    # Waits between override attempts when Meta's challenge fails (the receiver may not
    # have the channel's Secret in its cache yet); then Kopf's own backoff.
    callback_retries: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def next_check(self, status: Mapping[str, Any], generation: int) -> float:
        """Seconds from Meta's last answer to the next question: the slow refusal period
        for a refused channel, else the health period."""
        return self.refusal_period if is_refused(status, generation) else self.health_period


@dataclass(frozen=True)
class Asked:
    """One round of questions: the report for the status, whether to try again soon, and
    whether the credentials were refused (asked again only on the slow refusal period)."""

    report: MetaReport
    retry: ChannelFailure | None = None
    refused: bool = False


def subscription(app_id: str, waba_id: str) -> str:
    """The key of an (app, account) subscription: the app by its id (a reset app secret is
    the same app)."""
    return f"{app_id}/{waba_id}"


def app_of(check: PhoneNumberCheck) -> str | None:
    """The token's app, named by the check itself: `health_status.entities[]` holds an
    `APP` entity with the app's id (https://developers.facebook.com/docs/whatsapp/cloud-api/
    health-status: "entity_type: PHONE_NUMBER, WABA, BUSINESS, APP ... id")."""
    if check.health_status is None:
        return None
    for entity in check.health_status.entities:
        if entity.entity_type == "APP":
            return entity.id
    return None


# A number in one of these states is registered for the Cloud API, which makes its account
# "active" for Meta's rate limits (5,000 management calls an hour instead of 200).
REGISTERED_STATUSES = frozenset({"CONNECTED", "FLAGGED", "RESTRICTED"})


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
    # Manual: settled once the app's subscription is known (status.appSubscription).
    return webhook.get("status") == "True" or (
        mode == "manual" and bool(status.get("appSubscription"))
    )


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
    app_id = status.get("appId")
    if not waba_id or not isinstance(app_id, str):
        return
    key = subscription(app_id, waba_id)
    meta.accounts.bind(ref.name, key)
    if status.get("appSubscription") == OWNED_BY_OPERATOR:
        meta.accounts.owned.add(key)
    if (
        webhook is not None
        and webhook.get("status") == "True"
        and webhook.get("reason") in (reasons.OVERRIDE_REGISTERED, reasons.CHALLENGE_ANSWERED)
    ):
        meta.accounts.subscribed.add(key)


def _text(error: GraphError | str, credentials: Credentials) -> str:
    """A message for a condition or an Event: secrets scrubbed, escaped, capped."""
    secrets = (credentials.access_token, credentials.app_secret, credentials.verify_token)
    return shown(scrub(str(error), secrets), MESSAGE_LIMIT)


def _transient(error: GraphError, credentials: Credentials) -> ConditionState:
    reason = (
        reasons.RATE_LIMITED
        if error.kind in (GraphErrorKind.RATE_LIMITED, GraphErrorKind.BUDGET_EXHAUSTED)
        else reasons.META_UNAVAILABLE
    )
    return None, reason, _text(error, credentials)


def can_send(
    health: HealthStatus | None,
    credentials: Credentials,
    phone_status: str | None = None,
    *,
    registering: bool = False,
) -> ConditionState | None:
    """CanSendMessage from Meta's health, overruled by a number status that cannot send.
    `registering` (spec.registration): a PENDING number is Unknown, the operator registers
    it, instead of False."""
    if phone_status == "PENDING" and registering:
        return None, reasons.NUMBER_REGISTERING, "Meta: status PENDING; the operator registers it"
    if phone_status in STATUS_REASONS:
        reason, meaning = STATUS_REASONS[phone_status]
        return False, reason, f"Meta: status {phone_status} ({meaning})"
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


def facts(
    check: PhoneNumberCheck, waba_id: str | None, app_id: str | None, ownership: str | None
) -> dict[str, str]:
    values = {
        "verifiedName": check.verified_name,
        "qualityRating": check.quality_rating,
        "phoneStatus": check.status,
        "messagingLimit": check.messaging_limit,
        "nameStatus": check.name_status,
        "throughput": check.throughput.level if check.throughput else None,
        "platformType": check.platform_type,
        "wabaId": waba_id,
        "appId": app_id,
        "appSubscription": ownership,
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
    known_app = status.get("appId")
    # Meta budgets management calls per app and business account: so does the operator.
    budget = subscription(known_app, waba_id) if waba_id and isinstance(known_app, str) else waba_id
    try:
        check = await meta.graph.check_phone_number(
            spec.phone_number_id, graph_credentials, account=budget
        )
    except GraphError as error:
        return _failed(error, credentials)
    if budget is not None and meta.graph.budget is not None:
        meta.graph.budget.mark_active(budget, check.status in REGISTERED_STATUSES)
    if not account_confirmed(spec, status):
        try:
            waba_id = await meta.discovery.account_of(
                meta.graph, graph_credentials, spec.phone_number_id, spec.waba_id
            )
        except DiscoveryRefused as refusal:
            return _refused(refusal.reason, _text(refusal.message, credentials))
        except GraphError as error:
            return _failed(error, credentials)
    app_id = app_of(check) or (known_app if isinstance(known_app, str) else None)
    if app_id is None:
        try:
            app_id = await meta.discovery.app_id(meta.graph, graph_credentials)
        except GraphError as error:
            return _failed(error, credentials)
    try:
        token = await meta.discovery.token(meta.graph, graph_credentials, app_id)
    except DiscoveryRefused as refusal:
        return _refused(refusal.reason, _text(refusal.message, credentials))
    except GraphError as error:
        return _failed(error, credentials)
    if 0 < (token.expires_at or 0) < datetime.now(UTC).timestamp() + meta.token_warning:
        warn(
            reasons.TOKEN_EXPIRES_SOON,
            f"Meta: the access token expires at {rfc3339(token.expires_at)}; post a new one",
        )
    key = subscription(app_id, waba_id) if app_id and waba_id else None
    if key is not None:
        meta.accounts.bind(ref.name, key)
    accepted = (
        True,
        reasons.CREDENTIALS_ACCEPTED,
        f"Meta accepts the token and app secret for phone number {spec.phone_number_id}",
    )
    retry: ChannelFailure | None = None
    if mode == "manual":
        # Without the app's subscription to the account Meta delivers nothing, wherever the
        # webhook was entered: WebhookRegistered needs both (issue 19), and the challenge the
        # receiver noted is confirmed by Meta's read-back (issue 21).
        problem = await subscription_problem(meta, waba_id, app_id, graph_credentials, credentials)
        webhook: ConditionState = problem or manual_webhook(check, status, url)
        if problem is not None and problem[0] is None:
            retry = MetaRetry(problem[1], problem[2])
    else:
        readback = check.webhook_configuration.phone_number if check.webhook_configuration else None
        if readback == url:
            webhook = (
                True,
                reasons.OVERRIDE_REGISTERED,
                f"Meta delivers the number's events to {url}",
            )
            if key is not None:
                meta.accounts.subscribed.add(key)
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
                meta, ref, spec, credentials, url, waba_id, app_id, before_override
            )
            if webhook[0] is None or webhook[1] == reasons.CALLBACK_VERIFICATION_FAILED:
                retry = MetaRetry(webhook[1], webhook[2])
            if webhook[0] is None and readback:
                webhook = (None, reasons.WEBHOOK_DRIFT, webhook[2])
    report = MetaReport(
        credentials=accepted,
        webhook=webhook,
        can_send=can_send(
            check.health_status,
            credentials,
            check.status,
            registering=spec.registration is not None,
        ),
        facts={
            **facts(check, waba_id, app_id, meta.accounts.ownership(key) if key else None),
            **token_facts(token),
        },
    )
    return Asked(report, retry=retry)


def manual_webhook(check: PhoneNumberCheck, status: Mapping[str, Any], url: str) -> ConditionState:
    """A manual webhook is registered when the receiver answered Meta's challenge
    (lastChallengeAt, which the internet-facing receiver writes) and Meta's own read-back
    says it delivers the number's events to the channel's URL or the shared one."""
    delivered = check.webhook_configuration.effective if check.webhook_configuration else None
    challenged = parse_time(status.get("lastChallengeAt")) is not None
    if challenged and delivered in (url, url.rsplit("/", 1)[0]):
        return (
            True,
            reasons.CHALLENGE_ANSWERED,
            f"Meta's challenge reached {url}, and Meta delivers the number's events there",
        )
    where = f"; Meta delivers the number's events to {delivered[:200]}" if delivered else ""
    return (
        None,
        reasons.AWAITING_CHALLENGE,
        f"enter {url} and the channel's verify token in the Meta app{where}",
    )


def rfc3339(epoch: int | None) -> str:
    """Meta's epoch seconds as RFC 3339; 0 is Meta's "never"."""
    if not epoch:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def token_facts(token: TokenInfo) -> dict[str, str]:
    """status.tokenType, tokenExpiresAt, dataAccessExpiresAt (debug_token)."""
    found = {
        "tokenType": (token.type or "")[:40],
        "tokenExpiresAt": rfc3339(token.expires_at),
        "dataAccessExpiresAt": rfc3339(token.data_access_expires_at),
    }
    return {key: value for key, value in found.items() if value}


async def subscription_problem(
    meta: Meta,
    waba_id: str | None,
    app_id: str | None,
    graph_credentials: GraphCredentials,
    credentials: Credentials,
) -> ConditionState | None:
    """Make sure the app is subscribed to the account: None when it is, else the
    WebhookRegistered state that says why not (Unknown when Meta only failed)."""
    if waba_id is None or app_id is None:
        return None, reasons.NOT_CHECKED, "the number's account or app is not known"
    try:
        await subscribe_once(
            meta, subscription(app_id, waba_id), waba_id, app_id, graph_credentials
        )
    except GraphError as error:
        if error.kind.transient:
            return _transient(error, credentials)
        return False, reasons.APP_NOT_SUBSCRIBED, _text(error, credentials)
    return None


async def subscribe_once(
    meta: Meta, key: str, waba_id: str, app_id: str, graph_credentials: GraphCredentials
) -> None:
    """Make sure the app is subscribed to the account, once per key. Channels of one account
    registered at once share a single read (and subscribe): the first asks Meta, the others
    await its answer. A transient failure reaches them all (each retries later); a refusal
    was about the first channel's token, so each of the others then asks with its own."""
    if key in meta.accounts.subscribed:
        return
    pending = meta.accounts.subscribing.get(key)
    if pending is None:
        pending = asyncio.ensure_future(
            _subscribe_unless_subscribed(meta, key, waba_id, app_id, graph_credentials)
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
        await _subscribe_unless_subscribed(meta, key, waba_id, app_id, graph_credentials)
        meta.accounts.subscribed.add(key)


async def _subscribe_unless_subscribed(
    meta: Meta, key: str, waba_id: str, app_id: str, graph_credentials: GraphCredentials
) -> None:
    """`GET /{waba}/subscribed_apps` first; `POST` only when the app is not there. Never a
    second body-less POST: Meta's webhook override page, "Subscribing without post body
    parameters removes the alternate callback URL from the WABA"
    (https://developers.facebook.com/docs/whatsapp/embedded-signup/webhooks/override). A
    subscription found is not ours: the operator never undoes it."""
    apps = await meta.graph.subscribed_apps(waba_id, graph_credentials, account=key)
    if any(app.id == app_id for app in apps):
        return
    await meta.graph.subscribe_app(waba_id, graph_credentials, account=key)
    meta.accounts.owned.add(key)


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
    app_id: str | None,
    before_override: BeforeOverride | None = None,
) -> tuple[ConditionState, str | None]:
    """Subscribe the app to the account (once per account) and set the number's override;
    Meta calls the receiver's challenge during the override call. `before_override` is
    awaited once right before it: the reconcile waits there (bounded) until the receiver
    likely has the channel's Secret, so the first override usually passes Meta's challenge
    instead of costing a 2200, a pause and a second call; the retries stay the fallback."""
    graph_credentials = GraphCredentials(credentials.access_token, credentials.app_secret)
    if waba_id is None or app_id is None:  # ask finds both before it registers
        return (None, reasons.NOT_CHECKED, "the number's account or app is not known"), None
    key = subscription(app_id, waba_id)
    problem = await subscription_problem(meta, waba_id, app_id, graph_credentials, credentials)
    if problem is not None:
        return problem, waba_id
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
    """The channel is being deleted: clear its override (managed, when registered by us);
    with the account's last channel (managed or manual), unsubscribe the app, only when the
    operator made that subscription. Transient failures raise MetaRetry (the finalizer tries
    again); a refusal (say, a revoked token) leaves Meta as it is."""
    waba_id = waba_of(spec, status)
    app_id = status.get("appId")
    key = subscription(app_id, waba_id) if waba_id and isinstance(app_id, str) else None
    webhook = find_condition(status.get("conditions") or [], WEBHOOK_REGISTERED)
    ours = (
        mode_of(spec, meta.webhook_mode) == "managed"
        and webhook is not None
        and webhook.get("reason")
        in (
            reasons.OVERRIDE_REGISTERED,
            reasons.WEBHOOK_DRIFT,
            reasons.CALLBACK_VERIFICATION_FAILED,
        )
    )
    graph_credentials = GraphCredentials(credentials.access_token, credentials.app_secret)
    try:
        if ours:
            await meta.graph.clear_webhook_override(
                spec.phone_number_id, graph_credentials, account=key
            )
        if waba_id is None or key is None or not meta.accounts.unbind(ref.name, key):
            return  # other channels (managed or manual) of the account remain
        if key in meta.accounts.owned:  # only a subscription the operator made
            await meta.graph.unsubscribe_app(waba_id, graph_credentials, account=key)
            meta.accounts.owned.discard(key)
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

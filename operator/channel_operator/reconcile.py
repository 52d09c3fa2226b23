"""Reconciling one channel: its credentials, its Secret, its status; releasing it; repairing
its Secret after drift. Kopf-free (the handlers translate failures into Kopf's retries), so
it runs against any `Kube`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from whatsapp_channel import channel_secret, phone_claims
from whatsapp_channel.channel_secret import secret_name
from whatsapp_channel.kube import JSON, Kube, KubeError, NotFound, channels_path, core_path
from whatsapp_channel.model import (
    CAN_SEND_MESSAGE,
    CREDENTIALS_VALID,
    REGISTRATION_PIN_FIELD,
    ChannelSpec,
    RegistrationStatus,
    SealedCredentials,
    WebhookMode,
    find_condition,
    now_rfc3339,
    webhook_url,
)
from whatsapp_channel.reasons import (
    APISERVER_ERROR,
    CHANNEL_DISABLED,
    CHANNEL_READY,
    INVALID_SPEC,
    NUMBER_REGISTERING,
    PLATFORM_APP_MISSING,
    SECRET_REF_NOT_FOUND,
    SIGNUP_PENDING,
    UNKNOWN_SEALING_KEY,
)
from whatsapp_channel.sealing import SealError, public_key_of, seal, seal_key_id, unseal
from whatsapp_channel.untrusted import shown

from channel_operator import channel_at_meta as meta_steps
from channel_operator import metrics, registration, signup, tenancy
from channel_operator.channel_at_meta import Meta, MetaReport, MetaRetry, Warn
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
from channel_operator.graph import GraphCredentials, GraphInputError
from channel_operator.health import HealthSchedule
from channel_operator.keystore import KeyringError, Keys
from channel_operator.platform_app import PlatformApp

log = logging.getLogger(__name__)

WarnFor = Callable[[Mapping[str, Any]], Warn]
# How long the override waits for the Secret watch to deliver the operator's own write
# (`ChannelSecrets.delivered`); then it is asked anyway, and a 2200 is retried.
SECRET_DELIVERY_TIMEOUT = 5.0
# A challenge the receiver noted makes the operator ask Meta at once, unless a check is due
# within this many seconds anyway (the retry while Meta fails: a minute, jittered).
CHALLENGE_RECHECK_SECONDS = 90.0
# Where the receiver notes a verified account webhook of the channel's business account.
ACCOUNT_EVENT_FIELD = "lastAccountEventAt"


@dataclass
class Runtime:
    """What the handlers share: the client, the keys, the Secret cache, the settings."""

    kube: Kube
    namespace: str
    webhook_base_url: str
    keys: Keys
    secrets: ChannelSecrets
    watcher: asyncio.Task[None] | None = None  # the Secret watch, started with the operator
    meta: Meta | None = None  # the Graph API (issue 11); None: Meta is not asked
    health: HealthSchedule | None = None
    health_task: asyncio.Task[None] | None = None
    # Who claims which phone number id (`tenancy.PhoneClaimIndex`, fed by its own watch
    # started with the operator); None: not known (then nothing is refused for it).
    phone_claims: tenancy.PhoneClaims | None = None
    claims_watcher: asyncio.Task[None] | None = None
    keys_keeper: asyncio.Task[None] | None = None
    # The background tasks above that ended while the operator runs (a bug): liveness fails
    # with their names (`startup.supervise`), so Kubernetes restarts the operator.
    ended: list[str] = field(default_factory=list)
    # The platform's own Meta app (`platform_app`), None: none configured.
    platform_app: PlatformApp | None = None

    @property
    def platform_app_secret(self) -> str | None:
        return self.platform_app.app_secret if self.platform_app is not None else None


def sealed_values(sealed: SealedCredentials) -> tuple[str, ...]:
    values = (sealed.access_token, sealed.signup_code, sealed.app_secret, sealed.verify_token)
    return tuple(value for value in values if value is not None)


def parse_spec(spec: Mapping[str, Any]) -> ChannelSpec:
    try:
        return ChannelSpec.model_validate(dict(spec))
    except ValidationError as exc:
        # Field locations only: pydantic's messages would quote the (sealed) input.
        fields = sorted({shown(".".join(str(p) for p in e["loc"])) for e in exc.errors()})
        raise ChannelFailure(
            INVALID_SPEC, f"spec does not fit the contract at: {', '.join(fields)}"
        ) from None


async def read_credentials(
    rt: Runtime,
    ref: ChannelRef,
    spec: ChannelSpec,
    status: MutableMapping[str, Any] | None = None,
    *,
    exchange: bool = False,
) -> Credentials:
    """The channel's credentials. A signup code's business token comes from `status`
    (status.signup); only with `exchange` (the channel's reconcile) is a code not yet
    exchanged exchanged, and `status` then holds what was kept."""
    if spec.sealed is not None:
        sealed = spec.sealed
        with contextlib.suppress(KubeError, KeyringError):  # a retired key opens nothing
            await rt.keys.refresh()  # (a failed read keeps the keys we have)
        token = (
            await signup_token(rt, ref, sealed, {} if status is None else status, exchange)
            if sealed.signup_code is not None
            else None
        )
        try:
            return open_seals(rt.keys.private_keys, ref, sealed, rt.platform_app_secret, token)
        except SealError as exc:
            if exc.reason != UNKNOWN_SEALING_KEY:
                raise seal_failure(exc) from None
            # Perhaps rotated by another process since we loaded the keys: read them again.
            try:  # another field may be no seal at all: that is the failure to report
                ids = {seal_key_id(v) for v in sealed_values(sealed)}
            except SealError as malformed:
                raise seal_failure(malformed) from None
            try:
                known = [await rt.keys.reload_for(key_id) for key_id in sorted(ids)]
            except KubeError:
                raise seal_failure(exc) from None
            if not all(known):
                raise seal_failure(exc) from None
        try:
            return open_seals(rt.keys.private_keys, ref, sealed, rt.platform_app_secret, token)
        except SealError as exc:
            raise seal_failure(exc) from None
    if spec.secret_ref is not None:
        name = spec.secret_ref.name
        tenancy.refuse_generated_name(name)
        cached = rt.secrets.get(name)  # the cache holds generated Secrets only: refused
        if cached is not None:
            tenancy.check_secret_ref(cached, ref)
        try:
            secret = await rt.kube.get(core_path("secrets", ref.namespace, name))
        except NotFound:
            raise ChannelFailure(
                SECRET_REF_NOT_FOUND,
                f"Secret {shown(name)} named by spec.secretRef does not exist in {ref.namespace}",
            ) from None
        tenancy.check_secret_ref(secret, ref)
        return credentials_from_secret(secret)
    raise ChannelFailure(INVALID_SPEC, "spec gives no credentials: set sealed or secretRef")


async def signup_token(
    rt: Runtime,
    ref: ChannelRef,
    sealed: SealedCredentials,
    status: MutableMapping[str, Any],
    exchange: bool,
) -> str:
    """The business token of the spec's signup code: kept in status.signup, else (with
    `exchange`) exchanged now with the platform app."""
    assert sealed.signup_code is not None
    kept = signup.kept(status, sealed.signup_code)
    if kept is not None:
        return signup.open_kept(rt.keys.private_keys, ref, kept)[0]
    if not exchange:
        raise ChannelFailure(SIGNUP_PENDING, "the signup code is not exchanged yet")
    if rt.platform_app is None or rt.meta is None:
        raise ChannelFailure(
            PLATFORM_APP_MISSING,
            "a signup code is exchanged with the platform's Meta app, and the operator holds "
            "none (operator.platformApp.existingSecret)",
        )
    try:
        code = unseal(
            rt.keys.private_keys,
            namespace=ref.namespace,
            name=ref.name,
            field="signupCode",
            sealed=sealed.signup_code,
        )
    except SealError as exc:
        raise seal_failure(exc) from None
    keyring = rt.keys.keyring
    try:
        token, kept = await signup.exchange(
            rt.meta.graph,
            rt.kube,
            keyring.private_keys,
            keyring.active_key_id,
            ref,
            rt.platform_app,
            code,
            sealed.signup_code,
        )
    except KubeError as exc:
        raise ChannelFailure(
            APISERVER_ERROR, f"keeping the business token failed ({exc.status} {exc.reason})"
        ) from None
    status["signup"] = kept.model_dump(by_alias=True)
    return token


async def register_signup(
    rt: Runtime,
    ref: ChannelRef,
    spec: ChannelSpec,
    credentials: Credentials,
    status: MutableMapping[str, Any],
) -> None:
    """A signup channel's number registered with its PIN, once."""
    assert rt.meta is not None
    assert spec.sealed is not None
    assert spec.sealed.signup_code
    kept = signup.kept(status, spec.sealed.signup_code)
    if kept is None or kept.registered:
        return
    pin = signup.open_kept(rt.keys.private_keys, ref, kept)[1]
    graph_credentials = GraphCredentials(credentials.access_token, credentials.app_secret)
    try:
        await signup.register(
            rt.meta.graph, rt.kube, ref, spec.phone_number_id, graph_credentials, pin, kept
        )
    except KubeError as exc:
        raise ChannelFailure(
            APISERVER_ERROR, f"noting the registration failed ({exc.status} {exc.reason})"
        ) from None
    status["signup"] = {**kept.model_dump(by_alias=True), "registered": True}


async def register_asked(
    rt: Runtime,
    ref: ChannelRef,
    spec: ChannelSpec,
    credentials: Credentials,
    status: MutableMapping[str, Any],
) -> None:
    """spec.registration's number registered with the spec's sealed PIN, else one the
    operator generates and keeps sealed in status.registration before Meta is asked."""
    assert rt.meta is not None
    assert spec.registration is not None
    keyring = rt.keys.keyring
    kept = registration.kept(status)
    sealed = spec.registration.pin or kept.pin
    try:
        if sealed is None:
            pin = registration.new_pin()
            key = public_key_of(keyring.private_keys[keyring.active_key_id])
            sealed = seal(
                key, namespace=ref.namespace, name=ref.name, field=REGISTRATION_PIN_FIELD, value=pin
            )
            kept = RegistrationStatus(pin=sealed)
            await registration.keep(rt.kube, ref, "registration", kept)
        else:
            pin = unseal(
                keyring.private_keys,
                namespace=ref.namespace,
                name=ref.name,
                field=REGISTRATION_PIN_FIELD,
                sealed=sealed,
            )
        graph_credentials = GraphCredentials(credentials.access_token, credentials.app_secret)
        await registration.register(
            rt.meta.graph, ref, spec.phone_number_id, graph_credentials, pin
        )
        kept = kept.model_copy(update={"registered": True})
        await registration.keep(rt.kube, ref, "registration", kept)
    except SealError as exc:
        raise ChannelFailure(exc.reason, f"spec.registration.pin: {exc.message}") from None
    except KubeError as exc:
        raise ChannelFailure(
            APISERVER_ERROR, f"keeping the registration failed ({exc.status} {exc.reason})"
        ) from None
    finally:
        status["registration"] = kept.model_dump(by_alias=True, exclude_none=True)


async def ask_meta_registering(
    rt: Runtime,
    ref: ChannelRef,
    spec: ChannelSpec,
    credentials: Credentials,
    current: MutableMapping[str, Any],
    warn: Warn,
    *,
    force: bool = False,
) -> tuple[MetaReport | None, ChannelFailure | None]:
    """`ask_meta`, then, when the spec asks for registration and Meta answered PENDING, the
    registration and Meta asked again (CONNECTED once registered). A refusal is the number's
    CanSendMessage=False, asked again on the slow refusal period; a transient failure is
    retried."""
    assert rt.meta is not None
    report, retry = await ask_meta(rt, ref, spec, credentials, current, warn, force=force)
    facts = report.facts if report is not None else None
    if spec.registration is None or (facts or {}).get("phoneStatus") != registration.PENDING:
        return report, retry
    assert report is not None
    try:
        await register_asked(rt, ref, spec, credentials, current)
    except registration.RegistrationRefused as exc:
        if rt.health is not None:
            rt.health.after(ref.name, rt.meta.refusal_period)
        return dataclasses.replace(report, can_send=(False, exc.reason, exc.message)), retry
    except MetaRetry as exc:
        return dataclasses.replace(report, can_send=(None, NUMBER_REGISTERING, exc.message)), exc
    return await ask_meta(rt, ref, spec, credentials, current, warn, force=True)


def effective_mode(rt: Runtime, spec: ChannelSpec) -> WebhookMode:
    """Who registers the channel's webhook at Meta: the spec, else the operator's default;
    "manual" when the operator does not talk to Meta (then only Meta's challenge tells)."""
    return meta_steps.mode_of(spec, rt.meta.webhook_mode) if rt.meta is not None else "manual"


async def sync_secret(
    rt: Runtime,
    ref: ChannelRef,
    spec: ChannelSpec,
    *,
    locked: bool = False,
    status: MutableMapping[str, Any] | None = None,
) -> Written | None:
    """Make the channel's Secret what the spec says; how it was written, None if it was not.
    `locked`: the caller holds the Secret's lock (`ChannelSecrets.holding`)."""
    return (await sync_secret_with_credentials(rt, ref, spec, locked=locked, status=status))[0]


async def sync_secret_with_credentials(
    rt: Runtime,
    ref: ChannelRef,
    spec: ChannelSpec,
    *,
    locked: bool = False,
    status: MutableMapping[str, Any] | None = None,
    exchange: bool = False,
) -> tuple[Written | None, Credentials]:
    try:
        credentials = await read_credentials(rt, ref, spec, status, exchange=exchange)
        desired = build_secret(
            ref,
            spec,
            credentials,
            webhook_mode=effective_mode(rt, spec),
            waba_id=meta_steps.waba_of(spec, status or {}),
        )
        if locked:
            return await rt.secrets.ensure_locked(ref, desired), credentials
        return await rt.secrets.ensure(ref, desired), credentials
    except KubeError as exc:
        # The apiserver's own message may quote what was sent: status and reason only.
        raise ChannelFailure(
            APISERVER_ERROR,
            f"the apiserver refused work on Secrets ({exc.status} {exc.reason}); will retry",
        ) from None


def _ignore(reason: str, message: str) -> None:
    return None


def phone_holders(rt: Runtime, spec: ChannelSpec) -> set[str]:
    """The claimants of the spec's number whose generated Secret holds it now."""
    phone = spec.phone_number_id
    claims = rt.phone_claims.get(phone, ()) if rt.phone_claims is not None else ()
    return {
        c.name
        for c in claims
        if tenancy.holds_number(rt.secrets.get(secret_name(c.name)), c.name, phone)
    }


async def claim_phone(rt: Runtime, body: Mapping[str, Any], spec: ChannelSpec) -> None:
    """Raise PhoneNumberTaken (after deleting the channel's Secret, so the receiver never
    routes to it) when another channel's claim holds the phone number id; when this one's
    does, delete the Secrets of the claimants that lost it (a refused squatter's)."""
    if rt.phone_claims is None:
        return
    ref = ChannelRef.from_body(body)
    holders = phone_holders(rt, spec)
    try:
        tenancy.check_phone_claim(body, rt.phone_claims, holders)
    except ChannelFailure:
        await _delete_secret(rt, ref)
        raise
    for name in sorted(holders - {ref.name}):
        await _delete_secret(rt, dataclasses.replace(ref, name=name, uid=""))


async def _delete_secret(rt: Runtime, ref: ChannelRef) -> None:
    try:
        await rt.secrets.delete(ref)
    except KubeError as exc:
        raise ChannelFailure(
            APISERVER_ERROR, f"deleting Secret {ref.secret_name} failed ({exc.status} {exc.reason})"
        ) from None


async def reconcile(
    rt: Runtime,
    body: Mapping[str, Any],
    status_patch: MutableMapping[str, Any],
    warn: Warn = _ignore,
) -> ChannelFailure | None:
    """Bring one channel to its desired state; put the status changes (only those) into
    `status_patch`. Returns the failure, if any, for the caller to retry (a `MetaRetry` when
    only Meta's answer is awaited). `warn(reason, message)` gets Meta's new refusals."""
    ref = ChannelRef.from_body(body)
    spec_body = body.get("spec") or {}
    enabled = bool(spec_body.get("enabled", True))
    failure: ChannelFailure | None = None
    current = dict(body.get("status") or {})  # status.signup lands here when exchanged
    spec: ChannelSpec | None = None
    report: MetaReport | None = None
    retry: ChannelFailure | None = None
    try:
        spec = parse_spec(spec_body)
        await claim_phone(rt, body, spec)
        written, credentials = await sync_secret_with_credentials(
            rt, ref, spec, status=current, exchange=True
        )
        if written is not None:
            metrics.SECRET_WRITES.labels(written).inc()
            log.info("channel %s: Secret %s %s", ref.name, ref.secret_name, written)
        if enabled and rt.meta is not None:
            if spec.sealed is not None and spec.sealed.signup_code is not None:
                await register_signup(rt, ref, spec, credentials, current)
            report, retry = await ask_meta_registering(rt, ref, spec, credentials, current, warn)
    except ChannelFailure as exc:
        failure = exc
    desired = build_status(
        current,
        ref,
        webhook_base_url=rt.webhook_base_url,
        enabled=enabled,
        failure=failure,
        meta=report,
        settled=retry is None,
        ask_meta=rt.meta is not None,
    )
    if isinstance(failure, signup.SignupRefused):  # settled: never retried
        desired["observedGeneration"] = ref.generation
        warn(failure.reason, failure.message)
    changes, failure = await _report(
        rt, body, current, desired, failure, warn, spec=spec, asked=report is not None
    )
    status_patch.update(changes)
    if rt.health is not None and (failure is not None or not enabled):
        rt.health.drop(ref.name)
    if isinstance(failure, signup.SignupRefused):
        return None
    return failure or retry


async def _report(
    rt: Runtime,
    body: Mapping[str, Any],
    current: Mapping[str, Any],
    desired: JSON,
    failure: ChannelFailure | None,
    warn: Warn,
    *,
    spec: ChannelSpec | None,
    asked: bool,
) -> tuple[JSON, ChannelFailure | None]:
    """What a reconcile and a health check report, one way: the claim on the number once
    proven, the status changes, the Secret naming the account Meta answered with, a Warning
    for each new refusal, the metrics. The changes, and the failure (the one given, or the
    failure to name the account)."""
    ref = ChannelRef.from_body(body)
    enabled = bool((body.get("spec") or {}).get("enabled", True))
    if failure is None:
        record_claim(rt, body, desired)
    changes = status_changes(current, desired)
    if failure is None and asked and spec is not None:
        failure = await name_account(rt, ref, spec, {**current, **changes})
    _warn_transitions(current, desired, warn)
    _count(ref, desired, failure, enabled)
    if rt.meta is not None:
        stated = desired.get("tokenExpiresAt", current.get("tokenExpiresAt"))
        expires = meta_steps.parse_time(stated)
        metrics.token_expiry(ref.name, None if expires is None else expires - rt.meta.token_warning)
    return changes, failure


async def name_account(
    rt: Runtime, ref: ChannelRef, spec: ChannelSpec, status: Mapping[str, Any]
) -> ChannelFailure | None:
    """Meta answered: the Secret names the number's business account as the status now does
    (the waba-id label, by which the receiver verifies account webhooks), written only when
    it differs. The failure to write it, if any."""
    secret = rt.secrets.get(ref.secret_name)
    parsed = channel_secret.parse(secret) if secret is not None else None
    if parsed is None or parsed.waba_id == meta_steps.waba_of(spec, status):
        return None
    try:
        await sync_secret(rt, ref, spec, status=dict(status))
    except ChannelFailure as failure:
        return failure
    return None


def record_claim(rt: Runtime, body: Mapping[str, Any], desired: JSON) -> None:
    """Once the channel's claim on its number is proven (Meta accepted its credentials for
    this generation; without Meta, its Secret is written), `status.phoneClaim` says since
    when (`whatsapp_channel.phone_claims`)."""
    ref = ChannelRef.from_body(body)
    if rt.meta is None:
        accepted = True
    else:
        valid = find_condition(desired.get("conditions") or [], CREDENTIALS_VALID) or {}
        generation = valid.get("observedGeneration")
        accepted = valid.get("status") == "True" and generation == ref.generation
    phone = str((body.get("spec") or {}).get("phoneNumberId") or "")
    record = phone_claims.proof(body.get("status") or {}, phone, accepted, now_rfc3339())
    if record is not None:
        desired[phone_claims.STATUS_FIELD] = record


async def ask_meta(
    rt: Runtime,
    ref: ChannelRef,
    spec: ChannelSpec,
    credentials: Credentials,
    current: Mapping[str, Any],
    warn: Warn,
    *,
    force: bool = False,
) -> tuple[MetaReport | None, ChannelFailure | None]:
    """Ask Meta unless it answered for this generation within the health period (a restart
    makes no Graph call for those); schedule the next health check."""
    assert rt.meta is not None
    meta = rt.meta
    mode = meta_steps.mode_of(spec, meta.webhook_mode)
    ago = meta_steps.checked_ago(current)
    if (
        not force
        and ago is not None
        and ago < meta.health_period
        and meta_steps.is_settled(current, ref.generation, mode)
    ):
        meta_steps.remember(meta, ref, spec, credentials, current)
        if rt.health is not None:
            rt.health.after(ref.name, meta.next_check(current, ref.generation) - ago)
        return None, None
    url = webhook_url(rt.webhook_base_url, ref.name)

    async def secret_delivered() -> None:
        if not await rt.secrets.delivered(ref.secret_name, SECRET_DELIVERY_TIMEOUT):
            log.debug(
                "channel %s: the Secret watch has not delivered our write after %.0fs; "
                "registering the webhook anyway",
                ref.name,
                SECRET_DELIVERY_TIMEOUT,
            )

    try:
        asked = await meta_steps.ask(
            meta, ref, spec, credentials, current, url, warn, before_override=secret_delivered
        )
    except GraphInputError as exc:
        await _delete_secret(rt, ref)  # no Secret for a channel Meta was never asked about
        raise ChannelFailure(INVALID_SPEC, f"Meta cannot be asked: {shown(str(exc))}") from None
    if rt.health is not None:
        rt.health.after(ref.name, meta.refusal_period if asked.refused else meta.health_period)
    return asked.report, asked.retry


def _warn_transitions(current: Mapping[str, Any], desired: Mapping[str, Any], warn: Warn) -> None:
    """A Warning when one of Meta's conditions turns False or changes its False reason."""
    before = current.get("conditions") or []
    for condition in desired.get("conditions") or []:
        if condition.get("type") not in meta_steps.META_CONDITIONS:
            continue
        if condition.get("status") != "False":
            continue
        previous = find_condition(before, str(condition["type"])) or {}
        if previous.get("status") != "False" or previous.get("reason") != condition["reason"]:
            warn(str(condition["reason"]), str(condition["message"]))


def _count(
    ref: ChannelRef, desired: Mapping[str, Any], failure: ChannelFailure | None, enabled: bool
) -> None:
    conditions = desired.get("conditions") or []
    ready = find_condition(conditions, "Ready") or {}
    if failure is not None:
        metrics.reconciled(ref.name, failure.reason, ready=False)
    elif not enabled:
        metrics.reconciled(ref.name, CHANNEL_DISABLED, ready=True)
    else:
        metrics.reconciled(
            ref.name, str(ready.get("reason", CHANNEL_READY)), ready=ready.get("status") == "True"
        )
    can_send = find_condition(conditions, CAN_SEND_MESSAGE)
    if can_send is not None:
        metrics.CAN_SEND.value_by_channel[ref.name] = meta_steps.CAN_SEND_VALUES.get(
            str(can_send.get("reason")), "unknown"
        )


async def recheck(rt: Runtime, name: str, warn_for: WarnFor) -> float | None:
    """The health check of one channel: Meta asked again, the status patched; the delay
    until the next (None: not until the channel changes)."""
    assert rt.meta is not None
    try:
        body = await rt.kube.get(channels_path(rt.namespace, name))
    except NotFound:
        return None
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return None
    spec_body = body.get("spec") or {}
    if not spec_body.get("enabled", True):
        return None
    ref = ChannelRef.from_body(body)
    current = body.get("status") or {}
    if (current.get("observedGeneration") or 0) != ref.generation:
        return rt.meta.health_period  # Kopf is still at it
    spec = parse_spec(spec_body)
    credentials = await read_credentials(rt, ref, spec, dict(current))
    warn = warn_for(body)
    current = dict(current)  # status.registration lands here when kept
    report, retry = await ask_meta_registering(
        rt, ref, spec, credentials, current, warn, force=True
    )
    desired = build_status(
        current,
        ref,
        webhook_base_url=rt.webhook_base_url,
        enabled=True,
        failure=None,
        meta=report,
        settled=True,
    )
    changes, unnamed = await _report(
        rt, body, current, desired, None, warn, spec=spec, asked=report is not None
    )
    if changes:
        await rt.kube.merge_patch(channels_path(rt.namespace, name, "status"), {"status": changes})
    if unnamed is not None or retry is not None:
        return min(rt.meta.health_period, 60.0)
    return rt.health.due_in(name) if rt.health is not None else None


async def release(rt: Runtime, body: Mapping[str, Any]) -> None:
    """The channel is being deleted: release its webhook at Meta, delete what it owns."""
    ref = ChannelRef.from_body(body)
    if rt.health is not None:
        rt.health.drop(ref.name)
    if rt.meta is not None:
        await release_at_meta(rt, ref, body)
    await _delete_secret(rt, ref)
    metrics.released(ref.name)


async def challenge_seen(rt: Runtime, body: Mapping[str, Any]) -> None:
    """A manual channel's receiver saw Meta's challenge (status.lastChallengeAt) after
    Meta's last check: ask Meta now (the health check, which confirms the webhook only
    from Meta's own read-back). No Graph call for any other event."""
    await _recheck_after(rt, body, "lastChallengeAt", manual_only=True)


async def account_event_seen(rt: Runtime, body: Mapping[str, Any]) -> None:
    """The receiver got a verified account webhook of the channel's business account
    (status.lastAccountEventAt) after Meta's last check: ask Meta now, so a ban or a quality
    drop shows within seconds, not at the next health period."""
    await _recheck_after(rt, body, ACCOUNT_EVENT_FIELD, manual_only=False)


async def _recheck_after(
    rt: Runtime, body: Mapping[str, Any], field: str, *, manual_only: bool
) -> None:
    """The health check now, when the receiver's `field` is newer than Meta's last check
    and none is due within CHALLENGE_RECHECK_SECONDS (so such notes add no more than that)."""
    if rt.meta is None or rt.health is None:
        return
    current = body.get("status") or {}
    spec_body = body.get("spec") or {}
    if not spec_body.get("enabled", True):
        return
    noted = meta_steps.parse_time(current.get(field))
    checked = meta_steps.parse_time(current.get("checkedAt"))
    if noted is None or (checked is not None and checked > noted):
        return
    ref = ChannelRef.from_body(body)
    if current.get("observedGeneration") != ref.generation:
        return  # the reconcile of this generation asks Meta itself
    try:
        spec = parse_spec(spec_body)
    except ChannelFailure:
        return
    due = rt.health.due_in(ref.name)
    if due is not None and due <= CHALLENGE_RECHECK_SECONDS:
        return  # asked already, or about to be
    if not manual_only or meta_steps.mode_of(spec, rt.meta.webhook_mode) == "manual":
        rt.health.after(ref.name, 0)


async def release_at_meta(rt: Runtime, ref: ChannelRef, body: Mapping[str, Any]) -> None:
    assert rt.meta is not None
    try:
        spec = parse_spec(body.get("spec") or {})
        credentials = await read_credentials(rt, ref, spec, dict(body.get("status") or {}))
    except (ChannelFailure, KubeError):
        return  # no credentials to act with: nothing of ours can be released at Meta
    await meta_steps.release(rt.meta, ref, spec, credentials, body.get("status") or {})


async def repair(rt: Runtime, channel_name: str) -> None:
    """A generated Secret changed behind our back: put it back as the channel says.
    KubeErrors propagate (the caller retries); a channel that cannot be synced now is left
    to its own reconcile, which reports it in status.

    The channel is read under the lock its reconcile writes under: a reconcile of a newer
    generation either wrote before this read (which then sees that generation) or waits
    until the repair is done, so a repair never writes credentials older than a reconcile's.
    """
    async with rt.secrets.holding(secret_name(channel_name)):
        try:
            body = await rt.kube.get(channels_path(rt.namespace, channel_name))
        except NotFound:
            body = None
        if body is not None:
            await _restore(rt, body)
            return
    await rt.secrets.delete_orphan(channel_name)


async def _restore(rt: Runtime, body: Mapping[str, Any]) -> None:
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return
    ref = ChannelRef.from_body(body)
    try:
        spec = parse_spec(body.get("spec") or {})
        if rt.phone_claims is not None:  # a claimant's Secret is its reconcile's to delete
            tenancy.check_phone_claim(body, rt.phone_claims, phone_holders(rt, spec))
        status = dict(body.get("status") or {})
        if await sync_secret(rt, ref, spec, locked=True, status=status) is not None:
            metrics.SECRET_WRITES.labels("restored").inc()
            log.info("channel %s: Secret %s restored", ref.name, ref.secret_name)
    except ChannelFailure as exc:
        log.warning("channel %s: Secret not restored (%s)", ref.name, exc.reason)

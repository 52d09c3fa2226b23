"""Registering a managed webhook without a cluster (issue 11): channels of one account share
one subscribe call, and the override waits until the operator's own Secret watch delivered
the Secret it wrote (the receiver's watch, served by the same apiserver, has it by then).

Meta is a recording fake here (what is sent on the wire is pinned against the stand-in in
tests/graph); the Secrets live in the in-memory apiserver of tests/support/fake_kube.py.
Every step is ordered by events, never by sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterable
from typing import Any, cast

import pytest
from channel_operator import keystore, reconcile
from channel_operator.channel_at_meta import Asked, Meta, MetaRetry, ask, subscription
from channel_operator.channel_secrets import ChannelSecrets
from channel_operator.desired import ChannelRef, Credentials, build_secret
from channel_operator.graph import (
    CHECK_FIELDS,
    WHATSAPP_SCOPES,
    GraphClient,
    GraphCredentials,
    GraphError,
    GraphErrorKind,
    HealthEntity,
    HealthStatus,
    PhoneNumberCheck,
    SubscribedApp,
    TokenInfo,
    WebhookConfiguration,
)
from channel_operator.health import HealthSchedule
from channel_operator.reconcile import Runtime
from whatsapp_channel import reasons
from whatsapp_channel.kube import JSON, core_path
from whatsapp_channel.model import READY, ChannelSpec, WebhookSpec, find_condition

from tests.operator.test_reconcile import NS, VALUES, channel_body, public_key, sealed_spec
from tests.support.fake_kube import MemoryKube

WABA = "102290129340398"
URL = "https://hooks.example.test/hooks/whatsapp/channel"
APP_SECRET = "app-secret-shared"  # one app: one subscription key per account
APP_ID = "670843887433847"


class FakeGraph:
    """The Graph calls `meta` makes, recorded as (call, object id, access token). The
    subscribe call can be held (`subscribe_gate`) and made to fail (`subscribe_errors`,
    one per call, in order); `expect_checks` sets `all_checked` at that many checks."""

    def __init__(self, expect_checks: int = 0) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.subscribe_gate = asyncio.Event()
        self.subscribe_gate.set()
        self.subscribe_entered = asyncio.Event()
        self.subscribe_errors: list[GraphError] = []
        self.expect_checks = expect_checks
        self.all_checked = asyncio.Event()
        # Whether `secrets`' watch had delivered Secret `secret_name` at each override call.
        self.delivered_at_override: list[bool] = []
        self.secrets: ChannelSecrets | None = None
        self.secret_name = ""
        self.budget = None  # as a GraphClient without a per-account budget

    def made(self, call: str) -> list[tuple[str, str, str]]:
        return [c for c in self.calls if c[0] == call]

    async def check_phone_number(
        self,
        phone_number_id: str,
        credentials: GraphCredentials,
        *,
        fields: Iterable[str] = CHECK_FIELDS,
        account: str | None = None,
    ) -> PhoneNumberCheck:
        self.calls.append(("check", phone_number_id, credentials.access_token))
        if len(self.made("check")) == self.expect_checks:
            self.all_checked.set()
        app = HealthEntity(entity_type="APP", id=APP_ID, can_send_message="AVAILABLE")
        return PhoneNumberCheck(
            id=phone_number_id,
            verified_name="Seed Co",
            status="CONNECTED",
            health_status=HealthStatus(can_send_message="AVAILABLE", entities=(app,)),
        )

    async def debug_token(self, credentials: GraphCredentials, app_id: str) -> TokenInfo:
        self.calls.append(("debug_token", app_id, credentials.access_token))
        return TokenInfo(is_valid=True, app_id=app_id, scopes=WHATSAPP_SCOPES)

    async def subscribed_apps(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> list[SubscribedApp]:
        """No app is subscribed to the account before the operator."""
        self.calls.append(("subscriptions", waba_id, credentials.access_token))
        return []

    async def subscribe_app(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> None:
        self.calls.append(("subscribe", waba_id, credentials.access_token))
        self.subscribe_entered.set()
        await self.subscribe_gate.wait()
        if self.subscribe_errors:
            raise self.subscribe_errors.pop(0)

    async def phone_number_ids(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> frozenset[str]:
        """The account holds every number `channel` makes, and the reconcile tests' one."""
        self.calls.append(("phone_numbers", waba_id, credentials.access_token))
        return frozenset({"106540352242922", *(f"1065{index:011d}" for index in range(100))})

    async def set_webhook_override(
        self,
        phone_number_id: str,
        credentials: GraphCredentials,
        callback_uri: str,
        verify_token: str,
        *,
        account: str | None = None,
    ) -> None:
        self.calls.append(("override", phone_number_id, credentials.access_token))
        if self.secrets is not None:
            self.delivered_at_override.append(self.secrets.is_delivered(self.secret_name))


def graph_error(kind: GraphErrorKind, code: int) -> GraphError:
    return GraphError(kind, "subscribe", message=f"refused ({code})", code=code)


def meta_for(graph: FakeGraph) -> Meta:
    return Meta(graph=cast(GraphClient, graph))


async def runtime_asking(kube: MemoryKube, graph: FakeGraph) -> Runtime:
    """An operator's runtime on `kube` that asks `graph` (no Secret watch runs)."""
    keyring = await keystore.ensure(kube, NS, channels_namespace=NS)
    return Runtime(
        kube=kube,
        namespace=NS,
        webhook_base_url="https://hooks.example.test",
        keys=keystore.Keys(kube=kube, namespace=NS, keyring=keyring, reload_interval=0),
        secrets=ChannelSecrets(kube, NS),
        meta=meta_for(graph),
    )


def channel(index: int) -> tuple[ChannelRef, ChannelSpec, Credentials]:
    """Channel `index` of the one app and account: its own number and token."""
    name = str(uuid.uuid4())
    spec = ChannelSpec(instance_id=name, phone_number_id=f"1065{index:011d}", waba_id=WABA)
    credentials = Credentials(f"EAAG-token-{index}-{name}", APP_SECRET, f"verify-{index}")
    return ChannelRef(NS, name, f"uid-{name}", 1), spec, credentials


def ignore(reason: str, message: str) -> None:
    return None


def asking(
    meta: Meta, channels: list[tuple[ChannelRef, ChannelSpec, Credentials]]
) -> list[asyncio.Task[Asked]]:
    return [
        asyncio.create_task(ask(meta, ref, spec, credentials, {}, URL, ignore))
        for ref, spec, credentials in channels
    ]


def webhook_of(asked: Asked) -> tuple[bool | None, str]:
    assert asked.report.webhook is not None
    state, reason, _ = asked.report.webhook
    return state, reason


async def all_answers(tasks: list[asyncio.Task[Asked]]) -> list[Asked]:
    return list(await asyncio.wait_for(asyncio.gather(*tasks), 60))


KEY = subscription(APP_ID, WABA)
N = 12

# --- one subscribe call per account ------------------------------------------------------------


async def test_channels_of_one_account_registered_at_once_make_one_subscribe_call() -> None:
    graph = FakeGraph(expect_checks=N)
    graph.subscribe_gate.clear()
    meta = meta_for(graph)
    tasks = asking(meta, [channel(i) for i in range(N)])
    # Each channel goes from its check to the subscribe without pausing: once all are
    # checked and the call is in flight, all of them are waiting for it.
    await asyncio.wait_for(graph.all_checked.wait(), 60)
    await asyncio.wait_for(graph.subscribe_entered.wait(), 60)
    assert len(graph.made("subscribe")) == 1
    assert graph.made("override") == []  # nobody overrides before the account is subscribed
    graph.subscribe_gate.set()

    answers = await all_answers(tasks)
    assert [webhook_of(a) for a in answers] == [(True, reasons.OVERRIDE_REGISTERED)] * N
    assert all(a.retry is None for a in answers)
    assert len(graph.made("subscribe")) == 1
    assert len(graph.made("override")) == N
    assert KEY in meta.accounts.subscribed
    assert meta.accounts.subscribing == {}

    # Channels of that account registered later make no subscribe call at all.
    later = await all_answers(asking(meta, [channel(N + i) for i in range(3)]))
    assert [webhook_of(a) for a in later] == [(True, reasons.OVERRIDE_REGISTERED)] * 3
    assert len(graph.made("subscribe")) == 1
    assert len(graph.made("override")) == N + 3


@pytest.mark.parametrize(
    ("kind", "code", "reason"),
    [
        (GraphErrorKind.UNAVAILABLE, 2, reasons.META_UNAVAILABLE),
        (GraphErrorKind.RATE_LIMITED, 80007, reasons.RATE_LIMITED),
    ],
)
async def test_a_transient_failure_of_the_shared_call_reaches_every_channel(
    kind: GraphErrorKind, code: int, reason: str
) -> None:
    graph = FakeGraph(expect_checks=N)
    graph.subscribe_gate.clear()
    graph.subscribe_errors.append(graph_error(kind, code))
    meta = meta_for(graph)
    tasks = asking(meta, [channel(i) for i in range(N)])
    await asyncio.wait_for(graph.all_checked.wait(), 60)
    await asyncio.wait_for(graph.subscribe_entered.wait(), 60)
    graph.subscribe_gate.set()

    answers = await all_answers(tasks)
    # Unknown for each, to be tried again; nobody asked Meta again meanwhile.
    assert [webhook_of(a) for a in answers] == [(None, reason)] * N
    assert all(isinstance(a.retry, MetaRetry) for a in answers)
    assert len(graph.made("subscribe")) == 1
    assert graph.made("override") == []
    assert KEY not in meta.accounts.subscribed
    assert meta.accounts.subscribing == {}

    # The retries: one call again for them all, and then each channel is registered.
    graph.expect_checks, graph.all_checked = 2 * N, asyncio.Event()
    graph.subscribe_entered.clear()
    graph.subscribe_gate.clear()
    tasks = asking(meta, [channel(i) for i in range(N)])
    await asyncio.wait_for(graph.all_checked.wait(), 60)
    await asyncio.wait_for(graph.subscribe_entered.wait(), 60)
    graph.subscribe_gate.set()
    answers = await all_answers(tasks)
    assert [webhook_of(a) for a in answers] == [(True, reasons.OVERRIDE_REGISTERED)] * N
    assert len(graph.made("subscribe")) == 2
    assert KEY in meta.accounts.subscribed


async def test_a_refusal_of_the_shared_call_makes_each_other_channel_ask_with_its_own_token() -> (
    None
):
    graph = FakeGraph(expect_checks=N)
    graph.subscribe_gate.clear()
    graph.subscribe_errors.append(graph_error(GraphErrorKind.PERMISSION_DENIED, 200))
    meta = meta_for(graph)
    channels = [channel(i) for i in range(N)]
    tasks = asking(meta, channels)
    await asyncio.wait_for(graph.all_checked.wait(), 60)
    await asyncio.wait_for(graph.subscribe_entered.wait(), 60)
    graph.subscribe_gate.set()

    answers = await all_answers(tasks)
    subscribes = graph.made("subscribe")
    refused_token = subscribes[0][2]  # the refusal was about this channel's token only
    by_token = {
        c.access_token: webhook_of(a) for (_, _, c), a in zip(channels, answers, strict=True)
    }
    assert by_token.pop(refused_token) == (False, reasons.APP_NOT_SUBSCRIBED)
    assert set(by_token.values()) == {(True, reasons.OVERRIDE_REGISTERED)}
    # Each other channel asked once more, with its own token; nobody asked twice.
    assert sorted(token for _, _, token in subscribes[1:]) == sorted(by_token)
    assert len(subscribes) == N
    assert len(graph.made("override")) == N - 1
    assert KEY in meta.accounts.subscribed


@pytest.mark.parametrize("cancelled", [0, N - 1], ids=["the-caller", "a-waiter"])
async def test_a_cancelled_channel_does_not_cancel_the_shared_call(cancelled: int) -> None:
    graph = FakeGraph(expect_checks=N)
    graph.subscribe_gate.clear()
    meta = meta_for(graph)
    channels = [channel(i) for i in range(N)]
    tasks = asking(meta, channels)
    await asyncio.wait_for(graph.all_checked.wait(), 60)
    await asyncio.wait_for(graph.subscribe_entered.wait(), 60)
    # Task 0 ran first, so it is the one that made the call.
    assert graph.made("subscribe")[0][2] == channels[0][2].access_token
    tasks[cancelled].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[cancelled]
    graph.subscribe_gate.set()

    answers = await all_answers([t for i, t in enumerate(tasks) if i != cancelled])
    assert [webhook_of(a) for a in answers] == [(True, reasons.OVERRIDE_REGISTERED)] * (N - 1)
    assert len(graph.made("subscribe")) == 1
    assert len(graph.made("override")) == N - 1
    assert KEY in meta.accounts.subscribed
    assert meta.accounts.subscribing == {}


# --- the override waits for the Secret watch ---------------------------------------------------


async def watched_secrets(kube: MemoryKube) -> ChannelSecrets:
    """Secrets whose watch events the test hands over itself, as `reflect` would."""
    secrets = ChannelSecrets(kube, NS)
    secrets._on_event("SYNC", await kube.get(core_path("secrets", NS)))
    secrets.synced.set()
    return secrets


async def write(
    kube: MemoryKube,
    secrets: ChannelSecrets,
    channel_: tuple[ChannelRef, ChannelSpec, Credentials],
) -> JSON:
    """The channel's Secret written by the operator; the watch event it causes."""
    ref, spec, credentials = channel_
    assert await secrets.ensure(ref, build_secret(ref, spec, credentials)) == "created"
    _, _, kind, obj = kube.events[-1]
    assert (kind, obj["metadata"]["name"]) == ("ADDED", ref.secret_name)
    return obj


async def test_the_override_waits_until_the_watch_delivered_the_secret_written() -> None:
    kube = MemoryKube()
    secrets = await watched_secrets(kube)
    other = await write(kube, secrets, channel(1))  # another channel's Secret, written before
    ours = channel(2)
    event = await write(kube, secrets, ours)
    ref, spec, credentials = ours
    assert not secrets.is_delivered(ref.secret_name)

    graph = FakeGraph()
    graph.secrets, graph.secret_name = secrets, ref.secret_name
    meta = meta_for(graph)
    waiting = asyncio.Event()
    answered: list[bool] = []

    async def before_override() -> None:
        waiting.set()
        answered.append(await secrets.delivered(ref.secret_name, 60))

    task = asyncio.create_task(
        ask(meta, ref, spec, credentials, {}, URL, ignore, before_override=before_override)
    )
    await asyncio.wait_for(waiting.wait(), 60)
    # The task went on into `delivered` without a pause: had it not waited there, the
    # override would be recorded by now.
    assert [c[0] for c in graph.calls] == [
        "check",
        "phone_numbers",
        "debug_token",
        "subscriptions",
        "subscribe",
    ]
    assert not task.done()

    # An older event (another Secret's) does not count; our own does.
    secrets._on_event("ADDED", other)
    assert not secrets.is_delivered(ref.secret_name)
    secrets._on_event("ADDED", event)
    assert secrets.is_delivered(ref.secret_name)

    asked = await asyncio.wait_for(task, 60)
    assert answered == [True]
    assert webhook_of(asked) == (True, reasons.OVERRIDE_REGISTERED)
    assert [c[0] for c in graph.calls] == [
        "check",
        "phone_numbers",
        "debug_token",
        "subscriptions",
        "subscribe",
        "override",
    ]
    assert graph.delivered_at_override == [True]


async def test_a_relist_after_a_gap_delivers_it_too() -> None:
    kube = MemoryKube()
    secrets = await watched_secrets(kube)
    ours = channel(1)
    await write(kube, secrets, ours)
    waiter = asyncio.create_task(secrets.delivered(ours[0].secret_name, 60))
    secrets._on_event("SYNC", await kube.get(core_path("secrets", NS)))  # as after a 410
    assert await asyncio.wait_for(waiter, 60) is True


async def test_without_delivery_the_override_is_asked_anyway_after_the_timeout() -> None:
    kube = MemoryKube()
    secrets = await watched_secrets(kube)
    ours = channel(1)
    await write(kube, secrets, ours)  # and its event never arrives
    ref, spec, credentials = ours
    graph = FakeGraph()
    answered: list[bool] = []

    async def before_override() -> None:
        answered.append(await secrets.delivered(ref.secret_name, 0.05))

    asked = await asyncio.wait_for(
        ask(meta_for(graph), ref, spec, credentials, {}, URL, ignore, before_override), 60
    )
    assert answered == [False]
    assert webhook_of(asked) == (True, reasons.OVERRIDE_REGISTERED)
    assert len(graph.made("override")) == 1


async def test_no_wait_once_delivered_or_for_a_secret_not_written_since_the_start() -> None:
    kube = MemoryKube()
    secrets = await watched_secrets(kube)
    ours = channel(1)
    event = await write(kube, secrets, ours)
    secrets._on_event("ADDED", event)
    name = ours[0].secret_name
    # A zero timeout: any pause at all would time out and answer False.
    assert await secrets.delivered(name, 0) is True
    # Unchanged since: the next reconcile writes nothing and does not wait either.
    assert await secrets.ensure(ours[0], build_secret(*ours)) is None
    assert await secrets.delivered(name, 0) is True
    # A restarted operator wrote nothing yet: nothing to wait for.
    restarted = await watched_secrets(kube)
    assert await restarted.delivered(name, 0) is True
    assert await restarted.delivered("whatsapp-never-written", 0) is True


async def test_a_reconcile_overrides_only_after_its_watch_delivered_the_new_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The wiring: the reconcile writes the Secret, the real watch (`reflect` on the
    in-memory apiserver) delivers it, and only then is the override asked."""
    monkeypatch.setattr(reconcile, "SECRET_DELIVERY_TIMEOUT", 60.0)  # never the fallback here
    kube = MemoryKube()
    keyring = await keystore.ensure(kube, NS, channels_namespace=NS)
    secrets = ChannelSecrets(kube, NS)

    async def on_drift(name: str) -> None:
        return None

    watcher = asyncio.create_task(secrets.run(on_drift))
    try:
        await asyncio.wait_for(secrets.synced.wait(), 60)
        graph = FakeGraph()
        meta = meta_for(graph)
        rt = Runtime(
            kube=kube,
            namespace=NS,
            webhook_base_url="https://hooks.example.test",
            keys=keystore.Keys(kube=kube, namespace=NS, keyring=keyring, reload_interval=0),
            secrets=secrets,
            meta=meta,
        )
        name = str(uuid.uuid4())
        values = {"access_token": "EAAG-token-1", "app_secret": APP_SECRET, "verify_token": "v"}
        spec = sealed_spec(public_key(kube), name, values, wabaId=WABA)
        graph.secrets, graph.secret_name = secrets, f"whatsapp-{name}"
        # The account is subscribed already: nothing pauses between the write and the
        # override but the wait itself.
        meta.accounts.subscribed.add(KEY)
        patch: dict[str, Any] = {}
        assert (
            await asyncio.wait_for(reconcile.reconcile(rt, channel_body(name, spec), patch), 60)
            is None
        )
        assert [c[0] for c in graph.calls] == ["check", "phone_numbers", "debug_token", "override"]
        assert graph.delivered_at_override == [True]
        ready = find_condition(patch["conditions"], READY)
        assert ready is not None
        assert ready["status"] == "True"
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await secrets.close()


class ReadBackGraph(FakeGraph):
    """Meta's read-back of where it delivers the number's events (the app's callback)."""

    def __init__(self, application: str) -> None:
        super().__init__()
        self.application = application

    async def check_phone_number(
        self,
        phone_number_id: str,
        credentials: GraphCredentials,
        *,
        fields: Iterable[str] = CHECK_FIELDS,
        account: str | None = None,
    ) -> PhoneNumberCheck:
        check = await super().check_phone_number(
            phone_number_id, credentials, fields=fields, account=account
        )
        configuration = WebhookConfiguration(application=self.application)
        return check.model_copy(update={"webhook_configuration": configuration})


async def test_a_manual_webhook_is_confirmed_by_meta_not_by_the_receivers_note_alone() -> None:
    """Issue 21 item 7; fails on the code before it, where lastChallengeAt (which the
    internet-facing receiver writes) alone made WebhookRegistered True."""
    ref, spec, credentials = channel(7)
    spec = spec.model_copy(update={"webhook": WebhookSpec(mode="manual")})
    shared = URL.rsplit("/", 1)[0]
    noted = {"lastChallengeAt": "2026-01-01T00:00:00Z"}
    cases: list[tuple[str, dict[str, Any], tuple[bool | None, str]]] = [
        # The receiver noted a challenge, but Meta delivers elsewhere (or nowhere of ours).
        ("https://elsewhere.example/hook", noted, (None, reasons.AWAITING_CHALLENGE)),
        (URL + "-other", noted, (None, reasons.AWAITING_CHALLENGE)),
        # Meta delivers to us, but no challenge was answered, or the note is no time at all.
        (URL, {}, (None, reasons.AWAITING_CHALLENGE)),
        (URL, {"lastChallengeAt": "x" * 40}, (None, reasons.AWAITING_CHALLENGE)),
        # Both: the channel's own URL or the shared one.
        (URL, noted, (True, reasons.CHALLENGE_ANSWERED)),
        (shared, noted, (True, reasons.CHALLENGE_ANSWERED)),
    ]
    for application, status, expected in cases:
        graph = ReadBackGraph(application)
        asked = await ask(meta_for(graph), ref, spec, credentials, status, URL, ignore)
        assert webhook_of(asked) == expected, (application, status)
        assert graph.made("override") == []  # manual: the operator registers nothing


async def test_a_noted_challenge_asks_meta_once_not_on_every_event() -> None:
    """The receiver's note only brings the next check forward (Meta's read-back decides),
    once per challenge newer than Meta's last answer, and never more than once a minute."""
    kube = MemoryKube()
    rt = await runtime_asking(kube, FakeGraph())

    async def never(name: str) -> float | None:
        raise AssertionError("not run here")

    now = [1000.0]
    rt.health = HealthSchedule(3600, never, clock=lambda: now[0])
    name = str(uuid.uuid4())
    spec = sealed_spec(public_key(kube), name, VALUES, webhook={"mode": "manual"})
    status = {"observedGeneration": 1, "checkedAt": "2026-01-01T00:00:00Z"}
    body = channel_body(name, spec, status=status)

    await reconcile.challenge_seen(rt, body)  # no challenge noted yet
    assert rt.health.due_in(name) is None
    body["status"]["lastChallengeAt"] = "2025-12-31T23:59:59Z"  # older than Meta's answer
    await reconcile.challenge_seen(rt, body)
    assert rt.health.due_in(name) is None
    body["status"]["lastChallengeAt"] = "2026-01-01T00:00:05Z"
    rt.health.after(name, 3600)  # the regular check, an hour away
    await reconcile.challenge_seen(rt, body)
    assert rt.health.due_in(name) == 0
    rt.health.after(name, 60)  # Meta failed: the check is retried within the minute
    retry = rt.health.due_in(name)
    await reconcile.challenge_seen(rt, body)  # another event of the same channel
    assert rt.health.due_in(name) == retry

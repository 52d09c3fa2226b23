"""Issue 11 on the real control plane: the operator (its console script, at DEBUG) asks the
Graph stand-in about each channel, registers its webhook (the stand-in calls the real
receiver's challenge), watches its health, and releases it on delete.

Every reason of CredentialsValid, WebhookRegistered and CanSendMessage is reached here; a
flapping Graph API never turns a Ready channel into an error; no credential is in any log.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from graph_standin import Fault, FaultKind
from graph_standin.state import NumberPatch
from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import Service
from whatsapp_channel import reasons
from whatsapp_channel.channel_secret import WABA_ID_LABEL, WEBHOOK_MODE_ANNOTATION
from whatsapp_channel.kube import JSON, Kube, NotFound, channels_path, core_path
from whatsapp_channel.model import (
    CAN_SEND_MESSAGE,
    CREDENTIALS_VALID,
    PUBLIC_KEYS_FIELD,
    READY,
    REGISTRATION_PIN_FIELD,
    SEALING_PUBLIC_CONFIGMAP,
    WEBHOOK_REGISTERED,
    ChannelSpec,
    RegistrationSpec,
    SealedCredentials,
    WebhookSpec,
    channel_body,
    find_condition,
    rest_status,
)
from whatsapp_channel.sealing import PublicSealingKey, published_keys, seal

from tests.support.graph import StandinThread
from tests.support.processes import RunningReceiver, log_dir, run_operator, run_receiver
from tests.support.scrape import assert_no_label_holds, scrape
from tests.support.scrape import value as sample
from tests.support.waiting import eventually


def credentials() -> dict[str, str]:
    return {
        "access_token": f"EAAG{uuid.uuid4().hex}{uuid.uuid4().hex}",
        "app_secret": f"appsecret{uuid.uuid4().hex}",
        "verify_token": f"verify{uuid.uuid4().hex}",
    }


def new_phone() -> str:
    return "1065" + str(secrets.randbelow(10**11)).zfill(11)


@pytest.fixture
def receiver(cluster: Cluster, namespace: str) -> Iterator[RunningReceiver]:
    with run_receiver(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        forward_url_template="http://127.0.0.1:9/{instance_id}",
    ) as running:
        yield running


class Operated:
    """One operator on the test's namespace, pointed at the stand-in and the receiver."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        standin: StandinThread,
        receiver: RunningReceiver,
        kube: Kube,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.standin = standin
        self.receiver = receiver
        self.kube = kube
        self.services: list[Service] = []
        self.values: list[dict[str, str]] = []
        # The test's own business account: the stand-in is the session's, and an account's
        # calls see the faults of every number in it.
        self.waba = new_phone()

    def seed(self, phone: str, values: dict[str, str], waba_id: str | None = None) -> None:
        self.standin.seed(phone, values, waba_id=waba_id or self.waba)

    @contextlib.contextmanager
    def operator(self, **settings: Any) -> Iterator[Service]:
        env: dict[str, Any] = {
            **self.standin.operator_env(self.receiver.url),
            "log_level": "DEBUG",
            "graph_timeout_seconds": 1,
            **settings,
        }
        with run_operator(
            self.cluster.kubeconfig, log_dir(self.cluster), namespace=self.namespace, **env
        ) as service:
            self.services.append(service)
            yield service

    async def key(self) -> PublicSealingKey:
        path = core_path("configmaps", self.namespace, SEALING_PUBLIC_CONFIGMAP)
        data = (await self.kube.get(path))["data"]
        assert PUBLIC_KEYS_FIELD in data
        return published_keys(data).active

    async def create(
        self,
        phone: str,
        values: dict[str, str],
        *,
        name: str | None = None,
        waba_id: str | None = "",
        mode: Literal["managed", "manual"] | None = None,
        registration: bool = False,
    ) -> str:
        name = name or str(uuid.uuid4())
        waba_id = self.waba if waba_id == "" else waba_id
        self.values.append(values)
        key = await self.key()

        def one(field: str, secret_key: str) -> str:
            return seal(
                key, namespace=self.namespace, name=name, field=field, value=values[secret_key]
            )

        spec = ChannelSpec(
            instance_id=name,
            phone_number_id=phone,
            waba_id=waba_id,
            webhook=WebhookSpec(mode=mode) if mode else None,
            sealed=SealedCredentials(
                access_token=one("accessToken", "access_token"),
                app_secret=one("appSecret", "app_secret"),
                verify_token=one("verifyToken", "verify_token"),
            ),
            registration=(
                RegistrationSpec(
                    pin=one(REGISTRATION_PIN_FIELD, "pin") if "pin" in values else None
                )
                if registration
                else None
            ),
        )
        body = channel_body(namespace=self.namespace, name=name, spec=spec)
        try:
            await self.kube.create(channels_path(self.namespace), body)
        except Exception:
            existing = await self.kube.get(channels_path(self.namespace, name))
            body["metadata"] = existing["metadata"]
            await self.kube.replace(channels_path(self.namespace, name), body)
        return name

    async def channel(self, name: str) -> JSON:
        return await self.kube.get(channels_path(self.namespace, name))

    async def condition(
        self, name: str, type_: str, status: str, reason: str | None = None
    ) -> JSON:
        """The channel once condition `type_` of its current generation is `status`."""

        async def probe() -> JSON | None:
            channel = await self.channel(name)
            found = find_condition((channel.get("status") or {}).get("conditions") or [], type_)
            if (
                found is not None
                and found.get("observedGeneration") == channel["metadata"]["generation"]
                and found.get("status") == status
                and reason in (None, found.get("reason"))
            ):
                return channel
            return None

        return await eventually(probe, f"{type_}={status} ({reason}) on {name}")

    async def warnings(self, name: str) -> set[str]:
        listing = await self.kube.get(core_path("events", self.namespace))
        return {
            e.get("reason", "")
            for e in listing["items"]
            if e["involvedObject"].get("name") == name and e.get("type") == "Warning"
        }

    def assert_no_credential_logged(self) -> None:
        logs = [s.log_path for s in self.services] + [self.receiver.service.log_path]
        events = self.cluster.kubectl("get", "events", "-n", self.namespace, "-o", "json").stdout
        for path in logs:
            text = Path(path).read_text(errors="replace")
            for values in self.values:
                for value in values.values():
                    assert value not in text, f"a credential is in {Path(path).name}"
                    assert value not in events, "a credential is in an event"
        assert any("DEBUG" in Path(s.log_path).read_text() for s in self.services)


@pytest.fixture
def operated(
    cluster: Cluster,
    crd: Any,
    namespace: str,
    graph_standin: StandinThread,
    receiver: RunningReceiver,
    kube: Kube,
) -> Operated:
    return Operated(cluster, namespace, graph_standin, receiver, kube)


def condition_of(channel: JSON, type_: str) -> dict[str, Any]:
    return dict(find_condition((channel.get("status") or {}).get("conditions") or [], type_) or {})


# --- CredentialsValid -----------------------------------------------------------------------


async def test_refused_credentials_are_false_with_their_reason_and_an_error(
    operated: Operated,
) -> None:
    standin = operated.standin
    with operated.operator():
        # Meta knows the number, but not with this app secret.
        good, wrong_secret = credentials(), credentials()
        phone = new_phone()
        operated.seed(phone, good)
        mismatch = await operated.create(phone, {**good, "app_secret": wrong_secret["app_secret"]})
        # A number the token cannot see (another token's); a token Meta does not know at all.
        hidden, mine = new_phone(), credentials()
        operated.seed(hidden, credentials())
        operated.seed(new_phone(), mine)
        unseen = await operated.create(hidden, mine)
        other = new_phone()
        operated.seed(other, credentials())
        unknown_token = await operated.create(other, credentials())
        # Faults Meta answers for the number: permission missing.
        denied_phone = new_phone()
        denied_values = credentials()
        operated.seed(denied_phone, denied_values)
        standin.fault(denied_phone, Fault(kind=FaultKind.PERMISSION_DENIED, call="check"))
        denied = await operated.create(denied_phone, denied_values)

        for name, reason in (
            (mismatch, reasons.APP_SECRET_MISMATCH),
            (unseen, reasons.PHONE_NUMBER_NOT_FOUND),
            (unknown_token, reasons.TOKEN_INVALID),
            (denied, reasons.PERMISSION_DENIED),
        ):
            channel = await operated.condition(name, CREDENTIALS_VALID, "False", reason)
            ready = condition_of(channel, READY)
            assert (ready["status"], ready["reason"]) == ("False", reason)
            assert rest_status(channel) == "error"
            assert condition_of(channel, WEBHOOK_REGISTERED)["status"] == "Unknown"
            await eventually(partial(_warned, operated, name, reason), f"{reason} warned")
        # Refused is settled (no retry of 190, 10, 100 until the spec changes).
        channel = await operated.channel(denied)
        assert channel["status"]["observedGeneration"] == channel["metadata"]["generation"]
    operated.assert_no_credential_logged()


async def test_an_expired_token_is_false_within_a_period_and_a_new_token_heals_it(
    operated: Operated,
) -> None:
    standin = operated.standin
    phone, values = new_phone(), credentials()
    operated.seed(phone, values)
    with operated.operator(health_period_seconds=2):
        name = await operated.create(phone, values)
        await operated.condition(name, READY, "True", reasons.CHANNEL_READY)

        # Meta expires the token: the next health check says so.
        standin.patch(phone, NumberPatch(token_expired=True))
        channel = await operated.condition(name, CREDENTIALS_VALID, "False", reasons.TOKEN_EXPIRED)
        assert condition_of(channel, READY)["reason"] == reasons.TOKEN_EXPIRED
        assert rest_status(channel) == "error"
        await eventually(
            partial(_warned, operated, name, reasons.TOKEN_EXPIRED), "token expiry warned"
        )

        # Re-posting only a new access token heals it.
        fresh = {**values, "access_token": f"EAAG{uuid.uuid4().hex}"}
        standin.patch(phone, NumberPatch(access_token=fresh["access_token"]))
        await operated.create(phone, fresh, name=name)
        channel = await operated.condition(name, READY, "True", reasons.CHANNEL_READY)
        assert condition_of(channel, CREDENTIALS_VALID)["reason"] == reasons.CREDENTIALS_ACCEPTED
        assert rest_status(channel) == "active"
    operated.assert_no_credential_logged()


async def test_a_flapping_graph_api_never_turns_a_ready_channel_into_an_error(
    operated: Operated,
) -> None:
    """Timeouts, 5xx and 80007 on the health checks: Unknown at worst, never False."""
    standin = operated.standin
    phone, values = new_phone(), credentials()
    operated.seed(phone, values)
    # Meta's rate limits (4 without a stated window) throttle the client for a second only.
    with operated.operator(health_period_seconds=1, graph_throttle_seconds=1):
        name = await operated.create(phone, values)
        await operated.condition(name, READY, "True")
        seen: list[JSON] = []

        async def follow() -> None:
            version = (await operated.channel(name))["metadata"]["resourceVersion"]
            path = channels_path(operated.namespace)
            async for event in operated.kube.watch(path, resource_version=version):
                if event["object"]["metadata"]["name"] == name:
                    seen.append(event["object"])

        watcher = asyncio.create_task(follow())
        try:
            for kind in (
                FaultKind.TIMEOUT,
                FaultKind.SERVER_ERROR,
                FaultKind.SERVICE_UNAVAILABLE,
                FaultKind.ACCOUNT_RATE_LIMITED,
                FaultKind.APP_RATE_LIMITED,
            ):
                seconds = 2.0 if kind is FaultKind.TIMEOUT else None
                standin.fault(phone, Fault(kind=kind, call="check", seconds=seconds))
                before = standin.calls(phone, "check")
                # Several health checks answered with the fault, retries included.
                await eventually(
                    partial(_calls_beyond, standin, phone, before + 3),
                    f"health checks under {kind}",
                )
                channel = await operated.condition(name, CREDENTIALS_VALID, "Unknown")
                assert condition_of(channel, CREDENTIALS_VALID)["reason"] in (
                    reasons.META_UNAVAILABLE,
                    reasons.RATE_LIMITED,
                )
                standin.clear_faults(phone)
                await operated.condition(name, CREDENTIALS_VALID, "True")
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        assert seen
        for channel in seen:
            assert condition_of(channel, READY).get("status") == "True"
            assert rest_status(channel) == "active"
    operated.assert_no_credential_logged()


async def _async(value: bool) -> bool:
    return value


async def _calls_beyond(standin: StandinThread, phone: str, count: int) -> bool:
    return standin.calls(phone, "check") >= count


async def _warned(operated: Operated, name: str, reason: str) -> bool:
    return reason in await operated.warnings(name)


async def test_an_unavailable_meta_keeps_a_new_channel_pending_then_ready(
    operated: Operated,
) -> None:
    standin = operated.standin
    phone, values = new_phone(), credentials()
    operated.seed(phone, values)
    standin.fault(phone, Fault(kind=FaultKind.SERVICE_UNAVAILABLE, call="check"))
    with operated.operator():
        name = await operated.create(phone, values)
        channel = await operated.condition(name, READY, "Unknown", reasons.META_UNAVAILABLE)
        assert rest_status(channel) == "pending"
        assert condition_of(channel, CREDENTIALS_VALID)["status"] == "Unknown"
        standin.clear_faults(phone)
        standin.fault(phone, Fault(kind=FaultKind.ACCOUNT_RATE_LIMITED, call="check"))
        await operated.condition(name, CREDENTIALS_VALID, "Unknown", reasons.RATE_LIMITED)
        standin.clear_faults(phone)
        channel = await operated.condition(name, READY, "True", reasons.CHANNEL_READY)
        assert rest_status(channel) == "active"
    operated.assert_no_credential_logged()


# --- WebhookRegistered ----------------------------------------------------------------------


async def test_webhook_failures_name_their_reason(operated: Operated) -> None:
    standin = operated.standin
    # The app cannot be subscribed to the account (Meta refuses the subscribe call).
    phone, values = new_phone(), credentials()
    operated.seed(phone, values)
    standin.fault(phone, Fault(kind=FaultKind.PERMISSION_DENIED, call="subscribe"))
    with operated.operator():
        unsubscribed = await operated.create(phone, values)
        channel = await operated.condition(
            unsubscribed, WEBHOOK_REGISTERED, "False", reasons.APP_NOT_SUBSCRIBED
        )
        assert condition_of(channel, CREDENTIALS_VALID)["status"] == "True"
        assert rest_status(channel) == "error"
    # Meta's challenge cannot reach the webhook URL: nothing listens there.
    phone2, values2 = new_phone(), credentials()
    operated.waba = new_phone()  # an account of its own: the subscribe fault stays behind
    operated.seed(phone2, values2)
    with operated.operator(webhook_base_url="http://127.0.0.1:9"):
        unreachable = await operated.create(phone2, values2)
        channel = await operated.condition(
            unreachable, WEBHOOK_REGISTERED, "False", reasons.CALLBACK_VERIFICATION_FAILED
        )
        assert "2200" in condition_of(channel, WEBHOOK_REGISTERED)["message"]
        assert reasons.CALLBACK_VERIFICATION_FAILED in await operated.warnings(unreachable)
    # Meta refuses the override itself (a callback URL over Meta's 200 characters).
    phone3, values3 = new_phone(), credentials()
    operated.seed(phone3, values3)
    with operated.operator(webhook_base_url=operated.receiver.url + "/" + "x" * 180):
        refused = await operated.create(phone3, values3)
        await operated.condition(refused, WEBHOOK_REGISTERED, "False", reasons.OVERRIDE_REFUSED)
    operated.assert_no_credential_logged()


async def test_drift_is_warned_and_repaired_and_health_is_reported(operated: Operated) -> None:
    standin = operated.standin
    phone, values = new_phone(), credentials()
    operated.seed(phone, values)
    metrics_port = free_port()
    with operated.operator(health_period_seconds=2, metrics_port=metrics_port):
        # Without waba_id: the account is found from the token (debug_token).
        name = await operated.create(phone, values, waba_id=None)
        channel = await operated.condition(name, READY, "True")
        assert channel["status"]["wabaId"] == operated.waba
        url = channel["status"]["webhookUrl"]
        assert standin.override(phone) == url

        # Someone points the number elsewhere: the next check warns and re-applies ours.
        standin.set_override(phone, "http://127.0.0.1:9/elsewhere")
        await eventually(partial(_warned, operated, name, reasons.WEBHOOK_DRIFT), "drift warned")
        await eventually(lambda: _async(standin.override(phone) == url), "the override back")

        # Meta's health: LIMITED, then BLOCKED with its error code in the message.
        standin.patch(phone, NumberPatch(health="LIMITED"))
        await operated.condition(name, CAN_SEND_MESSAGE, "True", reasons.MESSAGING_LIMITED)
        standin.patch(phone, NumberPatch(health="BLOCKED"))
        channel = await operated.condition(
            name, CAN_SEND_MESSAGE, "False", reasons.MESSAGING_BLOCKED
        )
        assert "141006" in condition_of(channel, CAN_SEND_MESSAGE)["message"]
        # The Warning event is posted beside the status patch, not before it: wait for it.
        await eventually(
            partial(_warned, operated, name, reasons.MESSAGING_BLOCKED), "blocked warned"
        )
        # The metrics: Graph calls by call and outcome, channels by CanSendMessage; no
        # channel, number or credential in a label.
        samples = await scrape(metrics_port)
        calls = "whatsapp_operator_graph_calls_total"
        assert sample(samples, calls, call="check", outcome="ok") >= 3
        assert sample(samples, calls, call="debug_token", outcome="ok") == 1
        assert sample(samples, calls, call="override", outcome="ok") >= 2  # the drift too
        can_send = "whatsapp_operator_channels_can_send"
        assert sample(samples, can_send, value="BLOCKED") == 1
        assert sample(samples, can_send, value="AVAILABLE") == 0
        assert_no_label_holds(samples, name, phone, *values.values())
        standin.patch(phone, NumberPatch(health="AVAILABLE"))
        await operated.condition(name, CAN_SEND_MESSAGE, "True", reasons.MESSAGING_AVAILABLE)
    operated.assert_no_credential_logged()


async def test_every_channel_keeps_being_checked_after_others_are_dropped(
    operated: Operated,
) -> None:
    """A channel deleted, one disabled and one Meta refuses leave the health schedule; the
    others are still checked at Meta every period afterwards (issue 23: the scheduler's task
    must never end), and a healthy channel never gets a Warning (no drift on first sight)."""
    standin = operated.standin
    healthy_phone, healthy_values = new_phone(), credentials()
    operated.seed(healthy_phone, healthy_values)
    dropped: dict[str, tuple[str, dict[str, str]]] = {}
    for what in ("deleted", "disabled", "refused"):
        dropped[what] = new_phone(), credentials()
        operated.seed(*dropped[what])
    with operated.operator(health_period_seconds=1) as service:
        healthy = await operated.create(healthy_phone, healthy_values, waba_id=None)
        names = {what: await operated.create(*dropped[what]) for what in dropped}
        for name in (healthy, *names.values()):
            await operated.condition(name, READY, "True", reasons.CHANNEL_READY)
        # Drop one channel each way a channel leaves the schedule.
        await operated.kube.delete(channels_path(operated.namespace, names["deleted"]))
        await operated.kube.merge_patch(
            channels_path(operated.namespace, names["disabled"]), {"spec": {"enabled": False}}
        )
        standin.patch(dropped["refused"][0], NumberPatch(token_expired=True))
        await operated.condition(
            names["refused"], CREDENTIALS_VALID, "False", reasons.TOKEN_EXPIRED
        )
        await eventually(partial(_gone, operated, names["deleted"]), "the deleted channel is gone")
        await operated.condition(names["disabled"], READY, "True", reasons.CHANNEL_DISABLED)
        # From here on the healthy channel is still checked, period after period.
        for _ in range(3):
            before = standin.calls(healthy_phone, "check")
            await eventually(
                partial(_calls_beyond, standin, healthy_phone, before + 1),
                "the healthy channel checked again",
            )
        assert "Traceback" not in Path(service.log_path).read_text(errors="replace")  # noqa: ASYNC240
        assert await operated.warnings(healthy) == set()
        async with httpx.AsyncClient() as http:  # liveness names every background task alive
            live = await http.get(service.url + "/healthz")
        assert (live.status_code, live.json().get("backgroundTasks")) == (200, "running")
    operated.assert_no_credential_logged()


async def test_manual_webhooks_follow_the_receivers_challenge(operated: Operated) -> None:
    standin = operated.standin
    phone, values = new_phone(), credentials()
    operated.seed(phone, values)
    with operated.operator(webhook_mode="manual"):
        name = await operated.create(phone, values)
        channel = await operated.condition(
            name, WEBHOOK_REGISTERED, "Unknown", reasons.AWAITING_CHALLENGE
        )
        assert rest_status(channel) == "pending"
        assert condition_of(channel, CREDENTIALS_VALID)["status"] == "True"
        assert standin.override(phone) is None  # manual: the operator registers nothing
        # The person enters the webhook at Meta, which calls the challenge; the operator
        # then confirms it from Meta's read-back (issue 21 item 7).
        url = channel["status"]["webhookUrl"]
        standin.enter_app_webhook(phone, url)
        async with httpx.AsyncClient() as http:
            answer = await http.get(
                url,
                params={
                    "hub.mode": "subscribe",
                    "hub.challenge": "1158201444",
                    "hub.verify_token": values["verify_token"],
                },
            )
        assert answer.text == "1158201444"
        channel = await operated.condition(
            name, WEBHOOK_REGISTERED, "True", reasons.CHALLENGE_ANSWERED
        )
        assert rest_status(channel) == "active"
    operated.assert_no_credential_logged()


async def test_only_a_manual_webhooks_challenge_is_noted_in_status(operated: Operated) -> None:
    """The receiver notes Meta's challenge (lastChallengeAt) only for a manual webhook, whose
    WebhookRegistered follows it. A managed one's challenge comes during the operator's own
    override call, which the operator confirms by read-back: noting it would cost a status
    write (and a watch event) per channel, so the receiver answers it and notes nothing."""
    standin = operated.standin
    managed_phone, managed_values = new_phone(), credentials()
    manual_phone, manual_values = new_phone(), credentials()
    operated.seed(managed_phone, managed_values)
    operated.seed(manual_phone, manual_values)
    with operated.operator():  # managed by default; one channel asks for manual itself
        managed = await operated.create(managed_phone, managed_values)
        manual = await operated.create(manual_phone, manual_values, mode="manual")

        # Registered through the stand-in, which called the receiver's challenge.
        channel = await operated.condition(
            managed, WEBHOOK_REGISTERED, "True", reasons.OVERRIDE_REGISTERED
        )
        url = channel["status"]["webhookUrl"]
        assert standin.override(managed_phone) == url
        # A message through the override: the receiver notes lastEventAt in the same write
        # as, or a later one than, any note it still held of the earlier challenge.
        assert (await deliver_text(standin, managed_phone, "hello"))[1] == url
        channel = await eventually(
            partial(_status_with, operated, managed, "lastEventAt"), "lastEventAt noted"
        )
        assert "lastChallengeAt" not in channel["status"]

        # The manual webhook: nothing noted until the person's registration calls it.
        channel = await operated.condition(
            manual, WEBHOOK_REGISTERED, "Unknown", reasons.AWAITING_CHALLENGE
        )
        # Each channel's Secret (written before Meta was asked) told the receiver its mode.
        for name, mode in ((managed, "managed"), (manual, "manual")):
            secret = await operated.kube.get(
                core_path("secrets", operated.namespace, f"whatsapp-{name}")
            )
            assert secret["metadata"]["annotations"][WEBHOOK_MODE_ANNOTATION] == mode
        assert "lastChallengeAt" not in channel["status"]
        standin.enter_app_webhook(manual_phone, channel["status"]["webhookUrl"])
        async with httpx.AsyncClient() as http:
            answer = await http.get(
                channel["status"]["webhookUrl"],
                params={
                    "hub.mode": "subscribe",
                    "hub.challenge": "1158201444",
                    "hub.verify_token": manual_values["verify_token"],
                },
            )
        assert (answer.status_code, answer.text) == (200, "1158201444")
        channel = await operated.condition(
            manual, WEBHOOK_REGISTERED, "True", reasons.CHALLENGE_ANSWERED
        )
        assert channel["status"]["lastChallengeAt"].endswith("Z")
        assert "lastChallengeAt" not in (await operated.channel(managed))["status"]
    operated.assert_no_credential_logged()


async def deliver_text(standin: StandinThread, phone: str, text: str) -> tuple[int, str]:
    """The stand-in sends a signed inbound message to the number's callback, as Meta does."""

    async def deliver() -> tuple[int, str]:
        number = standin.standin.world.numbers[phone]
        return await standin.standin.deliver_text(number, text, sender="16315551181", name="Zoë")

    return await asyncio.to_thread(standin.call, deliver())


async def _status_with(operated: Operated, name: str, field: str) -> JSON | None:
    channel = await operated.channel(name)
    return channel if (channel.get("status") or {}).get(field) else None


# --- delete -----------------------------------------------------------------------------------


async def test_delete_clears_the_override_and_unsubscribes_only_with_the_last_channel(
    operated: Operated,
) -> None:
    standin = operated.standin
    waba = operated.waba
    values = credentials()  # one app, one token, two numbers of one account
    first, second = new_phone(), new_phone()
    operated.seed(first, values, waba_id=waba)
    operated.seed(second, values, waba_id=waba)
    with operated.operator():
        one = await operated.create(first, values, waba_id=waba)
        two = await operated.create(second, values, waba_id=waba)
        await operated.condition(one, READY, "True")
        await operated.condition(two, READY, "True")
        assert standin.override(first)
        assert standin.override(second)
        assert standin.subscribed(first)
        assert standin.calls(waba, "subscribe") == 1  # the second channel skipped it

        await operated.kube.delete(channels_path(operated.namespace, one))
        await eventually(lambda: _gone(operated, one), f"channel {one} gone")
        assert standin.override(first) is None
        assert standin.override(second)
        assert standin.subscribed(second)  # the account still has a channel

        await operated.kube.delete(channels_path(operated.namespace, two))
        await eventually(lambda: _gone(operated, two), f"channel {two} gone")
        assert standin.override(second) is None
        assert not standin.subscribed(second)
    operated.assert_no_credential_logged()


async def _gone(operated: Operated, name: str) -> bool:
    try:
        await operated.channel(name)
    except NotFound:
        return True
    return False


# --- restart ----------------------------------------------------------------------------------


async def test_a_restart_asks_meta_nothing_for_channels_checked_within_the_period(
    operated: Operated,
) -> None:
    standin = operated.standin
    names, phones = [], []
    with operated.operator():
        for _ in range(3):
            phone, values = new_phone(), credentials()
            operated.seed(phone, values)
            names.append(await operated.create(phone, values))
            phones.append(phone)
        for name in names:
            await operated.condition(name, READY, "True")
    before = sum(standin.calls(phone) for phone in phones)
    with operated.operator() as service:
        await eventually(
            lambda: _async(
                service.log_path.read_text().count("Handler 'reconcile' succeeded") >= 3
            ),
            "the restarted operator resumed every channel",
        )
        for name in names:
            await operated.condition(name, READY, "True")
    assert sum(standin.calls(phone) for phone in phones) == before


# --- account webhooks (issue 19 item 10) ------------------------------------------------------


@pytest.mark.parametrize("given", [True, False], ids=["waba-given", "waba-found"])
async def test_a_ban_shows_within_seconds_through_the_account_webhook(
    operated: Operated, given: bool
) -> None:
    """Meta bans the number and sends `account_update` to the app's own callback (the
    receiver's /hooks/whatsapp-app): the receiver verifies it with the account's channels'
    app secret (the Secret names the account, given in the spec or found at Meta) and notes
    lastAccountEventAt; the operator checks the number at once. With an hour's health
    period, nothing else would ask Meta during this test."""
    standin = operated.standin
    with operated.operator(health_period_seconds=3600):
        phone, values = new_phone(), credentials()
        operated.seed(phone, values)
        standin.enter_app_webhook(phone, f"{operated.receiver.url}/hooks/whatsapp-app")
        name = await operated.create(phone, values, waba_id="" if given else None)
        await operated.condition(name, READY, "True")
        secret = await operated.kube.get(
            core_path("secrets", operated.namespace, f"whatsapp-{name}")
        )
        assert secret["metadata"]["labels"][WABA_ID_LABEL] == operated.waba
        checks = standin.calls(phone, "check")

        assert standin.patch(phone, NumberPatch(status="BANNED")) == [200]
        channel = await operated.condition(name, READY, "False", reasons.NUMBER_BANNED)
        assert channel["status"]["lastAccountEventAt"]
        assert channel["status"]["phoneStatus"] == "BANNED"
        assert standin.calls(phone, "check") > checks
        # A forged one (another app's secret) is refused and asks Meta nothing.
        async with httpx.AsyncClient() as client:
            body = b'{"object":"whatsapp_business_account","entry":[{"id":"%s","changes":[]}]}'
            forged = await client.post(
                f"{operated.receiver.url}/hooks/whatsapp-app",
                content=body % operated.waba.encode(),
                headers={"X-Hub-Signature-256": "sha256=" + "0" * 64},
            )
        assert forged.status_code == 403


# --- registration (issue 19, item 5) ----------------------------------------------------------


async def test_a_pending_number_is_registered_when_asked_and_a_wrong_pin_is_an_error(
    operated: Operated,
) -> None:
    standin = operated.standin
    with operated.operator():
        # Asked, no PIN given: the operator generates one, registers, Meta says CONNECTED.
        asked_phone, asked_values = new_phone(), credentials()
        operated.seed(asked_phone, asked_values)
        standin.patch(asked_phone, NumberPatch(status="PENDING"))
        asked = await operated.create(asked_phone, asked_values, registration=True)
        # Not asked: stays PENDING, never registered.
        plain_phone, plain_values = new_phone(), credentials()
        operated.seed(plain_phone, plain_values)
        standin.patch(plain_phone, NumberPatch(status="PENDING"))
        plain = await operated.create(plain_phone, plain_values)
        # Asked with a sealed PIN that is not the number's two-step verification PIN.
        wrong_phone, wrong_values = new_phone(), {**credentials(), "pin": "135790"}
        operated.seed(wrong_phone, wrong_values)
        standin.patch(wrong_phone, NumberPatch(status="PENDING"))
        standin.set_pin(wrong_phone, "246801")
        operated.values.append({"number_pin": "246801"})
        wrong = await operated.create(wrong_phone, wrong_values, registration=True)

        channel = await operated.condition(asked, READY, "True")
        assert rest_status(channel) == "active"
        assert channel["status"]["phoneStatus"] == "CONNECTED"
        assert channel["status"]["registration"]["registered"] is True
        status, pin = standin.registration(asked_phone)
        assert status == "CONNECTED"
        assert pin is not None
        operated.values.append({"generated_pin": pin})

        channel = await operated.condition(plain, READY, "False", reasons.NUMBER_NOT_REGISTERED)
        assert rest_status(channel) == "error"
        assert "registration" not in channel["status"]
        assert standin.calls(plain_phone, "register") == 0

        channel = await operated.condition(wrong, READY, "False", reasons.REGISTRATION_PIN_MISMATCH)
        assert rest_status(channel) == "error"
        assert condition_of(channel, CAN_SEND_MESSAGE)["reason"] == (
            reasons.REGISTRATION_PIN_MISMATCH
        )
        assert condition_of(channel, CREDENTIALS_VALID)["status"] == "True"  # the token is fine
        assert "PIN Mismatch" in condition_of(channel, READY)["message"]  # Meta's words
        assert channel["status"]["observedGeneration"] == channel["metadata"]["generation"]
        assert standin.registration(wrong_phone)[0] == "PENDING"
        assert standin.calls(wrong_phone, "register") == 1  # a refusal: never looped
        for name in (asked, plain, wrong):  # no PIN in any status, sealed or generated
            shown = str(await operated.channel(name))
            for values in operated.values:
                assert all(value not in shown for value in values.values())
    operated.assert_no_credential_logged()

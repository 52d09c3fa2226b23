"""Issue 19, item 5: registering a number (`channel_operator.registration`) against the
stand-in, each of Meta's outcomes (WhatsApp's error codes page: 133005 "Two step
verification PIN Mismatch", 133016 "Account register deregister rate limit exceeded",
133004 "Server Temporarily Unavailable"), and what the check says of a PENDING number with
and without registration asked."""

from __future__ import annotations

import uuid

import pytest
from channel_operator.channel_at_meta import Meta, ask
from channel_operator.desired import ChannelFailure, ChannelRef, Credentials
from channel_operator.graph import GraphClient, GraphErrorKind, classify
from channel_operator.registration import RegistrationRefused, new_pin, register
from graph_standin import Fault, FaultKind, GraphStandin, NumberSeed
from graph_standin.state import PhoneNumber
from whatsapp_channel import reasons
from whatsapp_channel.model import ChannelSpec, RegistrationSpec

from tests.graph.conftest import APP_SECRET, CREDENTIALS, PHONE, TOKEN, VERIFY_TOKEN, WABA, Callback

PIN = "482916"


@pytest.fixture
def pending(standin: GraphStandin) -> PhoneNumber:
    """A number never registered (Meta's status PENDING)."""
    return standin.seed(
        NumberSeed(
            phone_number_id=PHONE,
            waba_id=WABA,
            access_token=TOKEN,
            app_secret=APP_SECRET,
            status="PENDING",
        )
    )


def channel(registration: bool) -> tuple[ChannelRef, ChannelSpec]:
    name = str(uuid.uuid4())
    spec = ChannelSpec(
        instance_id=name,
        phone_number_id=PHONE,
        waba_id=WABA,
        registration=RegistrationSpec() if registration else None,
    )
    return ChannelRef("ns", name, f"uid-{name}", 1), spec


def ignore(reason: str, message: str) -> None:
    return None


@pytest.mark.parametrize(
    ("code", "kind", "transient"),
    [
        (133005, GraphErrorKind.REGISTRATION_PIN_MISMATCH, False),
        (133016, GraphErrorKind.REGISTRATION_LIMITED, False),
        (133004, GraphErrorKind.UNAVAILABLE, True),
    ],
)
def test_registration_codes_are_classified_by_metas_meaning(
    code: int, kind: GraphErrorKind, transient: bool
) -> None:
    found = classify("register", 400, code, None, "")
    assert found is kind
    assert found.transient is transient
    assert not found.credentials_refused  # the credentials are fine; the registration is not


async def test_a_pending_number_is_not_ready_unless_registration_is_asked_then_connected(
    graph: GraphClient, standin: GraphStandin, callback: Callback, pending: PhoneNumber
) -> None:
    meta = Meta(graph=graph, callback_retries=())
    credentials = Credentials(TOKEN, APP_SECRET, VERIFY_TOKEN)
    ref, plain = channel(registration=False)
    answer = await ask(meta, ref, plain, credentials, {}, callback.url, ignore)
    assert answer.report.can_send is not None
    assert answer.report.can_send[:2] == (False, reasons.NUMBER_NOT_REGISTERED)
    assert standin.calls(call="register") == 0  # never registered unless asked

    ref, asked = channel(registration=True)
    answer = await ask(meta, ref, asked, credentials, {}, callback.url, ignore)
    assert answer.report.can_send is not None
    assert answer.report.can_send[:2] == (None, reasons.NUMBER_REGISTERING)

    await register(graph, ref, PHONE, CREDENTIALS, PIN)
    assert pending.status == "CONNECTED"
    answer = await ask(meta, ref, asked, credentials, {}, callback.url, ignore)
    assert answer.report.can_send is not None
    assert answer.report.can_send[:2] == (True, reasons.MESSAGING_AVAILABLE)


async def test_a_wrong_pin_is_a_refusal_with_its_own_reason_and_no_pin_in_it(
    graph: GraphClient, standin: GraphStandin, pending: PhoneNumber
) -> None:
    pending.pin = PIN  # two-step verification set elsewhere
    ref, _ = channel(registration=True)
    other = next(p for p in iter(new_pin, None) if p != PIN)
    with pytest.raises(RegistrationRefused) as refused:
        await register(graph, ref, PHONE, CREDENTIALS, other)
    assert refused.value.reason == reasons.REGISTRATION_PIN_MISMATCH
    assert "PIN Mismatch" in refused.value.message  # Meta's own words carried
    assert other not in refused.value.message
    assert PIN not in refused.value.message
    assert pending.status == "PENDING"
    assert standin.calls(call="register") == 1


async def test_ten_attempts_in_72_hours_is_a_refusal_never_retried(
    graph: GraphClient, standin: GraphStandin, pending: PhoneNumber
) -> None:
    pending.faults.append(Fault(kind=FaultKind.REGISTRATION_LIMITED, call="register"))
    ref, _ = channel(registration=True)
    with pytest.raises(RegistrationRefused) as refused:
        await register(graph, ref, PHONE, CREDENTIALS, PIN)
    assert refused.value.reason == reasons.REGISTRATION_LIMITED
    assert standin.calls(call="register") == 1  # asked once: a retry only spends the window


async def test_the_standin_refuses_the_eleventh_register_call(
    graph: GraphClient, standin: GraphStandin, pending: PhoneNumber
) -> None:
    ref, _ = channel(registration=True)
    for _ in range(10):
        await register(graph, ref, PHONE, CREDENTIALS, PIN)
    with pytest.raises(RegistrationRefused) as refused:
        await register(graph, ref, PHONE, CREDENTIALS, PIN)
    assert refused.value.reason == reasons.REGISTRATION_LIMITED


async def test_an_unavailable_registration_server_is_transient(
    graph: GraphClient, standin: GraphStandin, pending: PhoneNumber
) -> None:
    pending.faults.append(Fault(kind=FaultKind.REGISTRATION_UNAVAILABLE, call="register"))
    ref, _ = channel(registration=True)
    with pytest.raises(ChannelFailure) as failed:
        await register(graph, ref, PHONE, CREDENTIALS, PIN)
    assert not isinstance(failed.value, RegistrationRefused)
    assert failed.value.reason == reasons.META_UNAVAILABLE
    assert pending.status == "PENDING"
    pending.faults.clear()  # the server is back: the same PIN registers
    await register(graph, ref, PHONE, CREDENTIALS, PIN)
    assert pending.status == "CONNECTED"

"""`channel_operator.registration` without Meta (issue 23: the gate found these untested): the
PIN the operator generates, what it keeps in the channel's status and reads back, and what a
failure other than Meta's two refusals becomes."""

from __future__ import annotations

import re
import uuid
from typing import cast

import pytest
from channel_operator.channel_at_meta import MetaRetry
from channel_operator.desired import ChannelFailure, ChannelRef
from channel_operator.graph import GraphClient, GraphCredentials, GraphError, GraphErrorKind
from channel_operator.registration import keep, kept, new_pin, register
from whatsapp_channel import reasons
from whatsapp_channel.kube import JSON, Kube, channels_path
from whatsapp_channel.model import RegistrationStatus, SignupStatus

NS = "wa"


def test_a_generated_pin_is_any_six_digits() -> None:
    pins = [new_pin() for _ in range(3000)]
    assert all(re.fullmatch(r"[0-9]{6}", pin) for pin in pins)
    assert len(set(pins)) > 2900  # drawn from a million, not a handful
    assert any(pin.startswith("0") for pin in pins)  # leading zeros kept


def test_what_is_kept_is_read_back_and_anything_else_is_nothing() -> None:
    assert kept({}) == RegistrationStatus()
    assert kept({"registration": {"pin": "sealed", "registered": True}}) == RegistrationStatus(
        pin="sealed", registered=True
    )
    assert kept({"registration": "garbage"}) == RegistrationStatus()
    assert kept({"registration": {"registered": "maybe"}}) == RegistrationStatus()


class Patches:
    """The apiserver as `keep` uses it: the merge patches it was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, JSON]] = []

    async def merge_patch(self, path: str, body: JSON) -> JSON:
        self.sent.append((path, body))
        return body


async def test_what_the_operator_keeps_is_written_to_the_channels_status_at_once() -> None:
    kube = Patches()
    name = str(uuid.uuid4())
    ref = ChannelRef(NS, name, "uid", 1)
    status = channels_path(NS, name, "status")
    await keep(cast(Kube, kube), ref, "registration", RegistrationStatus(registered=False))
    signup = SignupStatus.model_validate(
        {"code": "c", "accessToken": "sealed-token", "pin": "sealed-pin"}
    )
    await keep(cast(Kube, kube), ref, "signup", signup)
    assert kube.sent == [
        (status, {"status": {"registration": {"registered": False}}}),  # no pin: none kept
        (
            status,
            {
                "status": {
                    "signup": {
                        "code": "c",
                        "accessToken": "sealed-token",
                        "pin": "sealed-pin",
                        "registered": False,
                    }
                }
            },
        ),
    ]


class Failing:
    """A Graph client whose register call fails as given."""

    def __init__(self, kind: GraphErrorKind) -> None:
        self.kind = kind

    async def register_number(self, phone: str, credentials: object, pin: str) -> None:
        raise GraphError(self.kind, "register", message="(#1) An unknown error")


@pytest.mark.parametrize(
    ("kind", "failure", "reason"),
    [
        (GraphErrorKind.UNAVAILABLE, MetaRetry, reasons.META_UNAVAILABLE),
        (GraphErrorKind.INVALID_REQUEST, ChannelFailure, reasons.INVALID_REQUEST),
    ],
)
async def test_a_failure_other_than_metas_refusals_says_so_and_is_retried(
    kind: GraphErrorKind, failure: type[ChannelFailure], reason: str
) -> None:
    graph = cast(GraphClient, Failing(kind))
    ref = ChannelRef(NS, str(uuid.uuid4()), "uid", 1)
    with pytest.raises(failure) as failed:
        await register(graph, ref, "106540352242922", GraphCredentials("t", "s"), "123456")
    assert type(failed.value) is failure
    assert failed.value.reason == reason
    assert (
        failed.value.message == "registering the number failed ((#1) An unknown error); will retry"
    )

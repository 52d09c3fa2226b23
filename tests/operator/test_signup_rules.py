"""`channel_operator.signup` without Meta or a cluster (issue 23: the module had no unit test,
only tests/operator/test_signup_cluster.py): which sealed code status.signup belongs to, what
the exchange keeps before it returns, what each of Meta's answers becomes, and that the number
is registered once."""

from __future__ import annotations

import re
import uuid
from typing import Any, cast

import pytest
from channel_operator.desired import ChannelFailure, ChannelRef
from channel_operator.graph import GraphClient, GraphCredentials, GraphError, GraphErrorKind
from channel_operator.platform_app import PlatformApp
from channel_operator.signup import SignupRefused, code_digest, exchange, kept, open_kept, register
from whatsapp_channel import reasons
from whatsapp_channel.kube import JSON, Kube, channels_path
from whatsapp_channel.model import SIGNUP_PIN_FIELD, SIGNUP_TOKEN_FIELD, SignupStatus
from whatsapp_channel.sealing import new_private_key, public_key_of, seal

NS = "wa"
APP = PlatformApp(app_id="1234567890", app_secret="platform-app-secret")
# sha256("abc"), FIPS 180-2's first example: computed outside the project.
ABC_DIGEST = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def a_ref() -> ChannelRef:
    return ChannelRef(NS, str(uuid.uuid4()), "uid-1", 1)


class Status:
    """The apiserver as `keep` uses it: the merge patches sent to a channel's status."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, JSON]] = []

    async def merge_patch(self, path: str, body: JSON) -> JSON:
        self.sent.append((path, body))
        return body


class Meta:
    """Graph as the signup uses it: one answer to the code exchange, and the registrations."""

    token = "EAAG-business-token"

    def __init__(self, fails: GraphErrorKind | None = None) -> None:
        self.fails = fails
        self.exchanged: list[tuple[str, str, str]] = []
        self.registered: list[tuple[str, GraphCredentials, str]] = []

    async def exchange_code(self, app_id: str, app_secret: str, code: str) -> str:
        self.exchanged.append((app_id, app_secret, code))
        if self.fails is not None:
            raise GraphError(self.fails, "exchange", message="(#100) refused")
        return self.token

    async def register_number(self, phone: str, credentials: GraphCredentials, pin: str) -> None:
        self.registered.append((phone, credentials, pin))


def test_status_signup_belongs_to_the_sealed_code_by_its_sha256() -> None:
    assert code_digest("abc") == ABC_DIGEST
    mine = {"code": code_digest("sealed-1"), "accessToken": "t", "pin": "p"}
    assert kept({"signup": mine}, "sealed-1") == SignupStatus.model_validate(mine)
    assert kept({"signup": mine}, "sealed-2") is None  # a new code: exchanged anew
    assert kept({}, "sealed-1") is None
    assert kept({"signup": "garbage"}, "sealed-1") is None
    assert kept({"signup": {"code": code_digest("sealed-1")}}, "sealed-1") is None


async def test_the_exchange_keeps_the_token_and_a_new_pin_sealed_before_returning() -> None:
    key_id, private = new_private_key()
    ref, meta, status = a_ref(), Meta(), Status()
    token, signup = await exchange(
        cast(GraphClient, meta), cast(Kube, status), {key_id: private}, key_id, ref, APP,
        "the-code", "sealed-code",
    )  # fmt: skip
    assert token == "EAAG-business-token"
    assert meta.exchanged == [(APP.app_id, APP.app_secret, "the-code")]
    assert signup.code == code_digest("sealed-code")
    assert not signup.registered
    # Kept in status.signup at once, as returned, and nothing of it in clear text.
    path = channels_path(NS, ref.name, "status")
    assert status.sent == [(path, {"status": {"signup": signup.model_dump(by_alias=True)}})]
    assert "EAAG-business-token" not in repr(status.sent)
    # What is kept opens for this channel only: the token, and a six-digit PIN.
    opened_token, pin = open_kept({key_id: private}, ref, signup)
    assert opened_token == token
    assert re.fullmatch(r"[0-9]{6}", pin)
    other = ChannelRef(NS, "another-channel", "uid-2", 1)
    with pytest.raises(ChannelFailure) as failed:
        open_kept({key_id: private}, other, signup)
    assert failed.value.reason == reasons.SEAL_SCOPE_MISMATCH
    assert failed.value.message.startswith(f"status.signup: {SIGNUP_TOKEN_FIELD} was sealed")


def test_a_kept_pin_sealed_as_another_field_does_not_open() -> None:
    key_id, private = new_private_key()
    ref, key = a_ref(), public_key_of(private)

    def sealed(field: str, value: str) -> str:
        return seal(key, namespace=NS, name=ref.name, field=field, value=value)

    good = sealed(SIGNUP_TOKEN_FIELD, "token")
    signup = SignupStatus(code="c", access_token=good, pin=sealed(SIGNUP_PIN_FIELD, "123456"))
    assert open_kept({key_id: private}, ref, signup) == ("token", "123456")
    swapped = SignupStatus(code="c", access_token=good, pin=sealed(SIGNUP_TOKEN_FIELD, "1"))
    with pytest.raises(ChannelFailure) as failed:
        open_kept({key_id: private}, ref, swapped)
    assert failed.value.reason == reasons.SEAL_SCOPE_MISMATCH
    assert failed.value.message.startswith(f"status.signup: {SIGNUP_PIN_FIELD} was sealed")


@pytest.mark.parametrize(
    ("kind", "failure", "reason", "message"),
    [
        (
            GraphErrorKind.SIGNUP_CODE_INVALID,
            SignupRefused,
            reasons.SIGNUP_CODE_INVALID,
            "Meta refused the signup code ((#100) refused); it lives 30 seconds and is "
            "exchanged once: POST the channel with a new code",
        ),
        (
            GraphErrorKind.RATE_LIMITED,
            ChannelFailure,
            reasons.RATE_LIMITED,
            "exchanging the signup code failed ((#100) refused); will retry",
        ),
        (
            GraphErrorKind.UNAVAILABLE,
            ChannelFailure,
            reasons.META_UNAVAILABLE,
            "exchanging the signup code failed ((#100) refused); will retry",
        ),
    ],
)
async def test_a_refused_code_is_settled_and_anything_else_is_retried(
    kind: GraphErrorKind, failure: type[ChannelFailure], reason: str, message: str
) -> None:
    key_id, private = new_private_key()
    status = Status()
    with pytest.raises(ChannelFailure) as failed:
        await exchange(
            cast(GraphClient, Meta(fails=kind)), cast(Kube, status), {key_id: private}, key_id,
            a_ref(), APP, "the-code", "sealed-code",
        )  # fmt: skip
    assert type(failed.value) is failure  # only a refusal is settled (SignupRefused)
    assert (failed.value.reason, failed.value.message) == (reason, message)
    assert status.sent == []  # nothing kept of a failed exchange


async def test_the_number_is_registered_once_with_the_pin_and_that_is_kept() -> None:
    ref, meta, status = a_ref(), Meta(), Status()
    credentials = GraphCredentials("token", "secret")
    signup = SignupStatus(code="c", access_token="sealed-token", pin="sealed-pin")
    await register(
        cast(GraphClient, meta), cast(Kube, status), ref, "106540352242922", credentials,
        "123456", signup,
    )  # fmt: skip
    assert meta.registered == [("106540352242922", credentials, "123456")]
    kept_now: Any = status.sent[-1][1]["status"]["signup"]
    assert kept_now == {**signup.model_dump(by_alias=True), "registered": True}
    assert len(status.sent) == 1

    registered = signup.model_copy(update={"registered": True})
    await register(
        cast(GraphClient, meta), cast(Kube, status), ref, "106540352242922", credentials,
        "123456", registered,
    )  # fmt: skip
    assert len(meta.registered) == 1  # registered already: not asked again
    assert len(status.sent) == 1

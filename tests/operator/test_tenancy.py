"""`channel_operator.tenancy`: a Secret's opt-in annotation names instances exactly (issue 23:
a break that matched instance ids loosely passed every test), and the module's other rules
(which Secret names are the operator's, which Secret holds a number, the claim index)."""

from __future__ import annotations

import pytest
from channel_operator.desired import ChannelFailure, ChannelRef
from channel_operator.tenancy import (
    PhoneClaimIndex,
    check_phone_claim,
    check_secret_ref,
    holds_number,
    is_generated_secret_name,
    refuse_generated_name,
)
from whatsapp_channel import channel_secret
from whatsapp_channel.channel_secret import MANAGED_BY_LABEL, ChannelSecret
from whatsapp_channel.kube import JSON
from whatsapp_channel.model import SEALING_KEYS_SECRET, SECRET_REF_CHANNELS_ANNOTATION
from whatsapp_channel.phone_claims import Claim
from whatsapp_channel.reasons import (
    PHONE_NUMBER_TAKEN,
    SECRET_REF_NOT_ALLOWED,
    SECRET_REF_NOT_OPTED_IN,
)

INSTANCE = "0b7e4f1c-5d0a-4c7e-9d3e-2f1a6b8c9d01"


def secret(opt_in: str | None) -> dict[str, object]:
    annotations = {} if opt_in is None else {SECRET_REF_CHANNELS_ANNOTATION: opt_in}
    return {"metadata": {"name": "theirs", "annotations": annotations}}


REF = ChannelRef(namespace="wa", name=INSTANCE, uid="u", generation=1)


@pytest.mark.parametrize(
    "opt_in",
    [INSTANCE, f"other-instance,{INSTANCE}", f" {INSTANCE} , other-instance", f"{INSTANCE},"],
)
def test_an_opt_in_naming_the_instance_among_others_allows_it(opt_in: str) -> None:
    check_secret_ref(secret(opt_in), REF)


@pytest.mark.parametrize(
    "opt_in",
    [
        None,
        "",
        "*",
        INSTANCE[:-1],  # a prefix of the id
        INSTANCE + "0",  # the id as a prefix of another
        f"x{INSTANCE}",
        INSTANCE.upper(),
        f"{INSTANCE[:8]},{INSTANCE[9:]}",  # its parts, not itself
        f"other-instance;{INSTANCE}",  # not the separator
    ],
)
def test_an_opt_in_that_does_not_name_the_instance_exactly_refuses_it(opt_in: str | None) -> None:
    with pytest.raises(ChannelFailure) as refused:
        check_secret_ref(secret(opt_in), REF)
    assert refused.value.reason == SECRET_REF_NOT_OPTED_IN


# --- issue 23: the rest of the module's promises, each against a break that passed ---------

PHONE = "106540352242922"
OTHER = "1f0e9d8c-7b6a-4c5d-8e4f-3a2b1c0d9e8f"


def test_a_refusal_names_the_secret_and_the_annotation_that_would_allow_it() -> None:
    with pytest.raises(ChannelFailure) as refused:
        check_secret_ref(secret(OTHER), REF)
    assert refused.value.message == (
        f"Secret theirs does not opt in to this channel: annotate it "
        f"{SECRET_REF_CHANNELS_ANNOTATION}={INSTANCE}"
    )


def managed(name: str, owner: str = INSTANCE, phone: str = PHONE, uid: str | None = "u") -> JSON:
    """The Secret the operator writes for channel `owner` (without an owner reference when
    `uid` is None), under `name`."""
    values = ChannelSecret("wa", owner, uid, owner, phone, True, "t", "s", "v")
    secret = channel_secret.build(values)
    secret["metadata"]["name"] = name
    return secret


GENERATED = "spec.secretRef names {}, a Secret the operator generates; name a Secret of your own"


def test_a_secret_ref_to_any_secret_the_operator_writes_is_refused_with_its_name() -> None:
    with pytest.raises(ChannelFailure) as refused:
        check_secret_ref(managed("looks-like-mine"), REF)
    assert refused.value.reason == SECRET_REF_NOT_ALLOWED
    assert refused.value.message == GENERATED.format("looks-like-mine")
    for name in (f"whatsapp-{OTHER}", SEALING_KEYS_SECRET):
        assert is_generated_secret_name(name)
        with pytest.raises(ChannelFailure) as refused:
            refuse_generated_name(name)
        assert refused.value.reason == SECRET_REF_NOT_ALLOWED
        assert refused.value.message == GENERATED.format(name)


@pytest.mark.parametrize(
    "name", ["whatsapp-mine", "whatsapp-", OTHER, f"whatsapp-{OTHER.upper()}", f"x-{OTHER}"]
)
def test_a_users_own_secret_is_not_taken_for_a_generated_one(name: str) -> None:
    """Only `whatsapp-<a channel name>` and the sealing keys are the operator's names: a
    user's Secret that merely starts like one may be named."""
    assert not is_generated_secret_name(name)
    refuse_generated_name(name)


def test_a_secret_holds_a_number_only_as_that_channels_managed_secret_for_that_number() -> None:
    assert holds_number(managed("s"), INSTANCE, PHONE)
    assert not holds_number(None, INSTANCE, PHONE)
    assert not holds_number(managed("s"), OTHER, PHONE)  # another channel's Secret
    assert not holds_number(managed("s", uid=None), INSTANCE, PHONE)  # a label names it only
    assert not holds_number(managed("s"), INSTANCE, "12345")  # this channel's, another number
    assert not holds_number(managed("s", owner=OTHER, phone="12345"), INSTANCE, "12345")
    unmanaged = managed("s")
    unmanaged["metadata"]["labels"].pop(MANAGED_BY_LABEL)
    assert not holds_number(unmanaged, INSTANCE, PHONE)


def channel(name: str, phone: str, created: str) -> JSON:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "spec": {"phoneNumberId": phone},
    }


def test_the_claim_index_takes_added_channels_and_is_unsynced_until_listed() -> None:
    index = PhoneClaimIndex()
    assert not index.synced.is_set()  # startup waits on it before any reconcile
    index.on_event("ADDED", channel(INSTANCE, PHONE, "t1"))
    assert index.get(PHONE) == {Claim(INSTANCE, "t1")}
    assert len(index) == 1


def test_a_number_no_one_else_claims_is_free_even_before_the_index_has_the_channel() -> None:
    check_phone_claim(channel(INSTANCE, PHONE, "t1"), PhoneClaimIndex())


def test_a_taken_number_is_refused_without_naming_its_holder() -> None:
    index = PhoneClaimIndex()
    index.on_event("SYNC", {"items": [channel(OTHER, PHONE, "t0")]})
    with pytest.raises(ChannelFailure) as refused:
        check_phone_claim(channel(INSTANCE, PHONE, "t1"), index)
    assert refused.value.reason == PHONE_NUMBER_TAKEN
    assert refused.value.message == (
        f"phone number id {PHONE} is held by another channel; this channel gets no Secret "
        "until that one lets the number go"
    )

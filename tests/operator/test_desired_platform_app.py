"""A channel's credentials when its spec does not seal them all, and what its Secret says of
the number's business account (no cluster): the platform app's secret stands in for an
unsealed app secret, a signup's business token for an unsealed access token; without them
the channel fails with a reason and a message that says what to do."""

from __future__ import annotations

import pytest
from channel_operator.desired import (
    ChannelFailure,
    ChannelRef,
    Credentials,
    build_secret,
    open_seals,
)
from whatsapp_channel.channel_secret import WABA_ID_LABEL, parse
from whatsapp_channel.model import SealedCredentials
from whatsapp_channel.reasons import INVALID_SPEC, PLATFORM_APP_MISSING
from whatsapp_channel.sealing import new_private_key, public_key_of, seal

from tests.operator.test_desired import CREDENTIALS, make_ref, make_spec

PLATFORM_SECRET = "platform-app-secret"
SIGNUP_TOKEN = "EAAG-signup-business-token"


def _keys_and_seal() -> tuple[dict[str, bytes], ChannelRef, dict[str, str]]:
    key_id, private = new_private_key()
    public = public_key_of(private)
    ref = make_ref()
    values = CREDENTIALS.as_data()
    seals = {
        field: seal(public, namespace=ref.namespace, name=ref.name, field=field, value=value)
        for field, value in (
            ("accessToken", values["access_token"]),
            ("verifyToken", values["verify_token"]),
        )
    }
    return {key_id: private}, ref, seals


def test_without_a_sealed_app_secret_the_platform_apps_is_the_channels() -> None:
    keys, ref, seals = _keys_and_seal()
    sealed = SealedCredentials(access_token=seals["accessToken"], verify_token=seals["verifyToken"])
    assert open_seals(keys, ref, sealed, platform_app_secret=PLATFORM_SECRET) == Credentials(
        access_token=CREDENTIALS.access_token,
        app_secret=PLATFORM_SECRET,
        verify_token=CREDENTIALS.verify_token,
    )


def test_without_either_app_secret_the_channel_says_to_seal_one() -> None:
    keys, ref, seals = _keys_and_seal()
    sealed = SealedCredentials(access_token=seals["accessToken"], verify_token=seals["verifyToken"])
    with pytest.raises(ChannelFailure) as caught:
        open_seals(keys, ref, sealed)
    assert caught.value.reason == PLATFORM_APP_MISSING
    assert caught.value.message == (
        "spec.sealed has no appSecret and the operator holds no platform app "
        "(operator.platformApp.existingSecret): seal the app secret"
    )


def test_a_signup_channels_token_is_the_exchanged_business_token() -> None:
    keys, ref, seals = _keys_and_seal()
    sealed = SealedCredentials(signup_code="sealed-code", verify_token=seals["verifyToken"])
    credentials = open_seals(
        keys, ref, sealed, platform_app_secret=PLATFORM_SECRET, access_token=SIGNUP_TOKEN
    )
    assert credentials.access_token == SIGNUP_TOKEN
    assert credentials.app_secret == PLATFORM_SECRET


def test_a_signup_channel_without_its_exchanged_token_is_an_invalid_spec() -> None:
    keys, ref, seals = _keys_and_seal()
    sealed = SealedCredentials(signup_code="sealed-code", verify_token=seals["verifyToken"])
    with pytest.raises(ChannelFailure) as caught:
        open_seals(keys, ref, sealed, platform_app_secret=PLATFORM_SECRET)
    assert caught.value.reason == INVALID_SPEC
    assert caught.value.message == "spec.sealed gives no access token"


def test_the_secret_names_the_numbers_business_account_when_known() -> None:
    ref = make_ref()
    secret = build_secret(ref, make_spec(ref), CREDENTIALS, waba_id="102290129340398")
    assert secret["metadata"]["labels"][WABA_ID_LABEL] == "102290129340398"
    parsed = parse(secret)
    assert parsed is not None
    assert parsed.waba_id == "102290129340398"
    unknown = build_secret(ref, make_spec(ref), CREDENTIALS)
    assert WABA_ID_LABEL not in unknown["metadata"]["labels"]

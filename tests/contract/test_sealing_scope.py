"""A seal opens only where it was made for: namespace, name, field and key, each on its own;
and every way a seal fails to open has its own stable reason (issue 14)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from nacl.public import PrivateKey, PublicKey, SealedBox
from whatsapp_channel.model import ACTIVE_KEY_ID_FIELD, PUBLIC_KEYS_FIELD
from whatsapp_channel.sealing import (
    PREFIX,
    PublicSealingKey,
    SealError,
    key_id_of,
    new_private_key,
    public_key_of,
    published_keys,
    seal,
    seal_key_id,
    unseal,
)

VALUE = "EAAG-the-clear-access-token"
WHERE = {"namespace": "tenants-a", "name": "7c9e6679-7425-40de-944b-e07fc1f90ae7"}


@pytest.fixture(scope="module")
def pair() -> tuple[dict[str, bytes], PublicSealingKey]:
    key_id, private = new_private_key()
    return {key_id: private}, public_key_of(private)


def _reason(keys: dict[str, bytes], sealed: str, **where: str) -> SealError:
    with pytest.raises(SealError) as caught:
        unseal(keys, sealed=sealed, **{**WHERE, "field": "accessToken", **where})
    assert VALUE not in str(caught.value)
    assert len(sealed) < 20 or sealed not in str(caught.value)
    return caught.value


def test_a_seal_opens_where_it_was_made_for(pair: tuple[dict[str, bytes], PublicSealingKey]):
    keys, public = pair
    sealed = seal(public, **WHERE, field="accessToken", value=VALUE)
    assert unseal(keys, **WHERE, field="accessToken", sealed=sealed) == VALUE


def test_a_seal_moved_to_another_namespace_does_not_open(
    pair: tuple[dict[str, bytes], PublicSealingKey],
):
    keys, public = pair
    sealed = seal(public, **WHERE, field="accessToken", value=VALUE)
    refused = _reason(keys, sealed, namespace="tenants-b")
    assert refused.reason == "SealScopeMismatch"
    assert refused.message == (
        "accessToken was sealed for another channel or field; "
        f"seal it for tenants-b/{WHERE['name']}"
    )


@pytest.mark.parametrize(
    "elsewhere",
    [
        {"name": "0b7e4f1c-5d0a-4c7e-9d3e-2f1a6b8c9d01"},
        {"field": "appSecret"},
        # The scope is a joined string: no re-split of its parts may match either.
        {"namespace": "tenants-a/7c9e6679", "name": "7425-40de-944b-e07fc1f90ae7"},
    ],
)
def test_a_seal_moved_to_another_name_or_field_does_not_open(
    pair: tuple[dict[str, bytes], PublicSealingKey], elsewhere: dict[str, str]
):
    keys, public = pair
    sealed = seal(public, **WHERE, field="accessToken", value=VALUE)
    assert _reason(keys, sealed, **elsewhere).reason == "SealScopeMismatch"


def test_the_seal_format_and_its_plaintext_are_the_documented_ones(
    pair: tuple[dict[str, bytes], PublicSealingKey],
):
    keys, public = pair
    sealed = seal(public, **WHERE, field="appSecret", value=VALUE)
    prefix, key_id, box = sealed.split(":")
    assert (prefix, key_id) == (PREFIX, public.key_id) == ("wa1", public.key_id)
    assert seal_key_id(sealed) == public.key_id
    opened = SealedBox(PrivateKey(keys[key_id])).decrypt(base64.b64decode(box, validate=True))
    scope = f"tenants-a/{WHERE['name']}/appSecret/{key_id}"
    assert opened == json.dumps({"scope": scope, "value": VALUE}, separators=(",", ":")).encode()


def test_the_scope_names_the_key_it_was_sealed_under(
    pair: tuple[dict[str, bytes], PublicSealingKey],
):
    """A box relabelled with another key id of the same operator does not open as that key."""
    keys, public = pair
    other_id, other_private = new_private_key()
    scope = f"{WHERE['namespace']}/{WHERE['name']}/accessToken/{public.key_id}"
    plaintext = json.dumps({"scope": scope, "value": VALUE}).encode()
    box = SealedBox(PrivateKey(other_private).public_key).encrypt(plaintext)
    relabelled = f"wa1:{other_id}:{base64.b64encode(box).decode()}"
    both = {**keys, other_id: other_private}
    assert _reason(both, relabelled).reason == "SealScopeMismatch"


def test_a_tampered_seal_does_not_open(pair: tuple[dict[str, bytes], PublicSealingKey]):
    keys, public = pair
    sealed = seal(public, **WHERE, field="accessToken", value=VALUE)
    prefix, key_id, box = sealed.split(":")
    raw = bytearray(base64.b64decode(box))
    raw[-1] ^= 0x01
    tampered = f"{prefix}:{key_id}:{base64.b64encode(bytes(raw)).decode()}"
    refused = _reason(keys, tampered)
    assert refused.reason == "SealDoesNotOpen"
    assert refused.message == f"accessToken does not open with key {key_id}"
    assert _reason(keys, f"{prefix}:{key_id}:not*base64").reason == "SealDoesNotOpen"
    assert _reason(keys, f"{prefix}:{key_id}:{box[:-8]}").reason == "SealDoesNotOpen"


@pytest.mark.parametrize(
    ("plaintext", "reason"),
    [
        (b"not json", "SealDoesNotOpen"),
        (b'["a list"]', "SealDoesNotOpen"),
        (b'{"scope": "x"}', "SealDoesNotOpen"),
        (b'{"scope": "x", "value": 42}', "SealDoesNotOpen"),
        (json.dumps({"value": VALUE}).encode(), "SealScopeMismatch"),  # no scope at all
    ],
)
def test_a_box_that_opens_to_something_else_is_refused(
    pair: tuple[dict[str, bytes], PublicSealingKey], plaintext: bytes, reason: str
):
    keys, public = pair
    box = SealedBox(PublicKey(public.public_key)).encrypt(plaintext)
    sealed = f"wa1:{public.key_id}:{base64.b64encode(box).decode()}"
    refused = _reason(keys, sealed)
    assert refused.reason == reason
    if reason == "SealDoesNotOpen":
        assert refused.message == f"accessToken does not open with key {public.key_id}"


def test_a_seal_is_strict_about_its_box(pair: tuple[dict[str, bytes], PublicSealingKey]):
    """Characters outside base64, or a fourth part, make a seal that does not open, even
    when dropping them would leave a box that does."""
    keys, public = pair
    sealed = seal(public, **WHERE, field="accessToken", value=VALUE)
    assert _reason(keys, sealed[:30] + "!" + sealed[30:]).reason == "SealDoesNotOpen"
    assert _reason(keys, sealed + "!").reason == "SealDoesNotOpen"
    assert _reason(keys, sealed + ":extra").reason == "SealDoesNotOpen"
    prefix, key_id, box = sealed.split(":")
    assert _reason(keys, f"{prefix}:{key_id}:junk:{box}").reason == "SealDoesNotOpen"


def test_a_seal_under_a_key_this_operator_lacks(pair: tuple[dict[str, bytes], PublicSealingKey]):
    keys, _ = pair
    other = public_key_of(new_private_key()[1])
    sealed = seal(other, **WHERE, field="accessToken", value=VALUE)
    refused = _reason(keys, sealed)
    assert refused.reason == "UnknownSealingKey"
    assert refused.message == (
        f"accessToken was sealed with key {other.key_id}, which this operator lacks"
    )


@pytest.mark.parametrize("value", ["", "EAAG", "wa2:abc:def", "wa1:abc", "WA1:abc:def"])
def test_what_is_not_a_seal_is_malformed(
    pair: tuple[dict[str, bytes], PublicSealingKey], value: str
):
    keys, _ = pair
    refused = _reason(keys, value)
    assert refused.reason == "MalformedSeal"
    assert refused.message == "the value is not a seal made by whatsapp-seal"
    with pytest.raises(SealError):
        seal_key_id(value)


def test_key_ids_are_fingerprints_of_the_public_key():
    key_id, private = new_private_key()
    public = bytes(PrivateKey(private).public_key)
    assert key_id == hashlib.sha256(public).hexdigest()[:16] == key_id_of(public)
    assert public_key_of(private) == PublicSealingKey(key_id=key_id, public_key=public)
    assert new_private_key()[0] != key_id


def test_a_public_key_must_match_its_id():
    key = public_key_of(new_private_key()[1])
    assert PublicSealingKey.from_b64(key.key_id, key.b64) == key
    assert base64.b64decode(key.b64) == key.public_key
    other = public_key_of(new_private_key()[1])
    with pytest.raises(ValueError, match=r"^public key does not match its key id$"):
        PublicSealingKey.from_b64(other.key_id, key.b64)
    with pytest.raises(ValueError, match=r"base64|padding"):
        PublicSealingKey.from_b64(key.key_id, key.b64[:-4] + "!!!!")


def test_published_keys_from_the_configmap():
    old = public_key_of(new_private_key()[1])
    new = public_key_of(new_private_key()[1])
    mapping = {old.key_id: old.b64, new.key_id: new.b64}
    for keys in (json.dumps(mapping), mapping):
        published = published_keys({ACTIVE_KEY_ID_FIELD: new.key_id, PUBLIC_KEYS_FIELD: keys})
        assert published.active == new
        assert published.key_ids == frozenset({old.key_id, new.key_id})


@pytest.mark.parametrize(
    "data",
    [
        {},
        {ACTIVE_KEY_ID_FIELD: "abc"},
        {PUBLIC_KEYS_FIELD: "{}"},
        {ACTIVE_KEY_ID_FIELD: "abc", PUBLIC_KEYS_FIELD: "{}"},
        {ACTIVE_KEY_ID_FIELD: "abc", PUBLIC_KEYS_FIELD: "not json"},
        {ACTIVE_KEY_ID_FIELD: "abc", PUBLIC_KEYS_FIELD: '{"abc": "!!"}'},
        {ACTIVE_KEY_ID_FIELD: "abc", PUBLIC_KEYS_FIELD: 42},
    ],
)
def test_a_broken_configmap_is_a_value_error(data: dict[str, object]):
    with pytest.raises(ValueError, match=r"^not a sealing public key ConfigMap: "):
        published_keys(data)


def test_a_seal_error_carries_its_reason_and_message():
    error = SealError("SealDoesNotOpen", "accessToken does not open")
    assert (error.reason, error.message, str(error)) == (
        "SealDoesNotOpen",
        "accessToken does not open",
        "accessToken does not open",
    )

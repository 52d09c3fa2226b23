"""The operator's desired state at its edges: the exact reports, the fingerprint, who owns a
Secret (issue 14: each found by a mutant that no other test noticed)."""

from __future__ import annotations

import base64

import pytest
from channel_operator.desired import (
    ChannelFailure,
    ChannelRef,
    Credentials,
    build_secret,
    build_status,
    credentials_from_secret,
    is_owned_by,
    may_write,
    merged_secret,
    retry_delay,
    seal_failure,
    secret_is_current,
)
from whatsapp_channel.channel_secret import (
    DATA_HASH_ANNOTATION,
    ENABLED_ANNOTATION,
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PHONE_NUMBER_ID_LABEL,
    WEBHOOK_MODE_ANNOTATION,
    data_hash,
)
from whatsapp_channel.model import API_VERSION, KIND, ChannelSpec, SecretRef, WebhookMode
from whatsapp_channel.reasons import SECRET_REF_INCOMPLETE
from whatsapp_channel.sealing import SealError

UID = "0f8fad5b-d9cb-469f-a165-70867728950e"
NAME = "7c9e6679-7425-40de-944b-e07fc1f90ae7"


def owner_reference(ref: ChannelRef) -> dict[str, object]:
    """The owner reference the operator's Secret gets (built by the contract's builder)."""
    spec = ChannelSpec(
        instance_id=ref.name, phone_number_id="106540352242922", secret_ref=SecretRef(name="x")
    )
    reference: dict[str, object] = build_secret(ref, spec, Credentials("a", "b", "c"))["metadata"][
        "ownerReferences"
    ][0]
    return reference


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def test_a_failure_is_its_reason_and_message():
    failure = ChannelFailure("SecretNameTaken", "a Secret named x exists")
    assert (failure.reason, failure.message, str(failure)) == (
        "SecretNameTaken",
        "a Secret named x exists",
        "a Secret named x exists",
    )
    sealed = seal_failure(SealError("SealDoesNotOpen", "accessToken does not open with key k"))
    assert (sealed.reason, sealed.message) == (
        "SealDoesNotOpen",
        "accessToken does not open with key k",
    )


def test_a_ref_from_the_apiserver_body() -> None:
    body: dict[str, dict[str, object]] = {"metadata": {"namespace": "ns", "name": NAME, "uid": UID}}
    assert ChannelRef.from_body(body) == ChannelRef("ns", NAME, UID, 1)
    body["metadata"]["generation"] = 7
    assert ChannelRef.from_body(body).generation == 7
    assert ChannelRef.from_body(body).secret_name == f"whatsapp-{NAME}"


def test_credentials_print_as_redacted_exactly():
    credentials = Credentials("EAAG-token", "app-secret", "verify")
    assert repr(credentials) == str(credentials) == "Credentials(<redacted>)"


def test_the_data_hash_is_sha256_of_compact_sorted_json():
    # printf '%s' '{"a":"1","b":"2"}' | sha256sum   (computed outside this project's code)
    expected = "sha256:21f76dfbfe6dfe21f762080ef484112cf2952974cef30741fd1931e1c6d92112"
    assert data_hash({"b": "2", "a": "1"}) == expected


def test_a_secret_ref_missing_keys_names_them_and_the_secret():
    secret = {"metadata": {"name": "their-secret"}, "data": {"verify_token": b64(b"v")}}
    with pytest.raises(ChannelFailure) as caught:
        credentials_from_secret(secret)
    assert caught.value.reason == SECRET_REF_INCOMPLETE
    assert caught.value.message == (
        "Secret their-secret named by spec.secretRef lacks the key(s) access_token, app_secret"
    )
    with pytest.raises(ChannelFailure) as caught:
        credentials_from_secret({"data": {}})
    assert caught.value.message == (
        "Secret  named by spec.secretRef lacks the key(s) access_token, app_secret, verify_token"
    )


@pytest.mark.parametrize("value", ["YWJj!", "YWJj\n", "not base64", b64(b"\xff\xfe")])
def test_a_secret_ref_value_must_be_strict_base64_of_utf8(value: str):
    data = {"access_token": b64(b"a"), "app_secret": b64(b"b"), "verify_token": value}
    with pytest.raises(ChannelFailure) as caught:
        credentials_from_secret({"metadata": {"name": "theirs"}, "data": data})
    assert caught.value.reason == SECRET_REF_INCOMPLETE
    assert caught.value.message == (
        "Secret theirs named by spec.secretRef holds a value that is not UTF-8 text"
    )


def test_only_a_controller_reference_makes_a_secret_ours():
    ref = ChannelRef("ns", NAME, UID, 1)
    owned = {"metadata": {"ownerReferences": [owner_reference(ref)]}}
    assert owner_reference(ref) == {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": NAME,
        "uid": UID,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert is_owned_by(owned, UID)
    assert may_write(owned, ref)
    not_controller = {
        "metadata": {"ownerReferences": [{**owner_reference(ref), "controller": False}]}
    }
    assert not is_owned_by(not_controller, UID)
    assert not may_write(not_controller, ref)
    assert not is_owned_by({"metadata": {"ownerReferences": None}}, UID)
    assert not may_write({}, ref)


def test_a_secret_without_a_type_is_opaque():
    ref = ChannelRef("ns", NAME, UID, 1)
    desired = {
        "type": "Opaque",
        "data": {},
        "metadata": {"labels": {}, "annotations": {}, "ownerReferences": [owner_reference(ref)]},
    }
    untyped = {k: v for k, v in desired.items() if k != "type"}
    assert secret_is_current(untyped, desired)
    assert not secret_is_current({**desired, "type": "kubernetes.io/tls"}, desired)


def test_the_status_reports_word_for_word():
    ref = ChannelRef("ns", NAME, UID, 3)
    base = "https://hooks.example.test"
    url = f"{base}/hooks/whatsapp/{NAME}"

    def messages(status: dict[str, object]) -> dict[str, tuple[str, str, str]]:
        return {
            c["type"]: (c["status"], c["reason"], c["message"])
            for c in status["conditions"]  # type: ignore[attr-defined]
        }

    # The Secret's and the webhook's own reports (Meta's conditions: test_channel_at_meta.py).
    ready = build_status(
        {}, ref, webhook_base_url=base, enabled=True, failure=None, now="t", ask_meta=False
    )
    assert ready["observedGeneration"] == 3
    assert ready["secretName"] == f"whatsapp-{NAME}"
    assert ready["webhookUrl"] == url
    assert messages(ready) == {
        "SecretSynced": (
            "True",
            "Synced",
            f"Secret whatsapp-{NAME} holds the channel's credentials",
        ),
        "WebhookConfigured": ("True", "WebhookEnabled", f"the receiver takes events at {url}"),
        "Ready": ("True", "ChannelReady", "the channel is ready"),
    }
    off = build_status(
        {}, ref, webhook_base_url=base, enabled=False, failure=None, now="t", ask_meta=False
    )
    assert messages(off)["WebhookConfigured"] == (
        "True",
        "WebhookDisabled",
        "the webhook refuses events",
    )
    assert messages(off)["Ready"] == (
        "True",
        "ChannelDisabled",
        "the channel is disabled; set spec.enabled to use it",
    )
    failed = build_status(
        {},
        ref,
        webhook_base_url=base,
        enabled=True,
        failure=ChannelFailure("SealDoesNotOpen", "accessToken does not open"),
        now="t",
        ask_meta=False,
    )
    assert "observedGeneration" not in failed
    assert "secretName" not in failed
    assert messages(failed) == {
        "SecretSynced": ("False", "SealDoesNotOpen", "accessToken does not open"),
        "WebhookConfigured": (
            "False",
            "SecretNotSynced",
            f"the webhook waits for Secret whatsapp-{NAME}",
        ),
        "CredentialsValid": (
            "Unknown",
            "NotChecked",
            f"not asked at Meta: Secret whatsapp-{NAME} waits",
        ),
        "WebhookRegistered": (
            "Unknown",
            "NotChecked",
            f"not asked at Meta: Secret whatsapp-{NAME} waits",
        ),
        "Ready": ("False", "SealDoesNotOpen", "accessToken does not open"),
    }


@pytest.mark.parametrize("mode", ["managed", "manual"])
def test_the_secret_is_exactly_this_object(mode: WebhookMode):
    ref = ChannelRef("ns", NAME, UID, 1)
    spec = ChannelSpec(
        instance_id=NAME,
        phone_number_id="106540352242922",
        enabled=True,
        secret_ref=SecretRef(name="theirs"),
    )
    secret = build_secret(ref, spec, Credentials("a", "b", "c"), webhook_mode=mode)
    data = {"access_token": "a", "app_secret": "b", "verify_token": "c"}
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": f"whatsapp-{NAME}",
            "namespace": "ns",
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                INSTANCE_LABEL: NAME,
                PHONE_NUMBER_ID_LABEL: "106540352242922",
            },
            "annotations": {
                ENABLED_ANNOTATION: "true",
                DATA_HASH_ANNOTATION: data_hash(data),
                WEBHOOK_MODE_ANNOTATION: mode,
            },
            "ownerReferences": [owner_reference(ref)],
        },
        "data": {"access_token": "YQ==", "app_secret": "Yg==", "verify_token": "Yw=="},
    }


def test_the_secret_says_manual_unless_told_otherwise():
    """Without Meta the operator learns of a webhook only from the receiver's challenge note,
    so the Secret must keep the receiver noting it."""
    spec = ChannelSpec(
        instance_id=NAME, phone_number_id="106540352242922", secret_ref=SecretRef(name="x")
    )
    secret = build_secret(ChannelRef("ns", NAME, UID, 1), spec, Credentials("a", "b", "c"))
    assert secret["metadata"]["annotations"][WEBHOOK_MODE_ANNOTATION] == "manual"


def test_a_failed_status_still_names_the_webhook_url():
    ref = ChannelRef("ns", NAME, UID, 1)
    failed = build_status(
        {},
        ref,
        webhook_base_url="https://hooks.example.test",
        enabled=True,
        failure=ChannelFailure("SecretNameTaken", "taken"),
        now="t",
    )
    assert failed["webhookUrl"] == f"https://hooks.example.test/hooks/whatsapp/{NAME}"
    assert set(failed) == {"conditions", "webhookUrl"}


def test_a_replacement_keeps_only_others_plain_owners():
    ref = ChannelRef("ns", NAME, UID, 1)
    ours = owner_reference(ref)
    controller_elsewhere = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "x",
        "uid": "1",
        "controller": True,
    }
    old_channel = {**ours, "uid": "an-older-channel", "controller": False}
    plain = {"apiVersion": "v1", "kind": "ConfigMap", "name": "y", "uid": "2"}
    existing = {"metadata": {"ownerReferences": [controller_elsewhere, old_channel, plain]}}
    desired = {"metadata": {"labels": {}, "annotations": {}, "ownerReferences": [ours]}}
    merged = merged_secret(existing, desired)
    assert merged["metadata"]["ownerReferences"] == [ours, plain]


def test_retries_double_from_five_seconds_to_five_minutes():
    assert [retry_delay(n) for n in range(8)] == [5, 10, 20, 40, 80, 160, 300, 300]

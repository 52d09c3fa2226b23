"""The operator's pure functions: the desired Secret, drift detection, status, credentials."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from channel_operator.desired import (
    ChannelFailure,
    ChannelRef,
    Credentials,
    MetaReport,
    build_secret,
    build_status,
    credentials_from_secret,
    may_write,
    merged_secret,
    open_seals,
    retry_delay,
    secret_is_current,
    status_changes,
)
from whatsapp_channel.channel_secret import (
    DATA_HASH_ANNOTATION,
    ENABLED_ANNOTATION,
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PHONE_NUMBER_ID_LABEL,
    data_hash,
)
from whatsapp_channel.model import (
    CREDENTIALS_VALID,
    KIND,
    READY,
    SECRET_SYNCED,
    WEBHOOK_CONFIGURED,
    WEBHOOK_REGISTERED,
    ChannelSpec,
    SealedCredentials,
    find_condition,
    rest_status,
)
from whatsapp_channel.reasons import (
    CHANNEL_DISABLED,
    CHANNEL_READY,
    CREDENTIALS_ACCEPTED,
    OVERRIDE_REGISTERED,
    SEAL_SCOPE_MISMATCH,
    SECRET_NOT_SYNCED,
    SECRET_REF_INCOMPLETE,
    SECRET_REF_NOT_FOUND,
    UNKNOWN_SEALING_KEY,
)
from whatsapp_channel.sealing import SealError, new_private_key, public_key_of, seal

NAMESPACE = "channels-test"
BASE_URL = "https://hooks.example.test"
# What Meta says of a healthy channel (the reconcile asks it: channel_operator.channel_at_meta).
ACCEPTED = MetaReport(
    credentials=(True, CREDENTIALS_ACCEPTED, "Meta accepts the credentials"),
    webhook=(True, OVERRIDE_REGISTERED, "Meta delivers the number's events to us"),
)
CREDENTIALS = Credentials(
    access_token="EAAG-access-token-value", app_secret="app-secret-value", verify_token="verify-me"
)


def make_ref(generation: int = 1, name: str | None = None) -> ChannelRef:
    return ChannelRef(
        namespace=NAMESPACE,
        name=name or str(uuid.uuid4()),
        uid=str(uuid.uuid4()),
        generation=generation,
    )


def make_spec(
    ref: ChannelRef, *, enabled: bool = True, phone: str = "106540352242922"
) -> ChannelSpec:
    return ChannelSpec(
        instance_id=ref.name,
        phone_number_id=phone,
        display_phone="+61400111222",
        enabled=enabled,
        secret_ref={"name": "mine"},
    )


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


# --- the generated Secret -----------------------------------------------------------------


def test_the_secret_holds_the_credentials_routing_labels_and_its_owner() -> None:
    ref = make_ref()
    secret = build_secret(ref, make_spec(ref), CREDENTIALS)
    assert secret["metadata"]["name"] == f"whatsapp-{ref.name}"
    assert decoded(secret) == {
        "access_token": "EAAG-access-token-value",
        "app_secret": "app-secret-value",
        "verify_token": "verify-me",
    }
    labels = secret["metadata"]["labels"]
    assert labels == {
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        INSTANCE_LABEL: ref.name,
        PHONE_NUMBER_ID_LABEL: "106540352242922",
    }
    annotations = secret["metadata"]["annotations"]
    assert annotations[ENABLED_ANNOTATION] == "true"
    assert annotations[DATA_HASH_ANNOTATION] == data_hash(CREDENTIALS.as_data())
    (owner,) = secret["metadata"]["ownerReferences"]
    assert owner["kind"] == KIND
    assert owner["uid"] == ref.uid
    assert owner["controller"] is True
    assert owner["blockOwnerDeletion"] is True


def test_disabled_channel_says_so_on_its_secret() -> None:
    ref = make_ref()
    secret = build_secret(ref, make_spec(ref, enabled=False), CREDENTIALS)
    assert secret["metadata"]["annotations"][ENABLED_ANNOTATION] == "false"


def test_data_hash_follows_the_data_only() -> None:
    one = data_hash({"a": "1", "b": "2"})
    assert one == data_hash({"b": "2", "a": "1"})
    assert one != data_hash({"a": "1", "b": "3"})
    assert one.startswith("sha256:")


def test_secret_drift_is_noticed_and_others_additions_are_not_drift() -> None:
    ref = make_ref()
    desired = build_secret(ref, make_spec(ref), CREDENTIALS)
    existing: dict[str, Any] = {
        **desired,
        "metadata": {
            **desired["metadata"],
            "resourceVersion": "42",
            "uid": "abc",
            "labels": {**desired["metadata"]["labels"], "team": "x"},
            "annotations": {**desired["metadata"]["annotations"], "note": "kept"},
        },
    }
    assert secret_is_current(existing, desired)

    edited = {**existing, "data": {**existing["data"], "app_secret": "aGFja2Vk"}}
    assert not secret_is_current(edited, desired)
    extra_key = {**existing, "data": {**existing["data"], "extra": "eA=="}}
    assert not secret_is_current(extra_key, desired)
    unlabelled = {
        **existing,
        "metadata": {**existing["metadata"], "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
    }
    assert not secret_is_current(unlabelled, desired)
    flipped = {
        **existing,
        "metadata": {
            **existing["metadata"],
            "annotations": {**existing["metadata"]["annotations"], ENABLED_ANNOTATION: "false"},
        },
    }
    assert not secret_is_current(flipped, desired)
    orphaned = {**existing, "metadata": {**existing["metadata"], "ownerReferences": []}}
    assert not secret_is_current(orphaned, desired)


def test_a_replacement_keeps_others_metadata_and_the_resource_version() -> None:
    ref = make_ref()
    desired = build_secret(ref, make_spec(ref), CREDENTIALS)
    stale_owner = {**desired["metadata"]["ownerReferences"][0], "uid": "old-channel"}
    foreign_owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "y"}
    existing = {
        "metadata": {
            "name": desired["metadata"]["name"],
            "resourceVersion": "7",
            "labels": {"team": "x", INSTANCE_LABEL: "wrong"},
            "annotations": {"note": "kept"},
            "ownerReferences": [stale_owner, foreign_owner],
        },
        "data": {"access_token": "b2xk"},
    }
    merged = merged_secret(existing, desired)
    assert merged["metadata"]["resourceVersion"] == "7"
    assert merged["metadata"]["labels"]["team"] == "x"
    assert merged["metadata"]["labels"][INSTANCE_LABEL] == ref.name
    assert merged["metadata"]["annotations"]["note"] == "kept"
    assert merged["metadata"]["ownerReferences"] == [
        desired["metadata"]["ownerReferences"][0],
        foreign_owner,
    ]
    assert merged["data"] == desired["data"]
    assert secret_is_current(merged, desired)


def test_only_our_own_secrets_are_overwritten() -> None:
    ref = make_ref()
    desired = build_secret(ref, make_spec(ref), CREDENTIALS)
    assert may_write(desired, ref)
    someone_elses = {"metadata": {"name": desired["metadata"]["name"], "labels": {}}}
    assert not may_write(someone_elses, ref)
    unlabelled_but_ours = {"metadata": {"ownerReferences": desired["metadata"]["ownerReferences"]}}
    assert may_write(unlabelled_but_ours, ref)


# --- status -------------------------------------------------------------------------------


def channel(ref: ChannelRef, status: dict[str, Any], enabled: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": ref.name, "generation": ref.generation},
        "spec": {"enabled": enabled},
        "status": status,
    }


def test_success_sets_every_condition_and_the_webhook_url() -> None:
    ref = make_ref(generation=3)
    status = build_status(
        {}, ref, webhook_base_url=BASE_URL + "/", enabled=True, failure=None, meta=ACCEPTED
    )
    assert status["observedGeneration"] == 3
    assert status["webhookUrl"] == f"{BASE_URL}/hooks/whatsapp/{ref.name}"
    assert status["secretName"] == f"whatsapp-{ref.name}"
    types = [c["type"] for c in status["conditions"]]
    assert types == [
        SECRET_SYNCED,
        WEBHOOK_CONFIGURED,
        CREDENTIALS_VALID,
        WEBHOOK_REGISTERED,
        READY,
    ]
    assert all(c["status"] == "True" and c["observedGeneration"] == 3 for c in status["conditions"])
    ready = find_condition(status["conditions"], READY)
    assert ready is not None
    assert ready["reason"] == CHANNEL_READY
    assert rest_status(channel(ref, status)) == "active"


def test_disabled_is_ready_with_its_own_reason() -> None:
    ref = make_ref()
    status = build_status(
        {}, ref, webhook_base_url=BASE_URL, enabled=False, failure=None, meta=ACCEPTED
    )
    ready = find_condition(status["conditions"], READY)
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("True", CHANNEL_DISABLED)
    assert rest_status(channel(ref, status, enabled=False)) == "disabled"


def test_failure_is_ready_false_and_leaves_observed_generation_behind() -> None:
    ref = make_ref(generation=2)
    before = build_status(
        {}, make_ref(generation=1), webhook_base_url=BASE_URL, enabled=True, failure=None
    )
    failure = ChannelFailure(SEAL_SCOPE_MISMATCH, "accessToken was sealed for another channel")
    status = build_status(before, ref, webhook_base_url=BASE_URL, enabled=True, failure=failure)
    assert "observedGeneration" not in status  # the merge patch leaves it at 1
    ready = find_condition(status["conditions"], READY)
    synced = find_condition(status["conditions"], SECRET_SYNCED)
    webhook = find_condition(status["conditions"], WEBHOOK_CONFIGURED)
    assert ready is not None
    assert synced is not None
    assert webhook is not None
    assert (ready["status"], ready["reason"]) == ("False", SEAL_SCOPE_MISMATCH)
    assert ready["observedGeneration"] == 2
    assert (synced["status"], synced["reason"]) == ("False", SEAL_SCOPE_MISMATCH)
    assert (webhook["status"], webhook["reason"]) == ("False", SECRET_NOT_SYNCED)
    assert rest_status(channel(ref, {**before, **status})) == "error"


def test_an_unchanged_channel_needs_no_status_write() -> None:
    ref = make_ref()
    first = build_status(
        {},
        ref,
        webhook_base_url=BASE_URL,
        enabled=True,
        failure=None,
        meta=ACCEPTED,
        now="2024-01-01T00:00:00Z",
    )
    current = {**first, "lastEventAt": "2024-01-02T00:00:00Z"}  # the receiver's field
    again = build_status(
        current,
        ref,
        webhook_base_url=BASE_URL,
        enabled=True,
        failure=None,
        meta=ACCEPTED,
        now="2025-01-01T00:00:00Z",
    )
    assert status_changes(current, again) == {}
    assert "lastEventAt" not in again


def test_transition_time_moves_only_when_a_condition_flips() -> None:
    ref = make_ref()
    ok = build_status(
        {},
        ref,
        webhook_base_url=BASE_URL,
        enabled=True,
        failure=None,
        meta=ACCEPTED,
        now="2024-01-01T00:00:00Z",
    )
    failure = ChannelFailure(SECRET_REF_NOT_FOUND, "Secret mine does not exist")
    failed = build_status(
        ok,
        ref,
        webhook_base_url=BASE_URL,
        enabled=True,
        failure=failure,
        now="2024-02-01T00:00:00Z",
    )
    ready = find_condition(failed["conditions"], READY)
    assert ready is not None
    assert ready["lastTransitionTime"] == "2024-02-01T00:00:00Z"
    still = build_status(
        {**ok, **failed},
        ref,
        webhook_base_url=BASE_URL,
        enabled=True,
        failure=failure,
        now="2024-03-01T00:00:00Z",
    )
    ready = find_condition(still["conditions"], READY)
    assert ready is not None
    assert ready["lastTransitionTime"] == "2024-02-01T00:00:00Z"
    assert status_changes({**ok, **failed}, still) == {}


def test_retries_back_off_up_to_five_minutes() -> None:
    delays = [retry_delay(n) for n in range(12)]
    assert delays[0] == 5
    assert delays == sorted(delays)
    assert max(delays) == 300
    assert retry_delay(10_000) == 300


# --- credentials --------------------------------------------------------------------------


def test_credentials_never_print() -> None:
    assert "EAAG" not in repr(CREDENTIALS)
    assert "EAAG" not in str(CREDENTIALS)


def test_secret_ref_needs_all_three_keys() -> None:
    full = {
        "metadata": {"name": "mine"},
        "data": {
            k: base64.b64encode(v.encode()).decode() for k, v in CREDENTIALS.as_data().items()
        },
    }
    assert credentials_from_secret(full) == CREDENTIALS
    partial = {"metadata": {"name": "mine"}, "data": {"access_token": full["data"]["access_token"]}}
    with pytest.raises(ChannelFailure) as caught:
        credentials_from_secret(partial)
    assert caught.value.reason == SECRET_REF_INCOMPLETE
    assert "app_secret" in caught.value.message
    assert "EAAG" not in caught.value.message


def _sealed_for(key: Any, ref: ChannelRef, values: dict[str, str]) -> SealedCredentials:
    return SealedCredentials(
        access_token=seal(
            key,
            namespace=ref.namespace,
            name=ref.name,
            field="accessToken",
            value=values["access_token"],
        ),
        app_secret=seal(
            key,
            namespace=ref.namespace,
            name=ref.name,
            field="appSecret",
            value=values["app_secret"],
        ),
        verify_token=seal(
            key,
            namespace=ref.namespace,
            name=ref.name,
            field="verifyToken",
            value=values["verify_token"],
        ),
    )


def test_seals_open_for_their_channel_only() -> None:
    key_id, private = new_private_key()
    keys = {key_id: private}
    public = public_key_of(private)
    ref = make_ref()
    sealed = _sealed_for(public, ref, CREDENTIALS.as_data())
    assert open_seals(keys, ref, sealed) == CREDENTIALS

    other = make_ref()
    with pytest.raises(SealError) as caught:
        open_seals(keys, other, sealed)
    assert caught.value.reason == SEAL_SCOPE_MISMATCH
    assert "EAAG" not in caught.value.message

    assert sealed.app_secret is not None
    swapped = SealedCredentials(
        access_token=sealed.app_secret,
        app_secret=sealed.access_token,
        verify_token=sealed.verify_token,
    )
    with pytest.raises(SealError) as caught:
        open_seals(keys, ref, swapped)
    assert caught.value.reason == SEAL_SCOPE_MISMATCH

    other_id, other_private = new_private_key()
    with pytest.raises(SealError) as caught:
        open_seals({other_id: other_private}, ref, sealed)
    assert caught.value.reason == UNKNOWN_SEALING_KEY

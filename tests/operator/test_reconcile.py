"""Reconciling, releasing, repairing and the sealing keys, against a small in-memory apiserver
(tests/support/fake_kube.py).

These pin the logic and the write counts; the claims about Kubernetes itself (schema, status
subresource, finalizers, garbage collection) are made against the real apiserver in
test_operator_cluster.py.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import uuid
from collections.abc import Mapping
from typing import Any, cast

import kopf
import pytest
from channel_operator import keystore, reconcile
from channel_operator.channel_secrets import ChannelSecrets
from channel_operator.desired import ChannelFailure
from channel_operator.reconcile import Runtime
from channel_operator.startup import (
    ObservedGeneration,
    ProgressAnnotations,
    configure,
    streams_initial_events,
)
from whatsapp_channel.kube import (
    JSON,
    Forbidden,
    Kube,
    KubeError,
    Unavailable,
    channels_path,
    core_path,
)
from whatsapp_channel.model import (
    ACTIVE_KEY_ID_FIELD,
    PUBLIC_KEYS_FIELD,
    READY,
    SEALING_KEYS_SECRET,
    SEALING_PUBLIC_CONFIGMAP,
    SECRET_REF_CHANNELS_ANNOTATION,
    find_condition,
)
from whatsapp_channel.reasons import (
    APISERVER_ERROR,
    SEAL_SCOPE_MISMATCH,
    SECRET_NAME_TAKEN,
    SECRET_REF_NOT_FOUND,
)
from whatsapp_channel.sealing import PublicSealingKey, published_keys, seal

from tests.support.fake_kube import MemoryKube

NS = "wa-unit"
BASE_URL = "http://127.0.0.1:8082"
VALUES = {"access_token": "EAAG-token-1", "app_secret": "secret-1", "verify_token": "verify-1"}


async def make_runtime(kube: MemoryKube) -> Runtime:
    keyring = await keystore.ensure(kube, NS, channels_namespace=NS)
    secrets = ChannelSecrets(kube, NS)
    secrets._on_event("SYNC", await kube.get(core_path("secrets", NS)))  # as the watch would
    secrets.synced.set()
    kube.writes.clear()
    return Runtime(
        kube=kube,
        namespace=NS,
        webhook_base_url=BASE_URL,
        keys=keystore.Keys(kube=kube, namespace=NS, keyring=keyring, reload_interval=0),
        secrets=secrets,
    )


def public_key(kube: MemoryKube) -> PublicSealingKey:
    data = kube.objects[core_path("configmaps", NS, SEALING_PUBLIC_CONFIGMAP)]["data"]
    return published_keys(data).active


def sealed_spec(key: PublicSealingKey, name: str, values: Mapping[str, str], **spec: Any) -> JSON:
    def one(field: str, value: str) -> str:
        return seal(key, namespace=NS, name=name, field=field, value=value)

    return {
        "instanceId": name,
        "phoneNumberId": "106540352242922",
        "enabled": True,
        "sealed": {
            "accessToken": one("accessToken", values["access_token"]),
            "appSecret": one("appSecret", values["app_secret"]),
            "verifyToken": one("verifyToken", values["verify_token"]),
        },
        **spec,
    }


def channel_body(name: str, spec: JSON, generation: int = 1, status: JSON | None = None) -> JSON:
    return {
        "metadata": {"namespace": NS, "name": name, "uid": f"uid-{name}", "generation": generation},
        "spec": spec,
        "status": status or {},
    }


def secret_values(kube: MemoryKube, name: str) -> dict[str, str]:
    secret = kube.objects[core_path("secrets", NS, f"whatsapp-{name}")]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def ready_of(status: Mapping[str, Any]) -> Mapping[str, Any]:
    ready = find_condition(status.get("conditions") or [], READY)
    assert ready is not None
    return ready


async def test_a_new_channel_costs_one_secret_write_and_a_status_patch() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    name = str(uuid.uuid4())
    body = channel_body(name, sealed_spec(public_key(kube), name, VALUES))

    patch: JSON = {}
    assert await reconcile.reconcile(rt, body, patch) is None
    assert kube.writes == [("POST", core_path("secrets", NS))]
    assert secret_values(kube, name) == VALUES
    assert patch["observedGeneration"] == 1
    assert ready_of(patch)["status"] == "True"
    assert patch["webhookUrl"] == f"{BASE_URL}/hooks/whatsapp/{name}"

    # The same channel again (a restart, a resume): nothing to write at all.
    kube.writes.clear()
    again: JSON = {}
    assert await reconcile.reconcile(rt, {**body, "status": patch}, again) is None
    assert kube.writes == []
    assert again == {}


async def test_an_update_rewrites_the_secret_and_advances_the_generation() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    name = str(uuid.uuid4())
    first: JSON = {}
    await reconcile.reconcile(
        rt, channel_body(name, sealed_spec(public_key(kube), name, VALUES)), first
    )

    rotated = {**VALUES, "app_secret": "secret-2"}
    spec = sealed_spec(public_key(kube), name, rotated, phoneNumberId="999999999")
    kube.writes.clear()
    second: JSON = {}
    assert await reconcile.reconcile(rt, channel_body(name, spec, 2, first), second) is None
    assert kube.secret_writes() == [("PUT", core_path("secrets", NS, f"whatsapp-{name}"))]
    assert secret_values(kube, name) == rotated
    labels = kube.objects[core_path("secrets", NS, f"whatsapp-{name}")]["metadata"]["labels"]
    assert labels["whatsapp.hydracore.io/phone-number-id"] == "999999999"
    assert second["observedGeneration"] == 2
    assert ready_of(second)["observedGeneration"] == 2


async def test_a_seal_moved_from_another_channel_does_not_open() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    victim, thief = str(uuid.uuid4()), str(uuid.uuid4())
    stolen = sealed_spec(public_key(kube), victim, VALUES)
    spec = {**stolen, "instanceId": thief}

    patch: JSON = {}
    failure = await reconcile.reconcile(rt, channel_body(thief, spec), patch)
    assert failure is not None
    assert failure.reason == SEAL_SCOPE_MISMATCH
    assert kube.secret_writes() == []
    ready = ready_of(patch)
    assert (ready["status"], ready["reason"]) == ("False", SEAL_SCOPE_MISMATCH)
    assert "observedGeneration" not in patch
    assert all(v not in json.dumps(patch) for v in VALUES.values())

    # Retrying the same failure writes nothing more.
    again: JSON = {}
    await reconcile.reconcile(rt, channel_body(thief, spec, status=patch), again)
    assert again == {}


async def test_secret_ref_missing_then_provided() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    name = str(uuid.uuid4())
    spec = {"instanceId": name, "phoneNumberId": "12345", "secretRef": {"name": "mine"}}
    patch: JSON = {}
    failure = await reconcile.reconcile(rt, channel_body(name, spec), patch)
    assert failure is not None
    assert failure.reason == SECRET_REF_NOT_FOUND

    data = {k: base64.b64encode(v.encode()).decode() for k, v in VALUES.items()}
    opted_in = {"name": "mine", "annotations": {SECRET_REF_CHANNELS_ANNOTATION: name}}
    await kube.create(core_path("secrets", NS), {"metadata": opted_in, "data": data})
    later: JSON = {}
    assert await reconcile.reconcile(rt, channel_body(name, spec, status=patch), later) is None
    assert secret_values(kube, name) == VALUES
    assert ready_of(later)["status"] == "True"


async def test_a_foreign_secret_of_the_same_name_is_not_overwritten_or_deleted() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    name = str(uuid.uuid4())
    await kube.create(core_path("secrets", NS), {"metadata": {"name": f"whatsapp-{name}"}})
    kube.writes.clear()
    patch: JSON = {}
    body = channel_body(name, sealed_spec(public_key(kube), name, VALUES))
    failure = await reconcile.reconcile(rt, body, patch)
    assert failure is not None
    assert failure.reason == SECRET_NAME_TAKEN
    await reconcile.release(rt, body)
    # One refused create (the cache holds only labelled Secrets), then hands off.
    assert [m for m, _ in kube.writes] == ["POST"]
    assert core_path("secrets", NS, f"whatsapp-{name}") in kube.objects


@pytest.mark.parametrize(
    "error",
    [
        Unavailable(503, "ServiceUnavailable", "etcdserver: request timed out"),
        Forbidden(403, "Forbidden", "secrets is forbidden: User cannot create"),
    ],
)
async def test_an_apiserver_error_is_ready_false_and_retried_not_raised(error: KubeError) -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    name = str(uuid.uuid4())
    body = channel_body(name, sealed_spec(public_key(kube), name, VALUES))
    kube.failing["POST"] = error
    patch: JSON = {}
    failure = await reconcile.reconcile(rt, body, patch)
    assert failure is not None
    assert failure.reason == APISERVER_ERROR
    assert str(error.status) in failure.message
    assert error.message not in failure.message  # the apiserver's words may quote the request
    ready = ready_of(patch)
    assert (ready["status"], ready["reason"]) == ("False", APISERVER_ERROR)

    del kube.failing["POST"]  # it recovers: the retry succeeds
    later: JSON = {}
    assert await reconcile.reconcile(rt, {**body, "status": patch}, later) is None
    assert ready_of(later)["status"] == "True"

    kube.failing["DELETE"] = error
    with pytest.raises(ChannelFailure) as caught:
        await reconcile.release(rt, body)
    assert caught.value.reason == APISERVER_ERROR


async def test_release_deletes_the_secret() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    name = str(uuid.uuid4())
    body = channel_body(name, sealed_spec(public_key(kube), name, VALUES))
    await reconcile.reconcile(rt, body, {})
    await reconcile.release(rt, body)
    assert core_path("secrets", NS, f"whatsapp-{name}") not in kube.objects
    await reconcile.release(rt, body)  # again: nothing left, no error


async def test_drift_repair_restores_an_edited_or_deleted_secret() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    name = str(uuid.uuid4())
    body = channel_body(name, sealed_spec(public_key(kube), name, VALUES))
    patch: JSON = {}
    await reconcile.reconcile(rt, body, patch)
    kube.objects[channels_path(NS, name)] = {**body, "status": patch}
    path = core_path("secrets", NS, f"whatsapp-{name}")

    # Edited by hand, and the watch reports it: the repair puts the data back.
    edited = copy.deepcopy(kube.objects[path])
    edited["data"]["app_secret"] = base64.b64encode(b"tampered").decode()
    edited["metadata"]["resourceVersion"] = "99999"
    kube.objects[path] = edited
    rt.secrets._on_event("MODIFIED", edited)
    await reconcile.repair(rt, name)
    assert secret_values(kube, name) == VALUES

    # Deleted by hand.
    gone = kube.objects.pop(path)
    rt.secrets._on_event("DELETED", gone)
    await reconcile.repair(rt, name)
    assert secret_values(kube, name) == VALUES

    # The channel itself is gone: its Secret goes too.
    del kube.objects[channels_path(NS, name)]
    await reconcile.repair(rt, name)
    assert path not in kube.objects


def drift_reported(rt: Runtime) -> list[str]:
    """The channels the Secret watch reports as drifted, in order."""
    reported: list[str] = []

    async def on_drift(channel: str) -> None:
        reported.append(channel)

    rt.secrets._on_drift = on_drift
    return reported


async def test_the_watch_reports_others_changes_and_ignores_ours() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    reported = drift_reported(rt)
    name = str(uuid.uuid4())
    await reconcile.reconcile(
        rt, channel_body(name, sealed_spec(public_key(kube), name, VALUES)), {}
    )
    ours = kube.objects[core_path("secrets", NS, f"whatsapp-{name}")]
    rt.secrets._on_event("ADDED", copy.deepcopy(ours))
    assert rt.secrets._tasks == set()  # our own write: no repair was even scheduled
    theirs = copy.deepcopy(ours)
    theirs["metadata"]["resourceVersion"] = "123456"
    rt.secrets._on_event("MODIFIED", theirs)
    rt.secrets._on_event("MODIFIED", theirs)  # a burst, one repair
    [repair] = rt.secrets._tasks
    await repair
    assert reported == [name]


class WatchFirstKube(MemoryKube):
    """An apiserver whose watch delivers a Secret write before the write's own answer (as
    a loaded apiserver often does), optionally with someone else's edit right behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: ChannelSecrets | None = None
        self.edit_meanwhile = False

    async def request(self, method: str, path: str, **kwargs: Any) -> JSON:
        answer = await super().request(method, path, **kwargs)
        if self.secrets is not None and method in ("POST", "PUT") and "/secrets" in path:
            self.secrets._on_event(
                "ADDED" if method == "POST" else "MODIFIED", copy.deepcopy(answer)
            )
            if self.edit_meanwhile:
                theirs = copy.deepcopy(answer)
                theirs["metadata"]["resourceVersion"] = str(
                    int(answer["metadata"]["resourceVersion"]) + 1
                )
                self.secrets._on_event("MODIFIED", theirs)
        return answer


@pytest.mark.parametrize("edit_meanwhile", [False, True])
async def test_our_write_seen_before_its_answer_is_not_drift(edit_meanwhile: bool) -> None:
    kube = WatchFirstKube()
    rt = await make_runtime(kube)
    reported = drift_reported(rt)
    kube.secrets, kube.edit_meanwhile = rt.secrets, edit_meanwhile
    name = str(uuid.uuid4())
    key = public_key(kube)
    await reconcile.reconcile(rt, channel_body(name, sealed_spec(key, name, VALUES)), {})
    changed = {**VALUES, "access_token": "EAAG-token-2"}
    body = channel_body(name, sealed_spec(key, name, changed), generation=2)
    await reconcile.reconcile(rt, body, {})  # a replace, its event first too
    assert secret_values(kube, name)["access_token"] == "EAAG-token-2"
    if not edit_meanwhile:
        assert rt.secrets._tasks == set()  # our own writes: no repair was even scheduled
        assert reported == []
    else:
        [repair] = rt.secrets._tasks  # someone else's edit behind ours: one repair
        await repair
        assert reported == [name]


async def test_startup_sweeps_secrets_of_channels_that_are_gone() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    alive, dead = str(uuid.uuid4()), str(uuid.uuid4())
    for name in (alive, dead):
        await reconcile.reconcile(
            rt, channel_body(name, sealed_spec(public_key(kube), name, VALUES)), {}
        )
    assert await rt.secrets.sweep([alive]) == 1
    assert core_path("secrets", NS, f"whatsapp-{alive}") in kube.objects
    assert core_path("secrets", NS, f"whatsapp-{dead}") not in kube.objects


# --- sealing keys -----------------------------------------------------------------------


async def test_two_operators_starting_at_once_share_one_keyring() -> None:
    kube = MemoryKube()
    one, two = await asyncio.gather(
        keystore.ensure(kube, NS, channels_namespace=NS),
        keystore.ensure(kube, NS, channels_namespace=NS),
    )
    assert one.private_keys == two.private_keys
    assert one.active_key_id == two.active_key_id
    data = kube.objects[core_path("configmaps", NS, SEALING_PUBLIC_CONFIGMAP)]["data"]
    assert data[ACTIVE_KEY_ID_FIELD] == one.active_key_id
    published = json.loads(data[PUBLIC_KEYS_FIELD])
    assert published == one.public_keys()
    PublicSealingKey.from_b64(one.active_key_id, published[one.active_key_id])  # id matches key
    # A restart with everything in place writes nothing.
    kube.writes.clear()
    assert (await keystore.ensure(kube, NS, channels_namespace=NS)).private_keys == one.private_keys
    assert kube.writes == []


async def test_missing_keys_with_sealed_channels_are_refused_never_made_anew() -> None:
    """A fresh key would open none of the existing seals: every tenant would have to post
    its credentials again. Gone keys with sealed channels are a restore, so ensure refuses."""
    kube = MemoryKube()
    keyring = await keystore.ensure(kube, NS, channels_namespace=NS)
    name = str(uuid.uuid4())
    body = channel_body(name, sealed_spec(public_key(kube), name, VALUES))
    await kube.create(channels_path(NS), body)
    keys_path = core_path("secrets", NS, SEALING_KEYS_SECRET)
    await kube.delete(keys_path)
    kube.writes.clear()

    with pytest.raises(keystore.KeysMissing) as refused:
        await keystore.ensure(kube, NS, channels_namespace=NS)
    assert keyring.active_key_id in str(refused.value)
    assert "1 channel(s)" in str(refused.value)
    assert "restore" in str(refused.value)
    assert keys_path not in kube.objects
    assert kube.writes == []

    # Without sealed channels (a first start) the key is made as before.
    await kube.delete(channels_path(NS, name))
    fresh = await keystore.ensure(kube, NS, channels_namespace=NS)
    assert fresh.active_key_id != keyring.active_key_id
    assert keys_path in kube.objects


async def test_rotation_seals_with_the_new_key_and_still_opens_old_seals() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    old_key = public_key(kube)
    old_channel = str(uuid.uuid4())
    await reconcile.reconcile(
        rt, channel_body(old_channel, sealed_spec(old_key, old_channel, VALUES)), {}
    )

    rotated = await keystore.rotate(kube, NS)  # as `whatsapp-operator rotate-key` does
    assert rotated.active_key_id != old_key.key_id
    assert old_key.key_id in rotated.private_keys
    new_key = public_key(kube)
    assert new_key.key_id == rotated.active_key_id
    secret = kube.objects[core_path("secrets", NS, SEALING_KEYS_SECRET)]
    assert set(secret["data"]) == {old_key.key_id, new_key.key_id}
    assert "managed-by" not in json.dumps(secret["metadata"].get("labels") or {})

    # The running operator learns the new key when a seal needs it.
    new_channel = str(uuid.uuid4())
    patch: JSON = {}
    body = channel_body(new_channel, sealed_spec(new_key, new_channel, VALUES))
    assert await reconcile.reconcile(rt, body, patch) is None
    assert secret_values(kube, new_channel) == VALUES
    changed = sealed_spec(old_key, old_channel, {**VALUES, "verify_token": "verify-2"})
    assert await reconcile.reconcile(rt, channel_body(old_channel, changed, 2), {}) is None


KEYS_NS = "wa-unit-system"


def in_namespace(kube: MemoryKube, namespace: str) -> list[str]:
    return [p for p in kube.objects if f"/namespaces/{namespace}/" in p]


async def test_with_a_keys_namespace_nothing_of_the_keys_sits_beside_the_channels() -> None:
    kube = MemoryKube()
    keyring = await keystore.ensure(kube, KEYS_NS, channels_namespace=NS)
    assert in_namespace(kube, NS) == []
    assert sorted(in_namespace(kube, KEYS_NS)) == sorted(
        [
            core_path("secrets", KEYS_NS, SEALING_KEYS_SECRET),
            core_path("configmaps", KEYS_NS, SEALING_PUBLIC_CONFIGMAP),
        ]
    )
    assert await keystore.load(kube, KEYS_NS) == keyring


async def test_rotation_refuses_a_namespace_without_keys() -> None:
    kube = MemoryKube()
    with pytest.raises(keystore.KeyringError, match="no sealing keys in namespace"):
        await keystore.rotate(kube, NS)
    assert kube.writes == []


async def test_key_writers_at_once_each_write_on_the_others_result() -> None:
    """Two rotations at once: the one that finds the Secret changed reads it again, so both
    new keys are kept; removing a key no longer there writes no Secret."""
    kube = MemoryKube()
    first = await keystore.ensure(kube, NS, channels_namespace=NS)
    kube.delay = 0.01  # every call yields: both read the Secret before either writes it
    one, two = await asyncio.gather(keystore.rotate(kube, NS), keystore.rotate(kube, NS))
    kube.delay = 0.0
    secret = kube.objects[core_path("secrets", NS, SEALING_KEYS_SECRET)]
    assert set(secret["data"]) == {first.active_key_id, one.active_key_id, two.active_key_id}
    assert len({first.active_key_id, one.active_key_id, two.active_key_id}) == 3
    assert public_key(kube).key_id == keystore.keyring_from_secret(secret).active_key_id
    kept = await keystore.remove_key(kube, NS, first.active_key_id)
    assert first.active_key_id not in kept.private_keys
    kube.writes.clear()
    assert await keystore.remove_key(kube, NS, first.active_key_id) == kept
    assert kube.writes == []
    with pytest.raises(keystore.KeyringError, match="no sealing keys in namespace"):
        await keystore.remove_key(kube, KEYS_NS, first.active_key_id)


def test_keyring_round_trips_through_its_secret() -> None:
    keyring = keystore.rotated(keystore.new_keyring())
    secret = keystore.build_keys_secret(NS, keyring)
    assert keystore.keyring_from_secret(secret) == keyring
    assert "Keyring(" in repr(keyring)
    assert all(
        base64.b64encode(raw).decode() not in repr(keyring) for raw in keyring.private_keys.values()
    )
    broken = {**secret, "data": {"0123456789abcdef": base64.b64encode(b"x" * 32).decode()}}
    with pytest.raises(keystore.KeyringError):
        keystore.keyring_from_secret(broken)


# --- Kopf's view of what was handled -------------------------------------------------------


def body_of(raw: JSON) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def test_observed_generation_tells_kopf_what_was_handled() -> None:
    storage = ObservedGeneration()
    new = body_of({"metadata": {"generation": 1}, "spec": {}})
    assert storage.fetch(body=new) is None  # never reconciled: a creation
    done = body_of({"metadata": {"generation": 1}, "spec": {}, "status": {"observedGeneration": 1}})
    assert storage.fetch(body=done) == storage.build(body=done)  # handled: nothing (or resume)
    changed = body_of(
        {"metadata": {"generation": 2}, "spec": {}, "status": {"observedGeneration": 1}}
    )
    assert storage.fetch(body=changed) != storage.build(body=changed)  # an update
    patch = kopf.Patch()
    storage.store(body=changed, patch=patch, essence=storage.build(body=changed))
    assert not patch  # the status patch of the handler itself records it


def test_progress_belongs_to_the_generation_it_was_made_for() -> None:
    storage = ProgressAnnotations(prefix="whatsapp.hydracore.io")
    first = body_of({"metadata": {"generation": 1}})
    patch = kopf.Patch()
    storage.store(key="reconcile", record={"retries": 3, "delayed": "x"}, body=first, patch=patch)
    annotations = dict(patch["metadata"]["annotations"])
    assert set(annotations) == {"whatsapp.hydracore.io/reconcile"}  # no kopf-managed marker
    stored = body_of({"metadata": {"generation": 1, "annotations": annotations}})
    assert storage.fetch(key="reconcile", body=stored) == {"retries": 3, "delayed": "x"}
    newer = body_of({"metadata": {"generation": 2, "annotations": annotations}})
    assert storage.fetch(key="reconcile", body=newer) is None  # a new spec starts afresh


def test_progress_is_purged_and_touched_without_a_marker_or_an_empty_write() -> None:
    storage = ProgressAnnotations(prefix="whatsapp.hydracore.io")
    clean = body_of({"metadata": {"generation": 1}})
    patch = kopf.Patch()
    storage.purge(key="reconcile", body=clean, patch=patch)
    storage.touch(body=clean, patch=patch, value=None)
    assert patch == {}  # nothing to remove: no write at all
    storage.touch(body=clean, patch=patch, value="wake")
    assert patch == {"metadata": {"annotations": {"whatsapp.hydracore.io/touch-dummy": "wake"}}}
    storage.store(key="reconcile", record={"retries": 1}, body=clean, patch=patch)
    storage.purge(key="reconcile", body=clean, patch=patch)  # stored and done in one cycle
    assert set(patch["metadata"]["annotations"]) == {"whatsapp.hydracore.io/touch-dummy"}
    touched = body_of(
        {"metadata": {"generation": 1, "annotations": patch["metadata"]["annotations"]}}
    )
    again = kopf.Patch()
    storage.touch(body=touched, patch=again, value="wake")
    assert again == {}
    storage.touch(body=touched, patch=again, value=None)
    assert again == {"metadata": {"annotations": {"whatsapp.hydracore.io/touch-dummy": None}}}


def test_progress_annotations_are_named_as_kopfs_own_storage_named_them() -> None:
    """Progress an operator with Kopf's storage left behind is read after an upgrade."""
    ours = ProgressAnnotations(prefix="whatsapp.hydracore.io")
    kopfs = kopf.AnnotationsProgressStorage(prefix="whatsapp.hydracore.io", v1=False)
    for key in ("reconcile", "release"):
        assert list(kopfs.make_keys(key)) == [ours.name(key)]
    with pytest.raises(ValueError, match="not an annotation name"):
        ours.name("x" * 64)


def test_progress_annotations_are_no_part_of_the_essence() -> None:
    storage = ProgressAnnotations(prefix="whatsapp.hydracore.io")
    essence = cast(
        kopf.BodyEssence,
        {"metadata": {"annotations": {"whatsapp.hydracore.io/reconcile": "{}", "other": "x"}}},
    )
    assert storage.clear(essence=essence) == {"metadata": {"annotations": {"other": "x"}}}


# --- the operator's background tasks (issue 23) ---------------------------------------------


async def test_a_background_task_that_ends_fails_liveness_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from channel_operator.startup import background_tasks, supervise

    rt = await make_runtime(MemoryKube())
    assert background_tasks(rt) == "running"

    async def broken() -> None:
        raise KeyError("a-channel")

    async def forever() -> None:
        await asyncio.Event().wait()

    cancelled = supervise(rt, asyncio.create_task(forever(), name="channel secrets"))
    died = supervise(rt, asyncio.create_task(broken(), name="health checks"))
    with pytest.raises(KeyError):
        await died
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await asyncio.sleep(0)  # done-callbacks run on the next turn of the loop
    assert rt.ended == ["health checks"]  # a task stopped on purpose is no failure
    with pytest.raises(kopf.PermanentError, match="health checks"):
        background_tasks(rt)
    record = next(r for r in caplog.records if "health checks" in r.getMessage())
    assert record.levelname == "ERROR"
    assert record.exc_info is not None
    assert record.exc_info[0] is KeyError


def test_kopf_lists_the_channels_in_one_answer() -> None:
    """Kopf asks for a list's next page only once it has queued the last: at 50,000
    channels a paged listing outlasted etcd's compaction, the page token expired (410) and
    Kopf stopped the operator (docs/benchmarks.md). One answer, however large, where the
    apiserver cannot stream a watch's initial objects."""
    settings = kopf.OperatorSettings()
    configure(settings)
    assert settings.watching.chunk_size is None
    assert not settings.watching.initial_streaming


def test_kopf_streams_the_channels_where_the_apiserver_can() -> None:
    """A listing in one answer holds every channel decoded at once (845 MB at 20,000); a
    watch's initial objects are read as fast as Kopf queues them. The server's timeout
    leaves the stream time to deliver them all (a stream cut short resumes from the last
    object read, not from the start)."""
    settings = kopf.OperatorSettings()
    configure(settings, initial_streaming=True)
    assert settings.watching.initial_streaming
    assert settings.watching.chunk_size is None
    assert settings.watching.server_timeout is not None
    assert settings.watching.server_timeout >= 1800
    assert settings.watching.client_timeout is not None
    assert settings.watching.client_timeout > settings.watching.server_timeout


class VersionOnly:
    def __init__(self, major: str, minor: str) -> None:
        self.version = {"major": major, "minor": minor, "gitVersion": f"v{major}.{minor}"}

    async def get(self, path: str) -> dict[str, str]:
        assert path == "/version"
        return self.version


@pytest.mark.parametrize(
    ("major", "minor", "streams"),
    [("1", "34", True), ("1", "35+", True), ("2", "0", True), ("1", "33", False),
     ("1", "30+", False), ("", "", False)],
)  # fmt: skip
async def test_initial_streaming_from_kubernetes_1_34(
    major: str, minor: str, streams: bool
) -> None:
    kube = cast(Kube, VersionOnly(major, minor))
    assert await streams_initial_events(kube) is streams


async def test_this_apiserver_streams_initial_events(kube: Kube) -> None:
    """The control plane of the suite (1.34) is asked as the operator asks it: an operator
    with `watch_initial_streaming` set streams its initial channels here."""
    assert await streams_initial_events(kube)

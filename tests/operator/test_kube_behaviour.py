"""Kubernetes behaviours the product relies on, each on the real control plane (issue 14).

The unit suites emulate these with an in-memory apiserver (tests/fake_kube.py); here the
apiserver, its admission and the controller manager's garbage collector are the real ones.
The operator's reconcile and the facade run in this process on a real client, so each test
is the one Kubernetes behaviour it names and nothing racing beside it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from channel_api.facade import FacadeSettings, create_app
from channel_operator import keystore, reconcile
from channel_operator.channel_secrets import ChannelSecrets
from channel_operator.reconcile import Runtime
from localkube import Cluster
from localkube.cluster import service_account_kubeconfig
from whatsapp_channel.kube import (
    JSON,
    Conflict,
    Kube,
    NotFound,
    channels_path,
    core_path,
    load_config,
    reflect,
)
from whatsapp_channel.model import (
    FINALIZER,
    READY,
    ChannelSpec,
    SealedCredentials,
    channel_body,
    find_condition,
)
from whatsapp_channel.reasons import APISERVER_ERROR, SECRET_NAME_TAKEN
from whatsapp_channel.sealing import PublicSealingKey, public_key_of, seal

from tests.support.facade_app import serving, write_keys_file
from tests.support.waiting import eventually

WEBHOOK_BASE = "http://127.0.0.1:8082"
# How long the apiserver gets to put a change in force (a policy, a binding, a deletion).
SETTLE = 90.0


def values() -> dict[str, str]:
    return {
        "access_token": f"EAAG{uuid.uuid4().hex}",
        "app_secret": uuid.uuid4().hex,
        "verify_token": uuid.uuid4().hex,
    }


def sealed_channel(key: PublicSealingKey, namespace: str, name: str, clear: dict[str, str]) -> JSON:
    def one(field: str, value: str) -> str:
        return seal(key, namespace=namespace, name=name, field=field, value=value)

    spec = ChannelSpec(
        instance_id=name,
        phone_number_id="106540352242922",
        display_phone="+61400111222",
        enabled=True,
        sealed=SealedCredentials(
            access_token=one("accessToken", clear["access_token"]),
            app_secret=one("appSecret", clear["app_secret"]),
            verify_token=one("verifyToken", clear["verify_token"]),
        ),
    )
    return channel_body(namespace=namespace, name=name, spec=spec, finalizers=(FINALIZER,))


async def runtime(kube: Kube, namespace: str, *, secrets_kube: Kube | None = None) -> Runtime:
    """The operator's runtime as its start-up makes it, without the Secret watch: every
    Secret write first reads the Secret from the apiserver."""
    keyring = await keystore.ensure(kube, namespace, channels_namespace=namespace)
    writer = secrets_kube or kube
    return Runtime(
        kube=writer,
        namespace=namespace,
        webhook_base_url=WEBHOOK_BASE,
        keys=keystore.Keys(kube=kube, namespace=namespace, keyring=keyring, reload_interval=0),
        secrets=ChannelSecrets(writer, namespace),
    )


async def new_channel(rt: Runtime, kube: Kube, namespace: str) -> tuple[JSON, dict[str, str]]:
    """A sealed channel created in the apiserver, as the apiserver returned it."""
    name = str(uuid.uuid4())
    clear = values()
    keyring = rt.keys.keyring
    key = public_key_of(keyring.private_keys[keyring.active_key_id])
    body = sealed_channel(key, namespace, name, clear)
    created = await kube.create(channels_path(namespace), body)
    return created, clear


def secret_path(namespace: str, name: str) -> str:
    return core_path("secrets", namespace, f"whatsapp-{name}")


def decoded(secret: JSON) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def ready_of(status: JSON) -> dict[str, Any]:
    return dict(find_condition(status.get("conditions") or [], READY) or {})


async def release_finalizer(kube: Kube, namespace: str, name: str) -> None:
    """Let a held channel go (no operator runs here), so its namespace can be deleted."""
    with contextlib.suppress(NotFound):
        await kube.merge_patch(channels_path(namespace, name), {"metadata": {"finalizers": None}})


# --- the facade on the real apiserver ---------------------------------------------------


async def test_post_while_a_finalizer_holds_the_delete_is_409(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    await keystore.ensure(
        kube, namespace, channels_namespace=namespace
    )  # the public key the facade seals to
    keys = write_keys_file(tmp_path / "api-keys")
    settings = FacadeSettings(
        api_keys_file=keys.file, ready_wait_seconds=1.0, WA_CHANNELS_NAMESPACE=namespace
    )
    name = str(uuid.uuid4())
    url = f"/v1/instances/{name}/channels/whatsapp"
    setup = {
        "access_token": "EAAG-access-token-0123456789abcdef",
        "app_secret": "0123456789abcdef0123456789abcdef",
        "phone_number_id": "106540352242922",
        "display_phone": "+61400111222",
    }
    async with serving(create_app(settings, kube), keys.admin) as client:
        first = await client.post(url, json=setup)
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "pending"  # no operator runs here
        try:
            await kube.delete(channels_path(namespace, name))
            held = await kube.get(channels_path(namespace, name))
            assert held["metadata"]["deletionTimestamp"]
            assert held["metadata"]["finalizers"] == [FINALIZER]

            # The apiserver itself: no create over an object that is being deleted.
            again = {k: held[k] for k in ("apiVersion", "kind", "spec")}
            again["metadata"] = {"name": name, "namespace": namespace}
            with pytest.raises(Conflict) as caught:
                await kube.create(channels_path(namespace), again)
            assert (caught.value.status, caught.value.reason) == (409, "AlreadyExists")

            view = await client.get(url)
            assert (view.status_code, view.json()["status"]) == (200, "deleting")
            busy = await client.post(url, json=setup)
            assert busy.status_code == 409, busy.text
            assert busy.json() == {
                "detail": "the channel is still being torn down; retry in a few seconds"
            }
            assert busy.headers["Retry-After"] == "5"
            after = await kube.get(channels_path(namespace, name))
            assert after["metadata"]["uid"] == held["metadata"]["uid"]
        finally:
            await release_finalizer(kube, namespace, name)

        # Once the finalizer let go, the same POST sets the channel up anew.
        anew = await client.post(url, json=setup)
        assert anew.status_code == 200, anew.text
        fresh = await kube.get(channels_path(namespace, name))
        assert fresh["metadata"]["uid"] != held["metadata"]["uid"]
    await release_finalizer(kube, namespace, name)


async def test_a_real_422_goes_through_the_facades_error_mapping(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    """An admission policy of the cluster refuses a phone number: the apiserver's own 422,
    whose text quotes the value, reaches the client as a 422 naming the field only."""
    reserved = "+61400999999"
    policy = f"{namespace}-reserved-phone"
    objects = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["whatsapp.hydracore.io"],
                            "apiVersions": ["*"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["whatsappchannels"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": f"object.spec.displayPhone != '{reserved}'",
                        "messageExpression": (
                            "'spec.displayPhone ' + object.spec.displayPhone + ' is reserved'"
                        ),
                        "reason": "Invalid",
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        },
    ]
    keyring = await keystore.ensure(kube, namespace, channels_namespace=namespace)
    keys = write_keys_file(tmp_path / "api-keys")
    settings = FacadeSettings(
        api_keys_file=keys.file, ready_wait_seconds=0, WA_CHANNELS_NAMESPACE=namespace
    )
    name = str(uuid.uuid4())
    url = f"/v1/instances/{name}/channels/whatsapp"
    setup = {
        "access_token": "EAAG-access-token-0123456789abcdef",
        "app_secret": "0123456789abcdef0123456789abcdef",
        "phone_number_id": "106540352242922",
        "display_phone": reserved,
    }
    for obj in objects:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    active = public_key_of(keyring.private_keys[keyring.active_key_id])
    probe = sealed_channel(active, namespace, name, values())
    probe["spec"]["displayPhone"] = reserved

    async def policy_in_force() -> bool:
        # The apiserver loads a new policy in the background: ask it, writing nothing.
        tried = cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False
        )
        return tried.returncode != 0 and "is reserved" in tried.stderr

    try:
        await eventually(policy_in_force, "the admission policy in force", timeout=SETTLE)
        async with serving(create_app(settings, kube), keys.admin) as client:
            answer = await client.post(url, json=setup)
        assert answer.status_code == 422, answer.text
        assert answer.json() == {
            "detail": [
                {
                    "loc": ["body"],
                    "msg": "the cluster refused the channel: invalid spec.displayPhone",
                    "type": "value_error",
                }
            ]
        }
        assert reserved not in answer.text
        assert "0123456789abcdef" not in answer.text
        with pytest.raises(NotFound):  # nothing was written
            await kube.get(channels_path(namespace, name))
    finally:
        for kind in ("validatingadmissionpolicybinding", "validatingadmissionpolicy"):
            cluster.kubectl("delete", kind, policy, "--ignore-not-found", check=False)


# --- the operator's Secret writes on the real apiserver ---------------------------------


async def test_a_secret_name_taken_by_someone_else_is_reported_and_left_alone(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube
) -> None:
    rt = await runtime(kube, namespace)
    channel, _ = await new_channel(rt, kube, namespace)
    name = channel["metadata"]["name"]
    theirs = await kube.create(
        core_path("secrets", namespace),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"whatsapp-{name}", "labels": {"team": "someone-else"}},
            "data": {"password": base64.b64encode(b"not yours").decode()},
        },
    )
    try:
        patch: JSON = {}
        failure = await reconcile.reconcile(rt, channel, patch)
        assert failure is not None
        assert failure.reason == SECRET_NAME_TAKEN
        ready = ready_of(patch)
        assert (ready["status"], ready["reason"]) == ("False", SECRET_NAME_TAKEN)
        await reconcile.release(rt, channel)  # the channel goes: their Secret stays
        after = await kube.get(secret_path(namespace, name))
        assert after["metadata"]["uid"] == theirs["metadata"]["uid"]
        assert after["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
        assert decoded(after) == {"password": "not yours"}
    finally:
        await rt.secrets.close()
        await release_finalizer(kube, namespace, name)


async def test_rbac_forbidden_becomes_apiserver_error(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube, tmp_path: Path
) -> None:
    """An operator whose account may read Secrets but not create them: the apiserver's 403
    is reported as ApiserverError on the channel, without the apiserver's words."""
    account = "reads-secrets-only"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": account, "namespace": namespace},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": account, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
    }
    cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    for obj in (role, binding):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    limited = Kube(
        load_config(str(service_account_kubeconfig(cluster, namespace, account, tmp_path)))
    )
    try:
        rt = await runtime(kube, namespace, secrets_kube=limited)
        channel, _ = await new_channel(rt, kube, namespace)
        name = channel["metadata"]["name"]

        async def refused() -> JSON | None:
            # RBAC takes effect once the apiserver's authorizer has seen the binding.
            patch: JSON = {}
            failure = await reconcile.reconcile(rt, channel, patch)
            assert failure is not None
            return patch if "403" in failure.message else None

        patch = await eventually(
            refused, "the apiserver refusing the Secret with 403", timeout=SETTLE
        )
        ready = ready_of(patch)
        assert (ready["status"], ready["reason"]) == ("False", APISERVER_ERROR)
        # The apiserver's words (they name the account and the verb) stay out.
        assert account not in ready["message"]
        assert "cannot create" not in ready["message"]
        with pytest.raises(NotFound):
            await kube.get(secret_path(namespace, name))
    finally:
        await limited.close()
        await release_finalizer(kube, namespace, channel["metadata"]["name"])


async def test_an_immutable_secret_is_deleted_and_written_anew(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube
) -> None:
    rt = await runtime(kube, namespace)
    channel, clear = await new_channel(rt, kube, namespace)
    name = channel["metadata"]["name"]
    try:
        assert await reconcile.reconcile(rt, channel, {}) is None
        ours = await kube.get(secret_path(namespace, name))
        # Someone edits it and makes it immutable: the apiserver now refuses any update.
        edited = {
            **ours,
            "immutable": True,
            "data": {**ours["data"], "app_secret": base64.b64encode(b"edited").decode()},
        }
        frozen = await kube.replace(secret_path(namespace, name), edited)
        assert frozen["immutable"] is True

        assert await reconcile.reconcile(rt, channel, {}) is None
        anew = await kube.get(secret_path(namespace, name))
        assert anew["metadata"]["uid"] != ours["metadata"]["uid"]
        assert not anew.get("immutable")
        assert decoded(anew) == clear
        (owner,) = anew["metadata"]["ownerReferences"]
        assert owner["uid"] == channel["metadata"]["uid"]
    finally:
        await rt.secrets.close()
        await release_finalizer(kube, namespace, name)


async def test_the_garbage_collector_removes_the_secret_when_the_finalizer_is_bypassed(
    cluster: Cluster, crd: Any, namespace: str, kube: Kube
) -> None:
    """No operator runs to release the channel: its Secret goes through its ownerReference."""
    rt = await runtime(kube, namespace)
    channel, _ = await new_channel(rt, kube, namespace)
    name = channel["metadata"]["name"]
    try:
        assert await reconcile.reconcile(rt, channel, {}) is None
    finally:
        await rt.secrets.close()
    secret = await kube.get(secret_path(namespace, name))
    (owner,) = secret["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "WhatsAppChannel",
        name,
        channel["metadata"]["uid"],
    )

    await kube.delete(channels_path(namespace, name))
    await release_finalizer(kube, namespace, name)  # the finalizer bypassed by hand

    async def channel_gone() -> bool:
        try:
            await kube.get(channels_path(namespace, name))
        except NotFound:
            return True
        return False

    await eventually(channel_gone, "the channel deleted", timeout=SETTLE)

    async def secret_collected() -> bool:
        try:
            await kube.get(secret_path(namespace, name))
        except NotFound:
            return True
        return False

    await eventually(secret_collected, "the Secret garbage-collected", timeout=180)


# --- list+watch at scale ------------------------------------------------------------------


async def test_reflect_lists_in_pages_and_hands_over_lean_objects(
    namespace: str, kube: Kube, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list is asked for a page at a time (limit and continue: 50,000 channels are never
    one answer), and every object handed over, listed or watched, is without managedFields
    (the apiserver's bookkeeping, which no cache of ours reads)."""
    path = core_path("configmaps", namespace)

    def configmap(i: int) -> JSON:
        return {"metadata": {"name": f"c{i}", "labels": {"t": "reflect"}}, "data": {"i": str(i)}}

    created = [await kube.create(path, configmap(i)) for i in range(5)]
    assert all(c["metadata"].get("managedFields") for c in created)  # the apiserver's own
    asked: list[dict[str, str]] = []
    get = kube.get

    async def counted(at: str, params: Mapping[str, str] | None = None) -> JSON:
        if at == path:
            asked.append(dict(params or {}))
        return await get(at, params)

    monkeypatch.setattr(kube, "get", counted)
    seen: list[tuple[str, JSON]] = []
    synced = asyncio.Event()
    task = asyncio.create_task(
        reflect(
            kube,
            path,
            lambda kind, obj: seen.append((kind, obj)),
            label_selector="t=reflect",
            on_synced=synced.set,
            page=2,
        )
    )
    try:
        await asyncio.wait_for(synced.wait(), timeout=SETTLE)
        await kube.create(path, configmap(5))

        async def watched() -> bool:
            return len(seen) == 2

        await eventually(watched, "the watch delivers the sixth ConfigMap")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    (kind, listing), (added, obj) = seen
    assert (kind, added) == ("SYNC", "ADDED")
    assert [i["metadata"]["name"] for i in listing["items"]] == [f"c{i}" for i in range(5)]
    assert [a.get("limit") for a in asked] == ["2", "2", "2"]
    assert ["continue" in a for a in asked] == [False, True, True]
    assert obj["metadata"]["name"] == "c5"
    assert all("managedFields" not in o["metadata"] for o in [*listing["items"], obj])

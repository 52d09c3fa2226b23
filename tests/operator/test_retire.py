"""Issue 13: retiring a sealing key. A leaked key must stop opening seals: `retire-key`
re-seals every channel on it to the active key and removes it (a running operator follows
within seconds); a channel that cannot be re-sealed is named and the key kept. In memory
here; the command against the real control plane at the end."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from channel_operator import keystore, reconcile
from channel_operator.keystore import KeyringError
from channel_operator.retire import retire_key
from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import Service, script
from whatsapp_channel.kube import JSON, Kube, channels_path, core_path
from whatsapp_channel.model import (
    API_VERSION,
    KIND,
    PUBLIC_KEYS_FIELD,
    SEALING_KEYS_SECRET,
    SEALING_PUBLIC_CONFIGMAP,
)
from whatsapp_channel.reasons import CHANNEL_READY, UNKNOWN_SEALING_KEY
from whatsapp_channel.sealing import PublicSealingKey, seal_key_id, unseal

from tests.operator.conftest import META_ENV
from tests.operator.test_operator_cluster import (
    credentials,
    decoded,
    get_secret,
    manifest,
    wait_ready,
)
from tests.operator.test_operator_cluster import public_key as published_key
from tests.operator.test_reconcile import (
    NS,
    VALUES,
    make_runtime,
    public_key,
    ready_of,
    sealed_spec,
)
from tests.support.fake_kube import MemoryKube
from tests.support.processes import log_dir, run_operator
from tests.support.scrape import scrape, value

FIELDS = ("accessToken", "appSecret", "verifyToken")


@pytest.fixture(autouse=True)
def _meta(meta_env: dict[str, Any]) -> dict[str, Any]:
    """Each test's operator asks the Graph stand-in and registers with a receiver of its own
    namespace (`conftest.meta_env`)."""
    return meta_env


async def create_channel(kube: MemoryKube, key: PublicSealingKey, values: dict[str, str]) -> str:
    name = str(uuid.uuid4())
    body = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": NS},
        "spec": sealed_spec(key, name, values),
    }
    await kube.create(channels_path(NS), body)
    return name


def key_ids_of(kube: MemoryKube, name: str) -> set[str]:
    sealed = kube.objects[channels_path(NS, name)]["spec"]["sealed"]
    return {seal_key_id(sealed[f]) for f in FIELDS}


def published_ids(kube: MemoryKube) -> set[str]:
    data = kube.objects[core_path("configmaps", NS, SEALING_PUBLIC_CONFIGMAP)]["data"]
    return set(json.loads(data[PUBLIC_KEYS_FIELD]))


async def test_retiring_a_key_reseals_its_channels_and_removes_it() -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    rt.keys.refresh_interval = 0  # the running operator's keys, read again before opening
    old = public_key(kube)
    on_old = [await create_channel(kube, old, VALUES) for _ in range(2)]
    new_keyring = await keystore.rotate(kube, NS)
    on_new = await create_channel(kube, public_key(kube), VALUES)

    result = await retire_key(kube, NS, NS, old.key_id)
    assert result.removed
    assert sorted(result.resealed) == sorted(on_old)
    assert result.failed == {}
    for name in [*on_old, on_new]:
        assert key_ids_of(kube, name) == {new_keyring.active_key_id}
        sealed = kube.objects[channels_path(NS, name)]["spec"]["sealed"]
        opened = {
            f: unseal(new_keyring.private_keys, namespace=NS, name=name, field=f, sealed=sealed[f])
            for f in FIELDS
        }
        assert opened == dict(zip(FIELDS, VALUES.values(), strict=True))
    keys = kube.objects[core_path("secrets", NS, SEALING_KEYS_SECRET)]["data"]
    assert set(keys) == {new_keyring.active_key_id}
    assert published_ids(kube) == {new_keyring.active_key_id}

    # The leaked key opens nothing in the running operator either: a seal made with it now.
    leaked = await create_channel(kube, old, VALUES)
    patch: JSON = {}
    body = kube.objects[channels_path(NS, leaked)]
    failure = await reconcile.reconcile(rt, body, patch)
    assert failure is not None
    assert failure.reason == UNKNOWN_SEALING_KEY
    assert ready_of(patch)["reason"] == UNKNOWN_SEALING_KEY


async def test_a_channel_that_cannot_be_resealed_is_named_and_the_key_kept() -> None:
    kube = MemoryKube()
    await make_runtime(kube)
    old = public_key(kube)
    fine = await create_channel(kube, old, VALUES)
    broken = await create_channel(kube, old, VALUES)
    # A seal copied from another channel: it does not open for this one.
    path = channels_path(NS, broken)
    kube.objects[path]["spec"]["sealed"]["appSecret"] = kube.objects[channels_path(NS, fine)][
        "spec"
    ]["sealed"]["appSecret"]
    await keystore.rotate(kube, NS)

    result = await retire_key(kube, NS, NS, old.key_id)
    assert not result.removed
    assert list(result.failed) == [broken]
    assert "SealScopeMismatch" in result.failed[broken]
    assert result.resealed == [fine]
    keys = kube.objects[core_path("secrets", NS, SEALING_KEYS_SECRET)]["data"]
    assert old.key_id in keys
    assert old.key_id in published_ids(kube)


async def test_the_active_key_or_an_unknown_one_is_not_retired() -> None:
    kube = MemoryKube()
    await make_runtime(kube)
    active = public_key(kube)
    with pytest.raises(KeyringError, match="active"):
        await retire_key(kube, NS, NS, active.key_id)
    with pytest.raises(KeyringError, match="no sealing key"):
        await retire_key(kube, NS, NS, "0123456789abcdef")


# --- the command on the real control plane --------------------------------------------------


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def operator(cluster: Cluster, crd: Any, namespace: str, metrics_port: int) -> Iterator[Service]:
    with run_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **META_ENV,
        metrics_port=metrics_port,
    ) as service:
        yield service


async def refreshes(port: int) -> float:
    return value(
        await scrape(port), "whatsapp_operator_sealing_key_reloads_total", result="refreshed"
    )


def operator_command(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [script("whatsapp-operator"), *args],
        env=cluster.env(),
        capture_output=True,
        text=True,
        check=False,
    )


async def test_retire_key_on_the_cluster_leaves_the_leaked_key_opening_nothing(
    cluster: Cluster, operator: Service, namespace: str, kube: Kube, metrics_port: int
) -> None:
    leaked = await published_key(kube, namespace)
    name = str(uuid.uuid4())
    values = credentials()
    await kube.create(channels_path(namespace), manifest(leaked, namespace, name, values))
    await wait_ready(kube, namespace, name, reason=CHANNEL_READY)

    rotated = await asyncio.to_thread(
        operator_command, cluster, "rotate-key", "--keys-namespace", namespace
    )
    assert rotated.returncode == 0, rotated.stderr
    retired = await asyncio.to_thread(
        operator_command,
        cluster,
        "retire-key",
        leaked.key_id,
        "--keys-namespace",
        namespace,
        "--channels-namespace",
        namespace,
    )
    assert retired.returncode == 0, retired.stderr
    assert retired.stdout.splitlines() == [f"re-sealed {name}", f"removed {leaked.key_id}"]
    active = await published_key(kube, namespace)
    assert active.key_id == rotated.stdout.strip()

    channel = await wait_ready(kube, namespace, name, reason=CHANNEL_READY)
    assert channel["metadata"]["generation"] == 2
    sealed = channel["spec"]["sealed"]
    assert {seal_key_id(sealed[f]) for f in FIELDS} == {active.key_id}
    secret = await get_secret(kube, namespace, name)
    assert secret is not None
    assert decoded(secret) == values

    # The running operator reads its keys again (at most once a second, before opening
    # seals): reconcile a bystander until it has, after the removal.
    removed_at = await refreshes(metrics_port)
    bystander = str(uuid.uuid4())
    await kube.create(
        channels_path(namespace), manifest(active, namespace, bystander, credentials())
    )
    for generation in range(2, 100):
        await wait_ready(kube, namespace, bystander, reason=CHANNEL_READY)
        if await refreshes(metrics_port) > removed_at:
            break
        await kube.merge_patch(
            channels_path(namespace, bystander),
            {"spec": {"displayPhone": f"+614001{generation:05d}"}},
        )
    assert await refreshes(metrics_port) > removed_at

    # Whoever holds the leaked key can seal with it; the operator no longer opens it.
    attacker = str(uuid.uuid4())
    await kube.create(
        channels_path(namespace), manifest(leaked, namespace, attacker, credentials())
    )
    await wait_ready(kube, namespace, attacker, status="False", reason=UNKNOWN_SEALING_KEY)
    assert await get_secret(kube, namespace, attacker) is None

"""Issue 25, item 5 against the real control plane: the sealing keys outlive their Secret.

Deleted while the operator runs, the keys Secret (and the public ConfigMap) is written back
from memory; an operator that starts with the Secret gone while channels are sealed makes no
fresh key (which would open none of their seals): it stays unready, says why, and starts once
the Secret is restored from its backup.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
import uuid
from typing import Any

import yaml
from channel_operator.leader import lease_path
from localkube import Cluster
from whatsapp_channel.kube import JSON, Kube, NotFound, channels_path, core_path
from whatsapp_channel.model import SEALING_KEYS_SECRET, SEALING_PUBLIC_CONFIGMAP
from whatsapp_channel.sealing import PublicSealingKey

from tests.operator.conftest import META_ENV
from tests.operator.test_operator_cluster import (
    credentials,
    decoded,
    get_secret,
    manifest,
    public_key,
    wait_ready,
)
from tests.support.processes import log_dir, run_operator, start_operator
from tests.support.waiting import eventually

# What a backup keeps of an object: what the apiserver assigns is left out.
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp", "managedFields", "generation")


def exported(obj: JSON) -> JSON:
    """`obj` as a backup holds it: applicable to a cluster that never had it."""
    metadata = {k: v for k, v in obj["metadata"].items() if k not in SERVER_FIELDS}
    return {**obj, "metadata": metadata}


async def get_or_none(kube: Kube, path: str) -> JSON | None:
    try:
        return await kube.get(path)
    except NotFound:
        return None


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


async def reconciles_a_change(kube: Kube, key: PublicSealingKey, namespace: str, name: str) -> None:
    """Channel `name` (at generation 1) takes new credentials sealed to `key`: its Secret
    holds them, so the operator opened the seals."""
    changed = credentials()
    update = manifest(key, namespace, name, changed)
    await kube.merge_patch(channels_path(namespace, name), {"spec": update["spec"]})
    channel = await wait_ready(kube, namespace, name)
    assert channel["status"]["observedGeneration"] == 2
    secret = await get_secret(kube, namespace, name)
    assert secret is not None
    assert decoded(secret) == changed


async def test_a_deleted_keys_secret_is_put_back_and_channels_keep_reconciling(
    cluster: Cluster, crd: Any, meta_env: Any, namespace: str, keys_namespace: str, kube: Kube
) -> None:
    keys_path = core_path("secrets", keys_namespace, SEALING_KEYS_SECRET)
    public_path = core_path("configmaps", keys_namespace, SEALING_PUBLIC_CONFIGMAP)
    with run_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        keys_namespace=keys_namespace,
        **META_ENV,
        log_level="DEBUG",
    ) as service:
        key = await public_key(kube, keys_namespace)
        name = str(uuid.uuid4())
        await kube.create(channels_path(namespace), manifest(key, namespace, name, credentials()))
        await wait_ready(kube, namespace, name)
        keys_before = await kube.get(keys_path)
        public_before = await kube.get(public_path)

        await kube.delete(keys_path)
        await kube.delete(public_path)

        async def keys_back() -> JSON | None:
            return await get_or_none(kube, keys_path)

        keys_after = await eventually(keys_back, "the keys Secret written back", timeout=30)
        assert keys_after["metadata"]["uid"] != keys_before["metadata"]["uid"]
        assert keys_after["data"] == keys_before["data"]
        assert keys_after["metadata"]["annotations"] == keys_before["metadata"]["annotations"]

        async def public_back() -> JSON | None:
            return await get_or_none(kube, public_path)

        public_after = await eventually(public_back, "the public keys written back", timeout=30)
        assert public_after["data"] == public_before["data"]

        # Channels keep reconciling: an old one changed, a new one sealed to the same key.
        await reconciles_a_change(kube, key, namespace, name)
        other = str(uuid.uuid4())
        await kube.create(channels_path(namespace), manifest(key, namespace, other, credentials()))
        await wait_ready(kube, namespace, other)

        log = service.log_path.read_text(errors="replace")
        assert "was deleted; written back from memory" in log
        for private in keys_before["data"].values():
            assert private not in log, "a private sealing key is in the operator's log"


async def test_a_restart_without_the_keys_makes_no_fresh_key_and_waits_for_the_restore(
    cluster: Cluster, crd: Any, meta_env: Any, namespace: str, keys_namespace: str, kube: Kube
) -> None:
    keys_path = core_path("secrets", keys_namespace, SEALING_KEYS_SECRET)
    public_path = core_path("configmaps", keys_namespace, SEALING_PUBLIC_CONFIGMAP)
    settings: Any = {
        "namespace": namespace,
        "keys_namespace": keys_namespace,
        **META_ENV,
        "log_level": "DEBUG",
    }
    name = str(uuid.uuid4())
    with run_operator(cluster.kubeconfig, log_dir(cluster), **settings):
        key = await public_key(kube, keys_namespace)
        await kube.create(channels_path(namespace), manifest(key, namespace, name, credentials()))
        await wait_ready(kube, namespace, name)
    backup = exported(await kube.get(keys_path))
    public_before = await kube.get(public_path)
    await kube.delete(keys_path)  # lost while no operator runs

    service = start_operator(cluster.kubeconfig, log_dir(cluster), wait=False, **settings)
    try:

        async def refused() -> bool:
            log = service.log_path.read_text(errors="replace")
            return "is missing, but 1 channel(s) are sealed to key(s)" in log

        await eventually(refused, "the operator saying why it does not start", timeout=60)
        assert service.alive()
        assert not healthy(service.url)
        assert await get_or_none(kube, keys_path) is None, "a fresh key was made"
        public_now = await kube.get(public_path)
        assert (
            public_now["metadata"]["resourceVersion"]
            == public_before["metadata"]["resourceVersion"]
        ), "the published key changed"

        # The restore: the backup applied, and the waiting operator starts with it.
        await kube.create(core_path("secrets", keys_namespace), backup)

        async def started() -> bool:
            return await asyncio.to_thread(healthy, service.url)

        await eventually(started, "the operator started with the restored keys", timeout=90)
        await reconciles_a_change(kube, key, namespace, name)
    finally:
        service.stop()


# What docs/high-availability.md's backup command leaves out of `kubectl get -o yaml`.
BACKUP_DROPS = ("  resourceVersion:", "  uid:", "  creationTimestamp:")


def channels_backup(cluster: Cluster, namespace: str) -> str:
    """The channels as GitOps would hold them: names, labels and spec, nothing the cluster
    or the operator wrote."""
    listed = yaml.safe_load(
        cluster.kubectl("get", "whatsappchannels", "-n", namespace, "-o", "yaml").stdout
    )
    kept = [
        {
            "apiVersion": item["apiVersion"],
            "kind": item["kind"],
            "metadata": {"name": item["metadata"]["name"], "namespace": namespace},
            "spec": item["spec"],
        }
        for item in listed["items"]
    ]
    return yaml.safe_dump_all(kept)


async def test_keys_and_channels_applied_to_a_wiped_namespace_are_all_ready(
    cluster: Cluster, crd: Any, meta_env: Any, namespace: str, keys_namespace: str, kube: Kube
) -> None:
    """The restore docs/high-availability.md describes: keys exported with its command, every
    object of the product wiped, keys and channels applied again, every channel Ready with
    its credentials opened from the restored keys."""
    settings: Any = {
        "namespace": namespace,
        "keys_namespace": keys_namespace,
        **META_ENV,
        "log_level": "DEBUG",
    }
    values = {str(uuid.uuid4()): credentials() for _ in range(3)}
    with run_operator(cluster.kubeconfig, log_dir(cluster), **settings):
        key = await public_key(kube, keys_namespace)
        for name, secret_values in values.items():
            await kube.create(
                channels_path(namespace), manifest(key, namespace, name, secret_values)
            )
        for name in values:
            await wait_ready(kube, namespace, name)
    exported_keys = "\n".join(
        line
        for line in cluster.kubectl(
            "get", "secret", SEALING_KEYS_SECRET, "-n", keys_namespace, "-o", "yaml"
        ).stdout.splitlines()
        if not line.startswith(BACKUP_DROPS)
    )
    exported_channels = channels_backup(cluster, namespace)

    # The wipe: nothing of the product is left in either namespace.
    for name in values:
        await kube.merge_patch(channels_path(namespace, name), {"metadata": {"finalizers": None}})
        await kube.delete(channels_path(namespace, name))
        with contextlib.suppress(NotFound):  # else the garbage collector's, as its owner went
            await kube.delete(core_path("secrets", namespace, f"whatsapp-{name}"))
    await kube.delete(core_path("secrets", keys_namespace, SEALING_KEYS_SECRET))
    await kube.delete(core_path("configmaps", keys_namespace, SEALING_PUBLIC_CONFIGMAP))
    await kube.delete(lease_path(keys_namespace, "whatsapp-channels-operator"))
    assert (await kube.get(channels_path(namespace)))["items"] == []

    cluster.kubectl("apply", "-f", "-", input=exported_keys)
    cluster.kubectl("apply", "-f", "-", input=exported_channels)
    with run_operator(cluster.kubeconfig, log_dir(cluster), **settings):
        for name, secret_values in values.items():
            await wait_ready(kube, namespace, name)
            secret = await get_secret(kube, namespace, name)
            assert secret is not None
            assert decoded(secret) == secret_values
        assert (await public_key(kube, keys_namespace)).key_id == key.key_id

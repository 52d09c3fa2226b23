"""Issue 25, item 1 against the real control plane: two operator processes on one namespace,
one Lease. Only the leader acts; SIGTERM hands the Lease over at once, SIGKILL within the
lease's duration and a retry; the Graph stand-in sees no duplicate call for any channel."""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

from channel_operator.leader import lease_path
from localkube import Cluster
from localkube.services import Service
from whatsapp_channel.kube import JSON, Kube, channels_path

from tests.operator.conftest import META_ENV
from tests.operator.test_operator_cluster import (
    credentials,
    manifest,
    phone_of,
    public_key,
    wait_ready,
)
from tests.support.graph import shared_standin
from tests.support.processes import log_dir, start_operator
from tests.support.waiting import eventually

LEASE = "whatsapp-channels-operator"


def operator(cluster: Cluster, namespace: str, **timing: Any) -> Service:
    return start_operator(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        **META_ENV,
        log_level="DEBUG",
        **timing,
    )


def log_of(service: Service) -> str:
    return service.log_path.read_text(errors="replace")


async def holder(kube: Kube, namespace: str) -> str:
    lease = await kube.get(lease_path(namespace, LEASE))
    return str(lease["spec"].get("holderIdentity") or "")


async def leading(kube: Kube, namespace: str, service: Service, timeout: float) -> float:
    """Wait until `service` holds the Lease; when it did (monotonic)."""

    async def probe() -> bool:
        return "leader election: leading as" in log_of(service) and bool(
            await holder(kube, namespace)
        )

    await eventually(probe, f"{service.name} (pid {service.pid}) leading", timeout=timeout)
    return time.monotonic()


async def new_channel(kube: Kube, namespace: str) -> tuple[str, JSON]:
    key = await public_key(kube, namespace)
    name = str(uuid.uuid4())
    await kube.create(channels_path(namespace), manifest(key, namespace, name, credentials()))
    return name, await wait_ready(kube, namespace, name)


def graph_calls(names: list[str]) -> dict[str, dict[str, int]]:
    return {name: shared_standin().calls_by_name(phone_of(name)) for name in names}


async def test_only_the_leader_acts_and_sigterm_hands_over_at_once(
    cluster: Cluster, crd: Any, meta_env: Any, namespace: str, kube: Kube
) -> None:
    # A lease long enough that a handover within it can only be the release on SIGTERM.
    timing = {"lease_duration_seconds": 60, "renew_deadline_seconds": 40}
    first = operator(cluster, namespace, **timing)
    second: Service | None = None
    try:
        await leading(kube, namespace, first, timeout=30)
        alone, _ = await new_channel(kube, namespace)
        one_reconcile = graph_calls([alone])[alone]
        assert one_reconcile, "the stand-in saw no call for a Ready channel"

        second = operator(cluster, namespace, **timing)  # live as a standby
        standby = second

        async def standing_by() -> bool:
            return "standing by" in log_of(standby)

        await eventually(standing_by, "the second standing by")
        names = [(await new_channel(kube, namespace))[0] for _ in range(3)]
        assert graph_calls(names) == {name: one_reconcile for name in names}
        standby_log = log_of(second)
        assert "Starting Kopf" not in standby_log, "the standby runs Kopf"
        assert "sealing keys" not in standby_log, "the standby started the operator's work"

        before = graph_calls([alone, *names])
        os.kill(first.pid, signal.SIGTERM)
        assert first.process.wait(timeout=60) == 0
        stopped = time.monotonic()
        assert "released Lease" in log_of(first)
        took_over = await leading(kube, namespace, second, timeout=60)
        assert took_over - stopped < timing["lease_duration_seconds"]

        later, _ = await new_channel(kube, namespace)
        assert graph_calls([later])[later] == one_reconcile
        assert graph_calls([alone, *names]) == before, "the new leader called Meta again"
    finally:
        first.stop()
        if second is not None:
            second.stop()


async def test_a_killed_leader_is_replaced_within_the_lease_and_a_retry(
    cluster: Cluster, crd: Any, meta_env: Any, namespace: str, kube: Kube
) -> None:
    first = operator(cluster, namespace)
    second: Service | None = None
    try:
        await leading(kube, namespace, first, timeout=30)
        second = operator(cluster, namespace)
        names = [(await new_channel(kube, namespace))[0] for _ in range(2)]
        first_holder = await holder(kube, namespace)
        before = graph_calls(names)

        first.kill()  # SIGKILL: no release, the Lease must lapse
        killed = time.monotonic()
        took_over = await leading(kube, namespace, second, timeout=90)
        assert await holder(kube, namespace) != first_holder
        # Lease 15 s and retry 2 s by default; the rest is polling and a loaded machine.
        assert took_over - killed < 15 + 2 + 15

        later, _ = await new_channel(kube, namespace)
        assert graph_calls([later])[later] == before[names[0]]
        assert graph_calls(names) == before, "the new leader called Meta again"
    finally:
        first.stop()
        if second is not None:
            second.stop()

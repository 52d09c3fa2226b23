"""The operator at scale, against the apiserver's own floor (issue 7). Run by hand:

    .venv/bin/python bench/operator_scale.py --sizes 100,1000,5000

For each N, in the same run on one fresh local control plane:
- baseline: a plain script doing only the writes a channel strictly needs (channel create,
  Secret create, one status update) for N channels at the same concurrency;
- operator: N sealed channels created at that concurrency while the real operator runs;
  time until all are Ready, create->Ready p50/p99, apiserver writes per channel (from the
  apiserver's own request counters), operator peak RSS (VmHWM);
- restart: the operator stopped and started with N Ready channels; time until caught up
  (a channel created after the restart is Ready and a channel changed while it was down is
  Ready at its new generation: both queue behind the N listed ones) and the writes it made
  beyond those two channels' own.
Ratios are printed against the baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from localkube import Cluster, product
from localkube.services import Service
from whatsapp_channel.kube import Kube, channels_path, core_path
from whatsapp_channel.model import (
    FINALIZER,
    READY,
    SEALING_PUBLIC_CONFIGMAP,
    ChannelSpec,
    SealedCredentials,
    channel_body,
    find_condition,
    set_condition,
)
from whatsapp_channel.reasons import CHANNEL_READY
from whatsapp_channel.sealing import PublicSealingKey, published_keys, seal
from whatsapp_channel.settings import LogLevel

REPO = Path(__file__).resolve().parents[1]
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE"}
COUNTED = {"whatsappchannels", "secrets", "events", "configmaps"}
_METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")


def writes(cluster: Cluster) -> dict[str, int]:
    """Writes the apiserver has served so far, per resource, from its own counters."""
    totals: dict[str, int] = {}
    for line in cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        match = _METRIC.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in COUNTED:
            resource = labels["resource"] + (
                "/" + labels["subresource"] if labels.get("subresource") else ""
            )
            totals[resource] = totals.get(resource, 0) + int(float(match["value"]))
    return totals


def delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bounded(n: int, concurrency: int, work: Callable[[int], Awaitable[None]]) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await work(i)

    await asyncio.gather(*(one(i) for i in range(n)))


def spec(instance: str, sealed: SealedCredentials) -> ChannelSpec:
    return ChannelSpec(
        instance_id=instance,
        phone_number_id=str(10**14 + int(instance.replace("-", "")[:12], 16) % 10**14),
        sealed=sealed,
    )


async def baseline(kube: Kube, namespace: str, n: int, concurrency: int) -> float:
    dummy = SealedCredentials(access_token="wa1:x:y", app_secret="wa1:x:y", verify_token="wa1:x:y")
    started = time.monotonic()

    async def one(_: int) -> None:
        name = str(uuid.uuid4())
        created = await kube.create(
            channels_path(namespace),
            channel_body(namespace=namespace, name=name, spec=spec(name, dummy)),
        )
        await kube.create(
            core_path("secrets", namespace),
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": f"whatsapp-{name}", "namespace": namespace},
                "data": {
                    k: base64.b64encode(b"value").decode()
                    for k in ("access_token", "app_secret", "verify_token")
                },
            },
        )
        generation = int(created["metadata"]["generation"])
        conditions = set_condition(
            [], READY, ok=True, reason=CHANNEL_READY, message="ok", generation=generation
        )
        await kube.merge_patch(
            channels_path(namespace, name, "status"),
            {"status": {"observedGeneration": generation, "conditions": conditions}},
        )

    await bounded(n, concurrency, one)
    return time.monotonic() - started


class ReadyWatch:
    """Records when each channel of a namespace is first seen Ready at its generation."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.ready_at: dict[tuple[str, int], float] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        listing = await self.kube.get(channels_path(self.namespace))
        self.task = asyncio.create_task(self._run(str(listing["metadata"]["resourceVersion"])))

    async def _run(self, version: str) -> None:
        while True:
            async for event in self.kube.watch(
                channels_path(self.namespace), resource_version=version
            ):
                obj = event.get("object") or {}
                version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                ready = find_condition((obj.get("status") or {}).get("conditions") or [], READY)
                generation = int(obj.get("metadata", {}).get("generation") or 0)
                if (
                    ready
                    and ready.get("status") == "True"
                    and ready.get("observedGeneration") == generation
                ):
                    self.ready_at.setdefault(
                        (obj["metadata"]["name"], generation), time.monotonic()
                    )

    async def wait(self, keys: set[tuple[str, int]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not keys <= self.ready_at.keys():
            if time.monotonic() > deadline:
                missing = len(keys - self.ready_at.keys())
                raise TimeoutError(f"{missing} channels not Ready after {timeout:.0f}s")
            await asyncio.sleep(0.05)

    def stop(self) -> None:
        if self.task:
            self.task.cancel()


def start_operator(
    cluster: Cluster, namespace: str, log_dir: Path, log_level: LogLevel = "WARNING"
) -> Service:
    return product.start_operator(
        cluster.kubeconfig,
        log_dir,
        namespace=namespace,
        webhook_base_url="https://hooks.example.com",
        log_level=log_level,
    )


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def public_key(kube: Kube, namespace: str) -> PublicSealingKey:
    data = (await kube.get(core_path("configmaps", namespace, SEALING_PUBLIC_CONFIGMAP)))["data"]
    return published_keys(data).active


def sealed_for(key: PublicSealingKey, namespace: str, name: str) -> SealedCredentials:
    values = {
        "accessToken": f"EAAG{name}",
        "appSecret": uuid.uuid4().hex,
        "verifyToken": uuid.uuid4().hex,
    }
    fields = {
        f: seal(key, namespace=namespace, name=name, field=f, value=v) for f, v in values.items()
    }
    return SealedCredentials.model_validate(fields)


async def run_size(
    cluster: Cluster, kube: Kube, n: int, concurrency: int, log_dir: Path
) -> dict[str, Any]:
    base_ns, op_ns = f"base-{n}", f"op-{n}"
    for ns in (base_ns, op_ns):
        cluster.kubectl("create", "namespace", ns)

    before = writes(cluster)
    base_time = await baseline(kube, base_ns, n, concurrency)
    base_writes = delta(writes(cluster), before)

    operator = start_operator(cluster, op_ns, log_dir)
    key = await public_key(kube, op_ns)
    names = [str(uuid.uuid4()) for _ in range(n)]
    bodies = [
        # Created as the facade creates them: sealed, born with the operator's finalizer.
        channel_body(
            namespace=op_ns,
            name=m,
            spec=spec(m, sealed_for(key, op_ns, m)),
            finalizers=(FINALIZER,),
        )
        for m in names
    ]
    watch = ReadyWatch(kube, op_ns)
    await watch.start()
    sent: dict[str, float] = {}
    before = writes(cluster)
    started = time.monotonic()

    async def create(i: int) -> None:
        sent[names[i]] = time.monotonic()
        await kube.create(channels_path(op_ns), bodies[i])

    await bounded(n, concurrency, create)
    await watch.wait({(m, 1) for m in names}, timeout=max(120.0, n * 0.2))
    op_time = max(watch.ready_at[(m, 1)] for m in names) - started
    latencies = [watch.ready_at[(m, 1)] - sent[m] for m in names]
    await asyncio.sleep(2)  # let stragglers (if any) show in the counters
    op_writes = delta(writes(cluster), before)
    rss = peak_rss_mb(operator.pid)

    # Restart: stop, change one channel while down, start, add one. Caught up: Kopf has logged
    # a processed resume for each unchanged channel, and both tracers are Ready.
    operator.stop()
    changed = names[0]
    await kube.merge_patch(channels_path(op_ns, changed), {"spec": {"enabled": False}})
    sentinel = str(uuid.uuid4())
    before = writes(cluster)
    restarted_at = time.monotonic()
    operator = start_operator(cluster, op_ns, log_dir, log_level="INFO")
    await kube.create(
        channels_path(op_ns),
        channel_body(
            namespace=op_ns,
            name=sentinel,
            spec=spec(sentinel, sealed_for(key, op_ns, sentinel)),
            finalizers=(FINALIZER,),
        ),
    )
    await watch.wait({(changed, 2), (sentinel, 1)}, timeout=300)
    while operator.log_path.read_text().count("Resuming is processed") < n - 1:
        if time.monotonic() - restarted_at > 300:
            raise TimeoutError("the restarted operator did not resume every channel in 300 s")
        await asyncio.sleep(0.05)
    caught_up = time.monotonic() - restarted_at
    await asyncio.sleep(5)  # late resume writes would show here
    restart_writes = delta(writes(cluster), before)
    operator.stop()
    watch.stop()
    # The two tracer channels' own writes: the sentinel costs what any new channel costs;
    # the changed one a Secret update and a status patch.
    per_channel = sum(op_writes.values()) / n
    tracer = round(per_channel) + 2
    return {
        "n": n,
        "baseline_s": base_time,
        "baseline_writes_per_channel": sum(base_writes.values()) / n,
        "operator_s": op_time,
        "ratio": op_time / base_time,
        "p50_s": statistics.median(latencies),
        "p99_s": pct(latencies, 0.99),
        "writes_per_channel": per_channel,
        "writes": op_writes,
        "peak_rss_mb": rss,
        "restart_caught_up_s": caught_up,
        "restart_writes": restart_writes,
        "restart_writes_beyond_tracers": max(0, sum(restart_writes.values()) - tracer),
    }


async def main_async(sizes: list[int], concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        cluster = Cluster.start(Path(tmp) / "cluster")
        try:
            cluster.kubectl("apply", "-f", str(REPO / "crds" / "whatsappchannels.yaml"))
            cluster.kubectl(
                "wait", "--for=condition=Established", "crd/whatsappchannels.whatsapp.hydracore.io"
            )
            cluster.wait_until_served("whatsappchannels", "default")
            kube = Kube.connect(
                str(cluster.kubeconfig),
                user_agent="operator-bench",
                max_concurrency=concurrency,
                timeout=60,
            )
            # Warm the apiserver (CRD storage, watch caches, connections) before measuring.
            cluster.kubectl("create", "namespace", "warm-up")
            await baseline(kube, "warm-up", 50, concurrency)
            results = []
            for n in sizes:
                result = await run_size(cluster, kube, n, concurrency, Path(tmp))
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
            await kube.close()
        finally:
            cluster.stop()
    print(f"machine: {os.cpu_count()} cores; concurrency {concurrency}")
    print(
        "| N | baseline | operator | ratio | p50 | p99 | writes/channel (baseline) "
        "| peak RSS | restart caught up | restart writes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['n']} | {r['baseline_s']:.1f} s | {r['operator_s']:.1f} s "
            f"| **{r['ratio']:.2f}** | "
            f"{r['p50_s']:.2f} s | {r['p99_s']:.2f} s | {r['writes_per_channel']:.2f} "
            f"({r['baseline_writes_per_channel']:.2f}) | {r['peak_rss_mb']:.0f} MB | "
            f"{r['restart_caught_up_s']:.1f} s | {r['restart_writes_beyond_tracers']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="100,1000", help="comma-separated N (default %(default)s)"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(main_async([int(s) for s in args.sizes.split(",")], args.concurrency))


if __name__ == "__main__":
    main()

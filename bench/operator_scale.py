"""The operator at scale, against floors measured in the same run (issues 7 and 11). By hand:

    .venv/bin/python bench/operator_scale.py --sizes 100,1000,5000

For each N, in the same run on one fresh local control plane:
- baseline (writes only): a plain script doing only the writes a channel strictly needs
  (channel create, Secret create, one status update) with small bodies, at the same
  concurrency; issue 7's yardstick;
- floor (writes + Meta): a plain script doing what a Ready channel strictly needs now that
  Ready means "Meta accepts it" (issue 11): the same writes with the operator's own bodies,
  unsealing, the six Graph calls against the same stand-in with Meta's challenge answered
  by a real receiver, pipelined as the operator is (see `baseline_meta`);
- operator: N sealed channels created at that concurrency while the real operator runs;
  time until all are Ready, create->Ready p50/p99, apiserver writes per channel (from the
  apiserver's own request counters), Graph calls per channel (target 6: check, the account's
  numbers and debug_token once per token (issue 19; without waba_id also /app once per token),
  the subscription read and subscribe once per app and account (each bench channel is an app
  of its own), override), operator peak RSS (VmHWM);
- restart: the operator stopped and started with N Ready channels; time until caught up
  (a channel created after the restart is Ready and a channel changed while it was down is
  Ready at its new generation: both queue behind the N listed ones), the writes and the
  Graph calls it made beyond those two channels' own (target 0: nothing before the health
  period);
- health: the operator started with a short health period; the Graph calls per channel and
  period once the schedule is steady (target 1).

Meta is the Graph API stand-in (`whatsapp-graph-standin`, a process of its own, seeded with
every channel's number) on the same 2 cores, as is the receiver.
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
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from channel_launcher import product
from channel_operator.channel_at_meta import OWNED_BY_OPERATOR, app_of, can_send, facts, token_facts
from channel_operator.desired import (
    ChannelRef,
    MetaReport,
    build_secret,
    build_status,
    open_seals,
)
from channel_operator.graph import GraphClient, GraphCredentials, GraphError, GraphErrorKind
from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import Service, script, start_service
from whatsapp_channel.kube import Kube, channels_path, core_path, reflect
from whatsapp_channel.model import (
    FINALIZER,
    READY,
    SEALING_PUBLIC_CONFIGMAP,
    ChannelSpec,
    SealedCredentials,
    channel_body,
    find_condition,
    set_condition,
    webhook_url,
)
from whatsapp_channel.reasons import CHANNEL_READY, CREDENTIALS_ACCEPTED, OVERRIDE_REGISTERED
from whatsapp_channel.sealing import (
    PublicSealingKey,
    new_private_key,
    public_key_of,
    published_keys,
    seal,
)
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


WABA_ID = "102290129340398"


def phone_of(instance: str) -> str:
    return str(10**14 + int(instance.replace("-", "")[:12], 16) % 10**14)


def spec(instance: str, sealed: SealedCredentials) -> ChannelSpec:
    return ChannelSpec(
        instance_id=instance, phone_number_id=phone_of(instance), waba_id=WABA_ID, sealed=sealed
    )


def values_of(name: str) -> dict[str, str]:
    """A channel's credentials, derived from its name (the stand-in is seeded with them)."""
    return {
        "accessToken": f"EAAG{name.replace('-', '')}",
        "appSecret": f"secret{name.replace('-', '')}",
        "verifyToken": f"verify{name.replace('-', '')}",
    }


class Graph:
    """The Graph stand-in as a process of its own, seeded with the bench's channels."""

    def __init__(self, folder: Path, names: list[str]) -> None:
        seed = folder / "graph-numbers.json"
        seed.write_text(
            json.dumps(
                [
                    {
                        "phone_number_id": phone_of(name),
                        "waba_id": WABA_ID,
                        "access_token": values_of(name)["accessToken"],
                        "app_secret": values_of(name)["appSecret"],
                    }
                    for name in names
                ]
            )
        )
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.service = start_service(
            "whatsapp-graph-standin",
            [script("whatsapp-graph-standin"), "serve", f"--port={port}", f"--seed={seed}",
             "--log-level=WARNING"],
            env={},
            log_path=folder / f"graph-standin-{port}.log",
            url=self.url,
            health_url=f"{self.url}/_standin/stats",
            timeout=120,
        )  # fmt: skip

    def calls(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/_standin/stats", timeout=30) as answer:  # noqa: S310 - loopback
            stats: dict[str, int] = json.loads(answer.read())["calls"]
        return stats


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


async def baseline_meta(
    kube: Kube,
    graph_url: str,
    receiver_url: str,
    namespace: str,
    names: list[str],
    concurrency: int,
) -> float:
    """The floor of a channel that asks Meta: a plain script (no Kopf, no status diffing,
    no caches) doing only what a Ready channel strictly needs, with the operator's own
    bodies and the same pipelining. Channels are created at `concurrency`, as the operator
    run creates them; each created channel is then finished by a task of its own (the
    operator's workers): unseal, create the Secret, the Graph check and subscribe, wait
    until a watch on the Secrets has delivered it (then the receiver has it too), the
    override (Meta's challenge answered by a real receiver), one status update with the
    conditions and facts the operator writes. The Graph stand-in is seeded with `names`."""
    key_id, private = new_private_key()
    key = public_key_of(private)
    graph = GraphClient(graph_url, timeout=60)
    delivered: dict[str, asyncio.Event] = {}

    def seen(name: str) -> asyncio.Event:
        return delivered.setdefault(name, asyncio.Event())

    def on_secret(kind: str, obj: dict[str, Any]) -> None:
        if kind in ("ADDED", "MODIFIED"):
            seen(str(obj["metadata"]["name"])).set()

    synced = asyncio.Event()
    watching = asyncio.create_task(
        reflect(kube, core_path("secrets", namespace), on_secret, on_synced=synced.set)
    )
    await synced.wait()
    finishing: list[asyncio.Task[None]] = []

    async def finish(created: dict[str, Any]) -> None:
        ref = ChannelRef.from_body(created)
        channel = ChannelSpec.model_validate(created["spec"])
        assert channel.sealed is not None
        credentials = open_seals({key_id: private}, ref, channel.sealed)
        await kube.create(
            core_path("secrets", namespace),
            build_secret(ref, channel, credentials, webhook_mode="managed"),
        )
        asked = GraphCredentials(credentials.access_token, credentials.app_secret)
        check = await graph.check_phone_number(channel.phone_number_id, asked)
        # Issue 19: the given account is checked to hold the number (once per token).
        await graph.phone_number_ids(WABA_ID, asked)
        token = await graph.debug_token(asked, app_of(check) or "")  # the token, once a day
        # Issue 19: read the subscription first, subscribe only when the app is not there.
        await graph.subscribed_apps(WABA_ID, asked)
        await graph.subscribe_app(WABA_ID, asked)
        await asyncio.wait_for(seen(ref.secret_name).wait(), timeout=60)
        url = webhook_url(receiver_url, ref.name)
        for delay in (0.2, 0.5, 1.0, 2.0, None):  # the operator's waits, if the receiver lags
            try:
                await graph.set_webhook_override(
                    channel.phone_number_id, asked, url, credentials.verify_token
                )
                break
            except GraphError as error:
                if error.kind is not GraphErrorKind.CALLBACK_VERIFICATION_FAILED or delay is None:
                    raise
                await asyncio.sleep(delay)
        report = MetaReport(
            credentials=(True, CREDENTIALS_ACCEPTED, "Meta accepts the token and app secret"),
            webhook=(True, OVERRIDE_REGISTERED, f"Meta delivers the number's events to {url}"),
            can_send=can_send(check.health_status, credentials, check.status),
            facts={
                **facts(check, WABA_ID, app_of(check), OWNED_BY_OPERATOR),
                **token_facts(token),
            },
        )
        status = build_status(
            {}, ref, webhook_base_url=receiver_url, enabled=True, failure=None, meta=report
        )
        await kube.merge_patch(channels_path(namespace, ref.name, "status"), {"status": status})

    started = time.monotonic()

    async def create(i: int) -> None:
        name = names[i]
        body = channel_body(
            namespace=namespace,
            name=name,
            spec=spec(name, sealed_for(key, namespace, name)),
            finalizers=(FINALIZER,),
        )
        finishing.append(
            asyncio.create_task(finish(await kube.create(channels_path(namespace), body)))
        )

    await bounded(len(names), concurrency, create)
    await asyncio.gather(*finishing)
    elapsed = time.monotonic() - started
    watching.cancel()
    await graph.close()
    return elapsed


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
    cluster: Cluster,
    namespace: str,
    log_dir: Path,
    graph_url: str,
    webhook_base_url: str,
    log_level: LogLevel = "WARNING",
) -> Service:
    return product.start_operator(
        cluster.kubeconfig,
        log_dir,
        namespace=namespace,
        webhook_base_url=webhook_base_url,
        graph_base_url=graph_url,
        log_level=log_level,
    )


def start_receiver(cluster: Cluster, namespace: str, log_dir: Path) -> Service:
    secret = log_dir / f"forward-secret-{namespace}"
    secret.write_text(uuid.uuid4().hex)
    return product.start_receiver(
        cluster.kubeconfig,
        log_dir,
        namespace=namespace,
        forward_url_template="http://127.0.0.1:9/{instance_id}",
        forward_secret_file=secret,
        log_level="WARNING",
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
    values = values_of(name)
    fields = {
        f: seal(key, namespace=namespace, name=name, field=f, value=v) for f, v in values.items()
    }
    return SealedCredentials.model_validate(fields)


async def health_calls(
    cluster: Cluster, namespace: str, log_dir: Path, graph: Graph, receiver_url: str, period: float
) -> dict[str, int]:
    """The Graph calls of the health schedule: the operator started with a health period of
    `period` seconds; after one period (every channel checked at least once since the start,
    the catch-up over), the calls of the next two periods are counted. Empty if period is 0."""
    if period <= 0:
        return {}
    operator = product.start_operator(
        cluster.kubeconfig,
        log_dir,
        namespace=namespace,
        webhook_base_url=receiver_url,
        graph_base_url=graph.url,
        log_level="WARNING",
        health_period_seconds=period,
    )
    try:
        await asyncio.sleep(period)
        before = graph.calls()
        await asyncio.sleep(2 * period)
        return delta(graph.calls(), before)
    finally:
        operator.stop()


async def run_size(
    cluster: Cluster,
    kube: Kube,
    n: int,
    concurrency: int,
    log_dir: Path,
    health_period: float,
) -> dict[str, Any]:
    base_ns, floor_ns, op_ns = f"base-{n}", f"floor-{n}", f"op-{n}"
    for ns in (base_ns, floor_ns, op_ns):
        cluster.kubectl("create", "namespace", ns)

    before = writes(cluster)
    base_time = await baseline(kube, base_ns, n, concurrency)
    base_writes = delta(writes(cluster), before)

    floor_names = [str(uuid.uuid4()) for _ in range(n)]
    names = [str(uuid.uuid4()) for _ in range(n)]
    sentinel = str(uuid.uuid4())
    graph = Graph(log_dir, [*floor_names, *names, sentinel])
    floor_receiver = start_receiver(cluster, floor_ns, log_dir)
    before = writes(cluster)
    graph_before = graph.calls()
    floor_time = await baseline_meta(
        kube, graph.url, floor_receiver.url, floor_ns, floor_names, concurrency
    )
    await asyncio.sleep(2)  # the floor's receiver writes lastChallengeAt after a tick
    floor_writes = delta(writes(cluster), before)
    floor_graph = delta(graph.calls(), graph_before)
    floor_receiver.stop()

    receiver = start_receiver(cluster, op_ns, log_dir)
    operator = start_operator(cluster, op_ns, log_dir, graph.url, receiver.url)
    key = await public_key(kube, op_ns)
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
    graph_before = graph.calls()
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
    graph_create = delta(graph.calls(), graph_before)
    rss = peak_rss_mb(operator.pid)

    # Restart: stop, change one channel while down, start, add one. Caught up: Kopf has logged
    # a processed resume for each unchanged channel, and both tracers are Ready.
    operator.stop()
    changed = names[0]
    await kube.merge_patch(channels_path(op_ns, changed), {"spec": {"enabled": False}})
    before = writes(cluster)
    graph_before = graph.calls()
    restarted_at = time.monotonic()
    operator = start_operator(cluster, op_ns, log_dir, graph.url, receiver.url, log_level="INFO")
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
    graph_restart = delta(graph.calls(), graph_before)
    operator.stop()
    health = await health_calls(cluster, op_ns, log_dir, graph, receiver.url, health_period)
    receiver.stop()
    graph.service.stop()
    watch.stop()
    # The two tracer channels' own writes: the sentinel costs what any new channel costs;
    # the changed one a Secret update and a status patch.
    per_channel = sum(op_writes.values()) / n
    tracer = round(per_channel) + 2
    return {
        "n": n,
        "baseline_s": base_time,
        "baseline_writes_per_channel": sum(base_writes.values()) / n,
        "floor_s": floor_time,
        "floor_ratio": op_time / floor_time,
        "floor_writes_per_channel": sum(floor_writes.values()) / n,
        "floor_graph_calls_per_channel": sum(floor_graph.values()) / n,
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
        "graph_calls": graph_create,
        "graph_calls_per_channel": sum(graph_create.values()) / n,
        "restart_graph_calls": graph_restart,
        # The sentinel's own calls are a new channel's (6); the disabled channel asks nothing.
        "restart_graph_calls_beyond_tracers": max(0, sum(graph_restart.values()) - 6),
        "health_period_s": health_period,
        "health_calls": health,
        # Two periods counted; the disabled tracer is not checked, the sentinel is.
        "health_calls_per_channel_period": sum(health.values()) / n / 2 if health else None,
    }


async def main_async(sizes: list[int], concurrency: int, health_period: float) -> None:
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
                result = await run_size(cluster, kube, n, concurrency, Path(tmp), health_period)
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
            await kube.close()
        finally:
            cluster.stop()
    print(f"machine: {os.cpu_count()} cores; concurrency {concurrency}")
    print(
        "| N | baseline: writes only | floor: writes + Meta | operator "
        "| ratio to writes only | ratio to floor | create->Ready p50 | p99 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['n']} | {r['baseline_s']:.1f} s | {r['floor_s']:.1f} s "
            f"| {r['operator_s']:.1f} s | {r['ratio']:.2f} | **{r['floor_ratio']:.2f}** "
            f"| {r['p50_s']:.2f} s | {r['p99_s']:.2f} s |"
        )
    print()
    print(
        "| N | writes/channel (writes only; floor) | Graph calls/channel (floor) | peak RSS "
        "| restart: caught up | restart: writes | restart: Graph calls "
        "| Graph calls/channel/health period |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['n']} | {r['writes_per_channel']:.2f} ({r['baseline_writes_per_channel']:.2f}; "
            f"{r['floor_writes_per_channel']:.2f}) | {r['graph_calls_per_channel']:.2f} "
            f"({r['floor_graph_calls_per_channel']:.2f}) | {r['peak_rss_mb']:.0f} MB "
            f"| {r['restart_caught_up_s']:.1f} s | {r['restart_writes_beyond_tracers']} "
            f"| {r['restart_graph_calls_beyond_tracers']} | {health_text(r)} |"
        )


def health_text(r: dict[str, Any]) -> str:
    per = r["health_calls_per_channel_period"]
    return "-" if per is None else f"{per:.2f} ({r['health_period_s']:.0f} s period)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="100,1000", help="comma-separated N (default %(default)s)"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--health-period",
        type=float,
        default=20.0,
        help="seconds; the health schedule is measured over 3 such periods (0: skipped)",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    asyncio.run(main_async(sizes, args.concurrency, args.health_period))


if __name__ == "__main__":
    main()

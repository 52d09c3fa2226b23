"""The operator at scale, against floors measured in the same run (issues 7, 11 and 25). By
hand (progress lines on stderr, the tables on stdout):

    .venv/bin/python bench/operator_scale.py --sizes 100,1000,5000
    .venv/bin/python bench/operator_scale.py --sizes 50000 --no-floors   # issue 25 item 4

For each N, in the same run on one fresh local control plane:
- baseline (writes only): a plain script doing only the writes a channel strictly needs
  (channel create, Secret create, one status update) with small bodies, at the same
  concurrency; issue 7's yardstick;
- floor (writes + Meta): a plain script doing what a Ready channel strictly needs now that
  Ready means "Meta accepts it" (issue 11): the same writes with the operator's own bodies,
  unsealing, the Graph calls against the same stand-in with Meta's challenge answered
  by a real receiver, pipelined as the operator is (see `baseline_meta`);
  (--no-floors skips both: each creates N channels of its own);
- operator: N sealed channels created at that concurrency while the real operator runs;
  time until all are Ready, create->Ready p50/p99, apiserver writes per channel (from the
  apiserver's own request counters) and its own latency for them, Graph calls per channel
  (target 6: check, the account's numbers and debug_token once per token (issue 19; without
  waba_id also /app once per token), the subscription read and subscribe once per app and
  account (each bench channel is an app and an account of its own), override), operator peak
  RSS (VmHWM), CPU per process (who bounds the run on 2 cores), the receiver's RSS before
  and with the N channels in its cache;
- restart: the operator stopped and started with N Ready channels; time until caught up
  (a channel created after the restart is Ready and a channel changed while it was down is
  Ready at its new generation: both queue behind the N listed ones), the writes and the
  Graph calls it made beyond those two channels' own (target 0: nothing before the health
  period), its peak RSS;
- GET: one channel through the facade against the same GET straight to the apiserver, p99
  one at a time and 8 in flight, the facade's RSS, the apiserver's own GET latency;
- health: the operator started with a short health period, so every channel is due at once;
  once it resumed them, the checks a second it serves (its capacity, against the N / 3600
  a second the default period of 1 h asks) and any call refused for a used-up account
  budget (the operator's own, or Meta's: the stand-in answers 80007 past 200 calls an hour
  per app and account);
- etcd's database size (its own metric), the apiserver's and etcd's RSS.

Meta is the Graph API stand-in (`whatsapp-graph-standin`, a process of its own, seeded with
every channel's number) on the same 2 cores, as is the receiver.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
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

import aiohttp
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
from facade_bench import Direct, ThroughFacade, measure
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
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def scrape(url_or_cluster: Cluster | str) -> list[str]:
    """The lines of a /metrics page: the apiserver's (a Cluster) or a plain http URL's."""
    if isinstance(url_or_cluster, Cluster):
        return url_or_cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines()
    with urllib.request.urlopen(url_or_cluster, timeout=30) as answer:  # noqa: S310 - loopback
        return str(answer.read().decode()).splitlines()


def samples(lines: list[str], name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of metric `name` (exact), with their labels."""
    found = []
    for line in lines:
        if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
            head, _, value = line.rpartition(" ")
            labels = dict(_LABEL.findall(head[len(name) :]))
            found.append((labels, float(value)))
    return found


def writes(cluster: Cluster) -> dict[str, int]:
    """Writes the apiserver has served so far, per resource, from its own counters."""
    totals: dict[str, int] = {}
    for labels, value in samples(scrape(cluster), "apiserver_request_total"):
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in COUNTED:
            resource = labels["resource"] + (
                "/" + labels["subresource"] if labels.get("subresource") else ""
            )
            totals[resource] = totals.get(resource, 0) + int(value)
    return totals


Buckets = dict[tuple[str, str], dict[float, float]]


def request_buckets(cluster: Cluster) -> Buckets:
    """The apiserver's own request latency histogram for WhatsAppChannels and Secrets, per
    (verb, resource[/subresource]): cumulative counts by upper bound."""
    totals: Buckets = {}
    for labels, value in samples(scrape(cluster), "apiserver_request_duration_seconds_bucket"):
        if labels.get("resource") not in ("whatsappchannels", "secrets"):
            continue
        sub = labels.get("subresource")
        key = (labels["verb"], labels["resource"] + (f"/{sub}" if sub else ""))
        bound = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
        bucket = totals.setdefault(key, {})
        bucket[bound] = bucket.get(bound, 0.0) + value
    return totals


def request_p99(after: Buckets, before: Buckets) -> dict[str, str]:
    """Per verb and resource served between the two scrapes: count and the p99's bucket
    (the apiserver's histogram says only "at most this"), e.g. {"POST whatsappchannels":
    "5000 requests, p99 <= 0.1 s"}."""
    found = {}
    for key, bucket in after.items():
        old = before.get(key, {})
        counts = sorted((bound, n - old.get(bound, 0.0)) for bound, n in bucket.items())
        total = counts[-1][1]
        if total < 10:
            continue
        bound = next(b for b, n in counts if n >= 0.99 * total)
        found[" ".join(key)] = f"{total:.0f} requests, p99 <= {bound:g} s"
    return found


def etcd_db_mb(cluster: Cluster) -> float:
    """etcd's own figure for its database file (etcd_mvcc_db_total_size_in_bytes)."""
    lines = scrape(f"http://127.0.0.1:{cluster.ports['etcd']}/metrics")
    return samples(lines, "etcd_mvcc_db_total_size_in_bytes")[0][1] / 2**20


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_share(after: dict[str, float], before: dict[str, float], wall: float) -> dict[str, str]:
    """CPU per process over a phase, in cores (2 is the whole machine)."""
    return {k: f"{(after[k] - before[k]) / wall:.2f} cores" for k in after}


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


def phone_of(instance: str) -> str:
    return str(10**14 + int(instance.replace("-", "")[:12], 16) % 10**14)


def waba_of(instance: str) -> str:
    """Each channel's business account of its own, as most tenants have: one account holding
    every bench number would make each channel's check of its account's numbers (issue 19)
    page through all N of them."""
    return str(2 * 10**14 + int(instance.replace("-", "")[-12:], 16) % 10**14)


def spec(instance: str, sealed: SealedCredentials) -> ChannelSpec:
    return ChannelSpec(
        instance_id=instance,
        phone_number_id=phone_of(instance),
        waba_id=waba_of(instance),
        sealed=sealed,
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
                        "waba_id": waba_of(name),
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
             "--log-level=WARNING", "--account-call-limit=200"],
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
        await graph.phone_number_ids(waba_of(ref.name), asked)
        token = await graph.debug_token(asked, app_of(check) or "")  # the token, once a day
        # Issue 19: read the subscription first, subscribe only when the app is not there.
        await graph.subscribed_apps(waba_of(ref.name), asked)
        await graph.subscribe_app(waba_of(ref.name), asked)
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
                **facts(check, waba_of(ref.name), app_of(check), OWNED_BY_OPERATOR),
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

    async def wait(
        self, keys: set[tuple[str, int]], timeout: float, operator: Service | None = None
    ) -> None:
        deadline = time.monotonic() + timeout
        while not keys <= self.ready_at.keys():
            if operator is not None and not operator.alive():
                raise RuntimeError(f"the operator exited: {operator.log_tail(3)}")
            if time.monotonic() > deadline:
                missing = len(keys - self.ready_at.keys())
                raise TimeoutError(f"{missing} channels not Ready after {timeout:.0f}s")
            await asyncio.sleep(0.5)

    def stop(self) -> None:
        if self.task:
            self.task.cancel()


# The operator's Lease (seconds; renew deadline two thirds of it, retry 2 s): client-go's 15
# unless --lease-seconds says otherwise (an apiserver that takes seconds to answer a Lease
# write on an overloaded machine makes a leader give up, as it should: docs/benchmarks.md).
LEASE_SECONDS = [15.0]


def start_operator(
    cluster: Cluster,
    namespace: str,
    log_dir: Path,
    graph_url: str,
    webhook_base_url: str,
    log_level: LogLevel = "WARNING",
    health_period: float | None = None,
    metrics_port: int | None = None,
) -> Service:
    lease = LEASE_SECONDS[0]
    return product.start_operator(
        cluster.kubeconfig,
        log_dir,
        namespace=namespace,
        webhook_base_url=webhook_base_url,
        graph_base_url=graph_url,
        log_level=log_level,
        health_period_seconds=health_period,
        watch_initial_streaming=True,  # what an installation of this size turns on
        metrics_port=metrics_port,
        lease_duration_seconds=lease,
        renew_deadline_seconds=lease * 2 / 3,
        retry_period_seconds=2.0,
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


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """A process's peak (VmHWM) or current (VmRSS) resident memory."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


STARTED = time.monotonic()


def progress(n: int, message: str) -> None:
    """One line on stderr: the run is long at 50,000 channels."""
    print(
        f"[{time.monotonic() - STARTED:7.1f} s] N={n}: {message} "
        f"(machine: {free_gb():.1f} GB available)",
        file=sys.stderr,
        flush=True,
    )


async def public_key(kube: Kube, namespace: str) -> PublicSealingKey:
    data = (await kube.get(core_path("configmaps", namespace, SEALING_PUBLIC_CONFIGMAP)))["data"]
    return published_keys(data).active


def sealed_for(key: PublicSealingKey, namespace: str, name: str) -> SealedCredentials:
    values = values_of(name)
    fields = {
        f: seal(key, namespace=namespace, name=name, field=f, value=v) for f, v in values.items()
    }
    return SealedCredentials.model_validate(fields)


class LogCount:
    """Lines containing `text` in a growing log, read incrementally (re-reading a log of
    50,000 resumes many times a second would steal the operator's CPU)."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text.encode()
        self.offset, self.count, self._rest = 0, 0, b""

    def __call__(self) -> int:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            chunk = self._rest + log.read()
        self.offset += len(chunk) - len(self._rest)
        complete, _, self._rest = chunk.rpartition(b"\n")
        self.count += complete.count(self.text)
        return self.count


async def resumed(operator: Service, n: int, since: float, timeout: float) -> float:
    """Seconds since `since` until the operator has logged a processed resume for n channels."""
    count = LogCount(operator.log_path, "Resuming is processed")
    said = time.monotonic()
    while count() < n:
        if not operator.alive():
            raise RuntimeError(f"the operator exited: {operator.log_tail(3)}")
        if time.monotonic() - since > timeout:
            raise TimeoutError(f"the operator resumed {count.count} of {n} in {timeout:.0f} s")
        if time.monotonic() - said > 15:
            said = time.monotonic()
            progress(
                n, f"resumed {count.count}; operator RSS {rss_mb(operator.pid, 'VmRSS'):.0f} MB"
            )
        await asyncio.sleep(0.5)
    return time.monotonic() - since


async def health_calls(
    cluster: Cluster,
    namespace: str,
    log_dir: Path,
    graph: Graph,
    receiver_url: str,
    period: float,
    n: int,
) -> dict[str, Any]:
    """The health schedule's throughput: the operator started with a health period of
    `period` seconds (every channel is due at once: each was last checked longer ago);
    once it has resumed every channel, the Graph calls of the next max(2 periods, 30 s)
    are counted, with the calls the operator refused itself for a used-up account budget
    and the answers Meta's per-account limit refused (the stand-in enforces 200 an hour per
    app and account). Empty if period is 0."""
    if period <= 0:
        return {}
    metrics_port = free_port()
    started = time.monotonic()
    operator = start_operator(
        cluster,
        namespace,
        log_dir,
        graph.url,
        receiver_url,
        log_level="INFO",
        health_period=period,
        metrics_port=metrics_port,
    )
    try:
        await resumed(operator, n - 1, started, timeout=max(300.0, n * 0.02))
        progress(n, "health: resumed; counting checks")
        window = max(2 * period, 30.0)
        before = graph.calls()
        await asyncio.sleep(window)
        calls = delta(graph.calls(), before)
        refused = {
            f"{labels['call']} {labels['outcome']}": int(value)
            for labels, value in samples(
                scrape(f"http://127.0.0.1:{metrics_port}/metrics"),
                "whatsapp_operator_graph_calls_total",
            )
            if labels.get("outcome") != "ok" and value
        }
        checks = calls.get("check", sum(calls.values()))
        return {
            "calls": calls,
            "window_s": window,
            "checks_per_s": checks / window,
            "demanded_per_s": n / period,
            "default_demand_per_s": n / 3600,
            "not_ok": refused,
        }
    finally:
        operator.stop()


async def facade_gets(
    cluster: Cluster, kube: Kube, namespace: str, log_dir: Path, names: list[str], requests: int
) -> dict[str, Any]:
    """GET of one channel through the facade against the same GET made directly against the
    apiserver, alternating, 3 rounds: one request at a time and 8 in flight; the median p99
    of the rounds, the facade's memory, the apiserver's own latency for those GETs."""
    keys_file = log_dir / f"api-keys-{namespace}"
    api_key = uuid.uuid4().hex
    keys_file.write_text(f"bench {api_key}\n")
    facade = product.start_facade(
        cluster.kubeconfig,
        log_dir,
        namespace=namespace,
        api_keys_file=keys_file,
        log_level="WARNING",
    )
    ids = random.Random(7).sample(names, min(len(names), 1000))
    before = request_buckets(cluster)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=12)) as session:
            through = ThroughFacade(session, facade.url, api_key, ids)
            direct = Direct(kube, namespace, await public_key(kube, namespace), ids)
            targets = {"direct": direct.get, "facade": through.get}
            for call in targets.values():
                await measure(call, 50, 2)  # warm connections
            p99: dict[tuple[str, int], list[float]] = {}
            failures = 0
            for round_ in range(3):
                for name, call in sorted(targets.items(), reverse=bool(round_ % 2)):
                    for connections in (1, 8):
                        result = await measure(call, requests, connections)
                        p99.setdefault((name, connections), []).append(result.percentile(0.99))
                        failures += result.failures
        facade_rss = rss_mb(facade.pid, "VmRSS")
    finally:
        facade.stop()
    found: dict[str, Any] = {
        f"{name}_p99_ms_{c}": statistics.median(v) for (name, c), v in sorted(p99.items())
    }
    found["failures"] = failures
    found["facade_rss_mb"] = facade_rss
    found["apiserver"] = request_p99(request_buckets(cluster), before)
    return found


def pids_of(cluster: Cluster, **services: Service) -> dict[str, int]:
    return {
        "etcd": cluster.pids["etcd"],
        "apiserver": cluster.pids["kube-apiserver"],
        **{name: service.pid for name, service in services.items()},
        "bench": os.getpid(),
    }


async def run_size(
    cluster: Cluster,
    kube: Kube,
    n: int,
    concurrency: int,
    log_dir: Path,
    health_period: float,
    floors: bool,
) -> dict[str, Any]:
    base_ns, floor_ns, op_ns = f"base-{n}", f"floor-{n}", f"op-{n}"
    for ns in (base_ns, floor_ns, op_ns):
        cluster.kubectl("create", "namespace", ns)

    floor_names = [str(uuid.uuid4()) for _ in range(n if floors else 0)]
    names = [str(uuid.uuid4()) for _ in range(n)]
    sentinel = str(uuid.uuid4())
    graph = Graph(log_dir, [*floor_names, *names, sentinel])
    floor: dict[str, Any] = {}
    if floors:
        progress(n, "baseline (writes only)")
        before = writes(cluster)
        base_time = await baseline(kube, base_ns, n, concurrency)
        base_writes = delta(writes(cluster), before)
        progress(n, f"baseline {base_time:.1f} s; floor (writes + Meta)")
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
        progress(n, f"floor {floor_time:.1f} s")
        floor = {
            "baseline_s": base_time,
            "baseline_writes_per_channel": sum(base_writes.values()) / n,
            "floor_s": floor_time,
            "floor_writes_per_channel": sum(floor_writes.values()) / n,
            "floor_graph_calls_per_channel": sum(floor_graph.values()) / n,
        }

    receiver = start_receiver(cluster, op_ns, log_dir)
    operator = start_operator(cluster, op_ns, log_dir, graph.url, receiver.url)
    receiver_empty = rss_mb(receiver.pid, "VmRSS")
    key = await public_key(kube, op_ns)
    progress(n, "sealing the channels' credentials")
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
    progress(n, "creating channels while the operator runs")
    sent: dict[str, float] = {}
    pids = pids_of(cluster, operator=operator, receiver=receiver, graph=graph.service)
    before, buckets, cpu = writes(cluster), request_buckets(cluster), cpu_of(pids)
    graph_before = graph.calls()
    started = time.monotonic()

    async def create(i: int) -> None:
        sent[names[i]] = time.monotonic()
        await kube.create(channels_path(op_ns), bodies[i])

    async def report() -> None:
        while True:
            await asyncio.sleep(15)
            progress(
                n,
                f"created {len(sent)}, Ready {len(watch.ready_at)}; operator RSS "
                f"{rss_mb(operator.pid, 'VmRSS'):.0f} MB, receiver "
                f"{rss_mb(receiver.pid, 'VmRSS'):.0f} MB",
            )

    reporting = asyncio.create_task(report())
    await bounded(n, concurrency, create)
    created_in = time.monotonic() - started
    await watch.wait({(m, 1) for m in names}, timeout=max(120.0, n * 0.2), operator=operator)
    op_time = max(watch.ready_at[(m, 1)] for m in names) - started
    create_cpu = cpu_share(cpu_of(pids), cpu, op_time)
    reporting.cancel()
    progress(n, f"all Ready in {op_time:.1f} s (created in {created_in:.1f} s)")
    latencies = [watch.ready_at[(m, 1)] - sent[m] for m in names]
    await asyncio.sleep(2)  # let stragglers (if any) show in the counters
    op_writes = delta(writes(cluster), before)
    create_requests = request_p99(request_buckets(cluster), buckets)
    graph_create = delta(graph.calls(), graph_before)
    rss = rss_mb(operator.pid)
    receiver_full = rss_mb(receiver.pid, "VmRSS")
    # Each phase's figures as soon as they are in: a later phase that fails loses none.
    progress(n, "created: " + json.dumps({"writes": op_writes, "graph": graph_create,
        "apiserver": create_requests, "cpu": create_cpu, "peak_rss_mb": rss,
        "receiver_rss_mb": [receiver_empty, receiver_full]}))  # fmt: skip

    # What Kopf queues per event: a channel's JSON, and the apiserver's bookkeeping in it.
    sample = await kube.get(channels_path(op_ns, names[-1]))
    managed = len(json.dumps(sample["metadata"].get("managedFields", [])))
    progress(n, f"a Ready channel: {len(json.dumps(sample))} B of JSON, {managed} managedFields")

    # Restart: stop, change one channel while down, start, add one. Caught up: Kopf has logged
    # a processed resume for each unchanged channel, and both tracers are Ready.
    operator.stop()
    changed = names[0]
    await kube.merge_patch(channels_path(op_ns, changed), {"spec": {"enabled": False}})
    progress(n, "restarting the operator")
    before = writes(cluster)
    graph_before = graph.calls()
    restarted_at = time.monotonic()
    operator = start_operator(cluster, op_ns, log_dir, graph.url, receiver.url, log_level="INFO")
    pids["operator"] = operator.pid
    cpu = cpu_of(pids)
    await kube.create(
        channels_path(op_ns),
        channel_body(
            namespace=op_ns,
            name=sentinel,
            spec=spec(sentinel, sealed_for(key, op_ns, sentinel)),
            finalizers=(FINALIZER,),
        ),
    )
    restart_timeout = max(300.0, n * 0.02)
    await watch.wait({(changed, 2), (sentinel, 1)}, restart_timeout, operator)
    caught_up = await resumed(operator, n - 1, restarted_at, restart_timeout)
    restart_cpu = cpu_share(cpu_of(pids), cpu, caught_up)
    progress(n, f"caught up in {caught_up:.1f} s")
    await asyncio.sleep(5)  # late resume writes would show here
    restart_writes = delta(writes(cluster), before)
    graph_restart = delta(graph.calls(), graph_before)
    restart_rss = rss_mb(operator.pid)
    operator.stop()
    progress(n, "restart: " + json.dumps({"writes": restart_writes, "graph": graph_restart,
        "cpu": restart_cpu, "peak_rss_mb": restart_rss}))  # fmt: skip
    progress(n, "GETs through the facade and directly")
    gets = await facade_gets(cluster, kube, op_ns, log_dir, names, requests=300)
    progress(n, "GETs: " + json.dumps(gets))
    progress(n, "health schedule")
    health = await health_calls(cluster, op_ns, log_dir, graph, receiver.url, health_period, n + 1)
    receiver.stop()
    graph.service.stop()
    watch.stop()
    # The two tracer channels' own writes: the sentinel costs what any new channel costs;
    # the changed one a Secret update and a status patch.
    per_channel = sum(op_writes.values()) / n
    tracer = round(per_channel) + 2
    return {
        "n": n,
        **floor,
        "floor_ratio": op_time / floor["floor_s"] if floor else None,
        "operator_s": op_time,
        "created_in_s": created_in,
        "ratio": op_time / floor["baseline_s"] if floor else None,
        "p50_s": statistics.median(latencies),
        "p99_s": pct(latencies, 0.99),
        "writes_per_channel": per_channel,
        "writes": op_writes,
        "create_cpu": create_cpu,
        "create_apiserver_requests": create_requests,
        "peak_rss_mb": rss,
        "receiver_rss_mb": {"empty": receiver_empty, "full": receiver_full},
        "restart_caught_up_s": caught_up,
        "restart_cpu": restart_cpu,
        "restart_peak_rss_mb": restart_rss,
        "restart_writes": restart_writes,
        "restart_writes_beyond_tracers": max(0, sum(restart_writes.values()) - tracer),
        "graph_calls": graph_create,
        "graph_calls_per_channel": sum(graph_create.values()) / n,
        "restart_graph_calls": graph_restart,
        # The sentinel's own calls are a new channel's; the disabled channel asks nothing.
        "restart_graph_calls_beyond_tracers": max(
            0, sum(graph_restart.values()) - round(sum(graph_create.values()) / n)
        ),
        "gets": gets,
        "health_period_s": health_period,
        "health": health,
        "etcd_db_mb": etcd_db_mb(cluster),
        "apiserver_rss_mb": rss_mb(cluster.pids["kube-apiserver"], "VmRSS"),
        "etcd_rss_mb": rss_mb(cluster.pids["etcd"], "VmRSS"),
    }


async def main_async(
    sizes: list[int], concurrency: int, health_period: float, floors: bool
) -> None:
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
                result = await run_size(
                    cluster, kube, n, concurrency, Path(tmp), health_period, floors
                )
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
            f"| {r['n']} | {seconds(r.get('baseline_s'))} | {seconds(r.get('floor_s'))} "
            f"| {r['operator_s']:.1f} s | {ratio(r['ratio'])} | **{ratio(r['floor_ratio'])}** "
            f"| {r['p50_s']:.2f} s | {r['p99_s']:.2f} s |"
        )
    print()
    print(
        "| N | writes/channel | Graph calls/channel | operator peak RSS "
        "| restart: caught up | restart: writes | restart: Graph calls "
        "| health: checks/s served (default period asks) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['n']} | {r['writes_per_channel']:.2f} | {r['graph_calls_per_channel']:.2f} "
            f"| {r['peak_rss_mb']:.0f} MB | {r['restart_caught_up_s']:.1f} s "
            f"| {r['restart_writes_beyond_tracers']} | {r['restart_graph_calls_beyond_tracers']} "
            f"| {health_text(r)} |"
        )
    print()
    print(
        "| N | receiver RSS (empty → N cached) | facade RSS | GET p99 direct / facade, 1 in "
        "flight | 8 in flight | etcd db | apiserver RSS |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        g = r["gets"]
        print(
            f"| {r['n']} | {r['receiver_rss_mb']['empty']:.0f} → "
            f"{r['receiver_rss_mb']['full']:.0f} MB | {g['facade_rss_mb']:.0f} MB "
            f"| {g['direct_p99_ms_1']:.1f} / {g['facade_p99_ms_1']:.1f} ms "
            f"| {g['direct_p99_ms_8']:.1f} / {g['facade_p99_ms_8']:.1f} ms "
            f"| {r['etcd_db_mb']:.0f} MB | {r['apiserver_rss_mb']:.0f} MB |"
        )


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def health_text(r: dict[str, Any]) -> str:
    h = r["health"]
    if not h:
        return "-"
    return (
        f"{h['checks_per_s']:.0f} of {h['demanded_per_s']:.0f} asked "
        f"({r['health_period_s']:.0f} s period; default {h['default_demand_per_s']:.1f}); "
        f"refused: {sum(h['not_ok'].values())}"
    )


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
        help="seconds; checks are counted over max(2 periods, 30 s) once resumed (0: skipped)",
    )
    parser.add_argument(
        "--no-floors",
        dest="floors",
        action="store_false",
        help="skip the baseline and floor runs (each creates N channels of its own)",
    )
    parser.add_argument(
        "--lease-seconds",
        type=float,
        default=15.0,
        help="the operator's Lease duration (renew deadline 2/3 of it; default client-go's)",
    )
    args = parser.parse_args()
    LEASE_SECONDS[0] = args.lease_seconds
    sizes = [int(s) for s in args.sizes.split(",")]
    asyncio.run(main_async(sizes, args.concurrency, args.health_period, args.floors))


if __name__ == "__main__":
    main()

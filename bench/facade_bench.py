"""REST facade benchmark: GET and POST latency (p50, p99) and throughput through the facade
(uvicorn on 127.0.0.1, a separate process), beside the same reads and writes made directly
against the apiserver in the same run, printed as ratios.

    .venv/bin/python bench/facade_bench.py [--kubeconfig PATH] [--channels 20]
        [--requests 300] [--connections 8] [--rounds 3] [--ready-wait 0]

Without --kubeconfig a local control plane is started (localkube) and stopped at the end;
with it, that cluster is used (the CRD must be applicable by its user). Either way the run
gets its own namespace, the real operator (it publishes the sealing key and reconciles
every write) and a `whatsapp-facade` process.

What is compared, per round, targets alternating (machines here are noisy; the median round
of each is reported):
  GET   facade: GET /v1/instances/{id}/channels/whatsapp  direct: GET the WhatsAppChannel
  POST  facade: POST the same (an existing channel)       direct: GET + seal + PUT the CR
"Latency" is one request at a time; "throughput" keeps --connections requests in flight.
POST answers without waiting for the operator unless --ready-wait is given (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from channel_launcher.product import CRD_FILE, CRD_NAME, start_facade, start_operator
from localkube import Cluster
from localkube.services import Service
from whatsapp_channel.kube import Conflict, Kube, channels_path, core_path
from whatsapp_channel.model import (
    SEALING_PUBLIC_CONFIGMAP,
    ChannelSpec,
    SealedCredentials,
    channel_view,
)
from whatsapp_channel.sealing import PublicSealingKey, published_keys, seal


def setup_body(i: int) -> dict[str, Any]:
    return {
        "access_token": f"EAAG-bench-access-token-{i:06d}",
        "app_secret": "ab" * 16,
        "phone_number_id": f"1065403522{i:06d}",
        "display_phone": "+61400111222",
        "verify_token": "bench-verify-token",
    }


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Result:
    latencies: list[float]
    seconds: float
    failures: int

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


Call = Callable[[int], Awaitable[bool]]


async def measure(call: Call, requests: int, connections: int) -> Result:
    latencies: list[float] = []
    failures = 0
    counter = iter(range(requests))

    async def worker() -> None:
        nonlocal failures
        for n in counter:
            started = time.perf_counter()
            ok = await call(n)
            latencies.append(time.perf_counter() - started)
            failures += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return Result(latencies, time.perf_counter() - started, failures)


# --- the two ways to do the same thing ----------------------------------------------------


class Direct:
    """What a client with cluster access does itself: read the CR; seal, then replace it."""

    def __init__(self, kube: Kube, namespace: str, key: PublicSealingKey, ids: list[str]):
        self.kube, self.namespace, self.key, self.ids = kube, namespace, key, ids

    async def get(self, n: int) -> bool:
        instance = self.ids[n % len(self.ids)]
        channel_view(await self.kube.get(channels_path(self.namespace, instance)))
        return True

    async def post(self, n: int) -> bool:
        instance = self.ids[n % len(self.ids)]
        body = setup_body(n)
        sealed = {
            field: seal(self.key, namespace=self.namespace, name=instance, field=field, value=v)
            for field, v in (
                ("accessToken", body["access_token"]),
                ("appSecret", body["app_secret"]),
                ("verifyToken", body["verify_token"]),
            )
        }
        spec = ChannelSpec(
            instance_id=instance,
            phone_number_id=body["phone_number_id"],
            display_phone=body["display_phone"],
            sealed=SealedCredentials.model_validate(sealed),
        ).model_dump(by_alias=True, exclude_none=True)
        path = channels_path(self.namespace, instance)
        for _ in range(20):
            current = await self.kube.get(path)
            current.pop("status", None)
            try:
                channel_view(await self.kube.replace(path, {**current, "spec": spec}))
                return True
            except Conflict:
                continue
        return False


class ThroughFacade:
    def __init__(self, session: aiohttp.ClientSession, url: str, key: str, ids: list[str]):
        self.session, self.url, self.ids = session, url, ids
        self.headers = {"Authorization": f"Bearer {key}"}

    def _url(self, n: int) -> str:
        return f"{self.url}/v1/instances/{self.ids[n % len(self.ids)]}/channels/whatsapp"

    async def get(self, n: int) -> bool:
        async with self.session.get(self._url(n), headers=self.headers) as response:
            await response.read()
            return response.status == 200

    async def post(self, n: int) -> bool:
        async with self.session.post(
            self._url(n), json=setup_body(n), headers=self.headers
        ) as response:
            await response.read()
            return response.status == 200


# --- setting up ---------------------------------------------------------------------------


def kubectl(kubeconfig: Path, *args: str) -> str:
    result = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result.stdout


async def sealing_key(kube: Kube, namespace: str) -> PublicSealingKey:
    deadline = time.monotonic() + 60
    while True:
        try:
            configmap = await kube.get(core_path("configmaps", namespace, SEALING_PUBLIC_CONFIGMAP))
            return published_keys(configmap["data"]).active
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def start_processes(
    kubeconfig: Path, namespace: str, folder: Path, api_key: str, ready_wait: float
) -> tuple[list[Service], str]:
    keys_file = folder / "api-keys"
    keys_file.write_text(f"bench {api_key}\n")
    operator = start_operator(
        kubeconfig,
        folder,
        namespace=namespace,
        webhook_base_url="https://hooks.bench.test",
        log_level="WARNING",
    )
    facade = start_facade(
        kubeconfig,
        folder,
        namespace=namespace,
        api_keys_file=keys_file,
        ready_wait_seconds=ready_wait,
        log_level="WARNING",
    )
    return [operator, facade], facade.url


# --- the run --------------------------------------------------------------------------------


@contextmanager
def prepared(kubeconfig: Path, folder: Path, ready_wait: float) -> Iterator[tuple[str, str, str]]:
    """A namespace with the operator and the facade running: (namespace, facade url, key)."""
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    kubectl(kubeconfig, "apply", "-f", str(CRD_FILE))
    kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    served_by = time.monotonic() + 60  # Established may still answer 429 for a moment
    while subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", "get", "whatsappchannels", "-A"],
        capture_output=True,
        timeout=60,
        check=False,
    ).returncode:
        if time.monotonic() > served_by:
            raise SystemExit("the WhatsAppChannel CRD is not served")
        time.sleep(0.5)
    kubectl(kubeconfig, "create", "namespace", namespace)
    api_key = secrets.token_urlsafe(32)
    processes, url = start_processes(kubeconfig, namespace, folder, api_key, ready_wait)
    try:
        yield namespace, url, api_key
    finally:
        for process in reversed(processes):
            process.stop()
        kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false")


async def bench(
    args: argparse.Namespace, kubeconfig: Path, namespace: str, url: str, api_key: str
) -> None:
    kube = Kube.connect(
        str(kubeconfig), user_agent="facade-bench", max_concurrency=max(32, args.connections)
    )
    connector = aiohttp.TCPConnector(limit=args.connections + 4)
    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            ids = [str(uuid.uuid4()) for _ in range(args.channels)]
            facade = ThroughFacade(session, url, api_key, ids)
            for n in range(len(ids)):  # the channels every round reads and replaces
                assert await facade.post(n), f"setting up channel {n} failed"
            direct = Direct(kube, namespace, await sealing_key(kube, namespace), ids)
            workloads: dict[tuple[str, str], Call] = {
                ("GET", "direct"): direct.get,
                ("GET", "facade"): facade.get,
                ("POST", "direct"): direct.post,
                ("POST", "facade"): facade.post,
            }
            for call in workloads.values():  # warm connections and caches
                await measure(call, 20, 2)
            latency: dict[tuple[str, str], list[Result]] = {k: [] for k in workloads}
            load: dict[tuple[str, str], list[Result]] = {k: [] for k in workloads}
            for round_ in range(args.rounds):
                order = list(workloads.items())
                if round_ % 2:
                    order.reverse()
                for key, call in order:
                    latency[key].append(await measure(call, args.requests // 3, 1))
                    load[key].append(await measure(call, args.requests, args.connections))
            report(args, latency, load)
    finally:
        await kube.close()


def run(args: argparse.Namespace, kubeconfig: Path, folder: Path) -> None:
    with prepared(kubeconfig, folder, args.ready_wait) as (namespace, url, api_key):
        try:
            asyncio.run(bench(args, kubeconfig, namespace, url, api_key))
        except BaseException:
            print(f"logs: {folder}/*.log", file=sys.stderr)
            raise


def median_by(results: list[Result], metric: Callable[[Result], float]) -> float:
    return statistics.median(metric(r) for r in results)


def report(
    args: argparse.Namespace,
    latency: dict[tuple[str, str], list[Result]],
    load: dict[tuple[str, str], list[Result]],
) -> None:
    print(
        f"\n{args.channels} channels, {args.rounds} rounds; latency: 1 in flight "
        f"({args.requests // 3} requests); throughput: {args.connections} in flight "
        f"({args.requests} requests); POST ready-wait {args.ready_wait}s\n"
    )
    print(f"{'':6}{'':8}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'p99 ms':>9}  (under load)")
    for op in ("GET", "POST"):
        rows = {}
        for target in ("direct", "facade"):
            lat, thr = latency[(op, target)], load[(op, target)]
            rows[target] = (
                median_by(lat, lambda r: r.percentile(0.50)),
                median_by(lat, lambda r: r.percentile(0.99)),
                median_by(thr, lambda r: r.rate),
                median_by(thr, lambda r: r.percentile(0.99)),
            )
            failures = sum(r.failures for r in lat + thr)
            note = f"  {failures} failed" if failures else ""
            p50, p99, rate, loaded_p99 = rows[target]
            print(f"{op:6}{target:8}{p50:9.2f}{p99:9.2f}{rate:9.0f}{loaded_p99:9.2f}{note}")
        d, f = rows["direct"], rows["facade"]
        print(
            f"{op:6}{'ratio':8}{f[0] / d[0]:8.2f}x{f[1] / d[1]:8.2f}x{f[2] / d[2]:8.2f}x"
            f"{f[3] / d[3]:8.2f}x  (facade / direct)\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, help="use this cluster instead of a new one")
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ready-wait", type=float, default=0.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="facade-bench-") as tmp:
        folder = Path(tmp)
        if args.kubeconfig is not None:
            run(args, args.kubeconfig, folder)
            return
        started = time.monotonic()
        cluster = Cluster.start(folder / "cluster")
        print(f"local control plane up in {time.monotonic() - started:.1f}s", file=sys.stderr)
        try:
            run(args, cluster.kubeconfig, folder)
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()

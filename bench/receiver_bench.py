"""Webhook receiver benchmark: signed POST throughput and p99 through uvicorn, with 10,000
channels in the cache, against a bare ASGI endpoint that does nothing, in the same run.

    .venv/bin/python bench/receiver_bench.py [--channels 10000] [--requests 4000]
        [--rounds 3] [--connections 32] [--max-seconds 20] [--profile DIR] [--in-process N]

With `--profile DIR` (py-spy installed: `.venv/bin/pip install py-spy`), the served per-channel
URL, shared URL, receiver with the forward stubbed and bare relay are each sampled by py-spy
during one more round of `--requests`, the raw stacks written to DIR and their top costs
printed (share of samples, by the function on top of the stack and by the functions on it).

`--in-process N` measures each app's CPU per request in this process instead: served by the
protocol whatsapp-receiver is served with, over an in-memory transport, every forward
stubbed, N requests a round (the Python work alone, without sockets or other processes:
steadier than the served numbers on a shared machine).

`--soak SECONDS` is the by-hand soak instead (docs/receiver-performance.md): the receiver,
10,000 channels in its cache, forwarding to a sink that counts every event by its message id;
its capacity measured first, then a steady signed load at half of it (per-channel and shared
URL alternating, every event unique) for SECONDS (600 for the real soak). It checks that
every event the receiver accepted reached the sink exactly once and that the receiver's RSS
at the end is within 5% of its RSS after the first minute, and exits 1 when not.

Uvicorn processes on 127.0.0.1, each served as whatsapp-receiver is (`channel_api.serving.run`
with the receiver's uvicorn options: bounded heads, no proxy headers), so that they differ
only in their app: the bare endpoint, the receiver (its cache loaded with the channels'
Secrets, forwarding to the sink), the sink (the same bare endpoint, standing in for the
instances), the receiver with its forward stubbed, which separates the cost of its own checks
from the hop to the instance, and a bare relay: an ASGI app that forwards the raw body to the
same sink with the same forward client and checks nothing, the floor this design (Meta gets
200 only once the instance answered) can reach. The load generator is a
lean keep-alive HTTP/1.1 client in this process that only ever connects to 127.0.0.1, sends a
bounded number of requests and stops at a time limit. Targets alternate round by round
(machines here are noisy); the median round of each is reported, and the receiver's numbers
as ratios of the bare endpoint's and of the bare relay's. Beside throughput, the CPU time the
serving process spent per request (from /proc/<pid>/task/*/schedstat, in ns): far steadier
than throughput on a shared machine, so a small change in the receiver's work shows there
first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localkube.cluster import free_port

HOST = "127.0.0.1"  # the only address the load generator ever connects to
FORWARD_SECRET = b"bench-forward-secret-0123456789abcdef"
RELAY_APP_SECRET = b"bench-relay-app-secret"  # the relay checks nothing, but signs as all do


# --- the servers (each runs in its own process) -----------------------------------------


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the request and answers 200: the cost of uvicorn alone."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"OK"})


async def whole_body(receive: Any) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def served(port: int) -> Any:
    """The settings whatsapp-receiver is served with (their defaults), on `port`."""
    from channel_api.receiver.settings import ReceiverSettings

    return ReceiverSettings.model_construct(host=HOST, port=port, log_level="WARNING")


def serve(app: Any, port: int) -> None:
    """Serves `app` on `port` exactly as whatsapp-receiver is served (`serving.run` with its
    uvicorn options: bounded request heads, no proxy headers, no access log), so that the
    bare endpoint, the bare relay and the receiver differ only in their app."""
    from channel_api.receiver.main import UVICORN_OPTIONS
    from channel_api.serving import run

    run(app, served(port), **UVICORN_OPTIONS)


def serve_bare(port: int) -> None:
    serve(bare_app, port)


def forwarder(sink_port: int, forward: bool = True) -> Any:
    """The receiver's forwarder to the sink; with `forward=False` its deliveries succeed
    without leaving the process."""
    from channel_api.receiver.forward import Delivery, Forwarder

    class NoHop(Forwarder):
        async def deliver(self, instance_id: str, body: bytes, signature: bytes) -> Delivery:
            return Delivery.ACCEPTED

    return (Forwarder if forward else NoHop)(
        f"http://{HOST}:{sink_port}/agents/{{instance_id}}",
        FORWARD_SECRET,
        timeout=10.0,
        max_connections=256,
    )


def relay_app(forwarder: Any) -> Any:
    """Forwards each body with `forwarder`, signed as Meta signs; checks nothing."""
    from channel_api.receiver.forward import Delivery
    from channel_api.receiver.webhook_rules import meta_signature

    async def relay(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = await whole_body(receive)
        instance_id = scope["path"].rsplit("/", 1)[-1]
        signature = meta_signature(RELAY_APP_SECRET, body)
        delivery = await forwarder.deliver(instance_id, body, signature)
        status = 200 if delivery is Delivery.ACCEPTED else 502
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"OK"})

    return relay


def serve_relay(port: int, sink_port: int) -> None:
    """The bare relay: each body forwarded to the sink with the receiver's forward client."""
    serve(relay_app(forwarder(sink_port)), port)


SINK_COUNTS: dict[int, int] = {}  # message id -> deliveries, in the sink's process
_MESSAGE_ID = re.compile(rb'"id":"wamid\.bench(\d+)"')


async def counting_sink(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The bare endpoint that also counts the events it got by their message id; any GET
    answers the counts."""
    if scope["type"] != "http" or scope["method"] != "GET":
        if scope["type"] == "http":
            for found in _MESSAGE_ID.finditer(await whole_body(receive)):
                n = int(found.group(1))
                SINK_COUNTS[n] = SINK_COUNTS.get(n, 0) + 1
            receive = _nothing_more
        return await bare_app(scope, receive, send)
    counts = SINK_COUNTS
    body = json.dumps(
        {"events": sum(counts.values()), "distinct": len(counts), "ids": sorted(counts)}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _nothing_more() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def serve_counting_sink(port: int) -> None:
    serve(counting_sink, port)


def receiver_app(sink_port: int, secrets: list[dict[str, Any]], forward: bool = True) -> Any:
    """The receiver app, its cache loaded with `secrets`, its status notes never written; with
    `forward=False` deliveries succeed without leaving the process (what the receiver's own
    checks cost, apart from the hop to the instance)."""
    from channel_api.receiver.app import Receiver
    from channel_api.receiver.channel_cache import ChannelCache
    from channel_api.receiver.status import StatusWriter

    async def no_status_writes(path: str, body: dict[str, Any]) -> None:
        return None

    cache = ChannelCache()
    cache.apply("SYNC", {"items": secrets})
    cache.mark_synced()
    status = StatusWriter(no_status_writes, "bench", interval=30.0)
    return Receiver(cache, forwarder(sink_port, forward), status, max_body_bytes=3 * 1024 * 1024)


def serve_receiver(
    port: int, sink_port: int, secrets: list[dict[str, Any]], forward: bool = True
) -> None:
    serve(receiver_app(sink_port, secrets, forward), port)


# --- the channels and their signed events ------------------------------------------------


@dataclass(frozen=True)
class Channel:
    instance_id: str
    phone_number_id: str
    app_secret: str


def make_channels(count: int) -> tuple[list[Channel], list[dict[str, Any]]]:
    from whatsapp_channel import channel_secret

    channels, secrets = [], []
    for n in range(count):
        channel = Channel(str(uuid.uuid4()), str(100000000000000 + n), uuid.uuid4().hex * 2)
        channels.append(channel)
        secrets.append(
            channel_secret.build(
                channel_secret.ChannelSecret(
                    namespace="bench",
                    channel=channel.instance_id,
                    channel_uid=str(uuid.uuid4()),  # the receiver routes owned Secrets only
                    instance_id=channel.instance_id,
                    phone_number_id=channel.phone_number_id,
                    enabled=True,
                    access_token=None,
                    app_secret=channel.app_secret,
                    verify_token=f"token-{n}",
                )
            )
        )
    return channels, secrets


def signed_request(path: str, channel: Channel, n: int) -> bytes:
    """One complete HTTP/1.1 request: a text-message notification signed as Meta signs."""
    import hashlib
    import hmac
    import json

    event = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550984277",
                                "phone_number_id": channel.phone_number_id,
                            },
                            "contacts": [{"profile": {"name": "Zoë"}, "wa_id": "60173526233"}],
                            "messages": [
                                {
                                    "from": "60173526233",
                                    "id": f"wamid.bench{n}",
                                    "timestamp": "1694427240",
                                    "text": {"body": f"Grüße #{n}, how are you today?"},
                                    "type": "text",
                                }
                            ],
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }
    body = json.dumps(event, separators=(",", ":")).encode()
    mac = hmac.new(channel.app_secret.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
        f"X-Hub-Signature-256: sha256={mac}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --- the load generator -------------------------------------------------------------------


@dataclass
class Round:
    target: str
    seconds: float
    latencies: list[float]
    failures: int
    server_cpu_seconds: float = 0.0

    @property
    def cpu_us(self) -> float:
        """The serving process's CPU time per answered request."""
        return self.server_cpu_seconds / len(self.latencies) * 1e6

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        return statistics.quantiles(self.latencies, n=100)[98] * 1000


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of process `pid` so far (Linux)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
    return total / 1e9


async def load(
    target: str,
    port: int,
    requests: list[bytes],
    total: int,
    connections: int,
    limit: float,
    server_pid: int | None = None,
) -> Round:
    latencies: list[float] = []
    failures = 0
    sent = 0
    deadline = time.monotonic() + limit

    async def worker() -> None:
        nonlocal sent, failures
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while sent < total and time.monotonic() < deadline:
                request = requests[sent % len(requests)]
                sent += 1
                start = time.perf_counter()
                writer.write(request)
                status = await _answer(reader)
                latencies.append(time.perf_counter() - start)
                failures += status != 200
        finally:
            writer.close()

    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(server_pid) - cpu_before if server_pid else 0.0
    return Round(target, elapsed, latencies, failures, cpu)


# --- the profile (--profile) ----------------------------------------------------------------

PROFILED = (
    "receiver POST /hooks/whatsapp/{id}",
    "receiver POST /hooks/whatsapp",
    "  same, forward stubbed (checks only)",
    "bare relay (forward only, no checks)",
)


async def profile(
    args: argparse.Namespace, name: str, port: int, requests: list[bytes], pid: int | None
) -> None:
    """One more round of `name`'s load under py-spy; its top costs printed."""
    assert pid is not None
    py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if py_spy is None:
        sys.exit("--profile needs py-spy: .venv/bin/pip install py-spy")
    os.makedirs(args.profile, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in name.strip()).strip("-")
    output = os.path.join(args.profile, f"{slug}.txt")
    spy = await asyncio.create_subprocess_exec(
        *[
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "400",
            "--format",
            "raw",
            "--function",
            "--gil",
            "--output",
            output,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await asyncio.sleep(1.0)  # py-spy attaches
    await load(name, port, requests, args.requests, args.connections, args.max_seconds)
    spy.send_signal(signal.SIGINT)
    await asyncio.wait_for(spy.wait(), 30)
    print(f"\n{name.strip()}: py-spy samples in {output}")
    print_profile(output)


def print_profile(path: str, top: int = 18) -> None:
    """The functions most often on top of the stack (self) and on it at all (inclusive)."""
    own: dict[str, int] = {}
    on_stack: dict[str, int] = {}
    total = 0
    with open(path) as samples:
        for line in samples:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack:
                continue
            frames = stack.split(";")
            n = int(count)
            total += n
            leaf = frames[-1] if frames else "(no Python frame)"
            own[leaf] = own.get(leaf, 0) + n
            for frame in set(frames):
                on_stack[frame] = on_stack.get(frame, 0) + n
    if not total:
        print("  no samples")
        return
    for title, table in (("self", own), ("inclusive", on_stack)):
        print(f"  {title} (share of {total} samples):")
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {n / total:6.1%}  {frame}")


async def wait_until_serving(port: int, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
            status = await _answer(reader)
            writer.close()
            if status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"nothing serving on {HOST}:{port}")
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace) -> None:
    channels, secrets = make_channels(args.channels)
    rng = random.Random(5)
    sample = [rng.choice(channels) for _ in range(2000)]
    targets = {
        "bare ASGI endpoint (no-op)": [signed_request("/bare", c, n) for n, c in enumerate(sample)],
        "receiver POST /hooks/whatsapp/{id}": [
            signed_request(f"/hooks/whatsapp/{c.instance_id}", c, n) for n, c in enumerate(sample)
        ],
        "receiver POST /hooks/whatsapp": [
            signed_request("/hooks/whatsapp", c, n) for n, c in enumerate(sample)
        ],
        "  same, forward stubbed (checks only)": [
            signed_request(f"/hooks/whatsapp/{c.instance_id}", c, n) for n, c in enumerate(sample)
        ],
        "bare relay (forward only, no checks)": [
            signed_request(f"/relay/{c.instance_id}", c, n) for n, c in enumerate(sample)
        ],
    }
    bare_port, receiver_port, sink_port = free_port(), free_port(), free_port()
    checks_port, relay_port = free_port(), free_port()
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(target=serve_bare, args=(bare_port,), daemon=True),
        spawn.Process(target=serve_bare, args=(sink_port,), daemon=True),
        spawn.Process(target=serve_receiver, args=(receiver_port, sink_port, secrets), daemon=True),
        spawn.Process(
            target=serve_receiver, args=(checks_port, sink_port, secrets, False), daemon=True
        ),
        spawn.Process(target=serve_relay, args=(relay_port, sink_port), daemon=True),
    ]
    for process in processes:
        process.start()
    try:
        await wait_until_serving(bare_port, "/")
        await wait_until_serving(sink_port, "/")
        await wait_until_serving(receiver_port, "/readyz")
        await wait_until_serving(checks_port, "/readyz")
        await wait_until_serving(relay_port, "/relay/x")
        ports = dict(
            zip(
                targets,
                (bare_port, receiver_port, receiver_port, checks_port, relay_port),
                strict=True,
            )
        )
        serving = (processes[0], processes[2], processes[2], processes[3], processes[4])
        pids = {name: p.pid for name, p in zip(targets, serving, strict=True)}
        print(
            f"receiver benchmark: {args.channels} channels in the cache, {args.connections} "
            f"connections, {args.requests} signed POSTs x {args.rounds} rounds per target, "
            f"on {HOST}"
        )
        for name, requests in targets.items():  # warm-up
            await load(name, ports[name], requests, 300, args.connections, args.max_seconds)
        rounds: dict[str, list[Round]] = {name: [] for name in targets}
        for _ in range(args.rounds):
            for name, requests in targets.items():
                rounds[name].append(
                    await load(
                        name,
                        ports[name],
                        requests,
                        args.requests,
                        args.connections,
                        args.max_seconds,
                        pids[name],
                    )
                )
        if args.profile:
            for name in PROFILED:
                await profile(args, name, ports[name], targets[name], pids[name])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(5)

    report(rounds)
    if any(x.failures for rs in rounds.values() for x in rs):
        sys.exit("some requests were not answered 200")


def _spread(values: list[float], digits: int = 2) -> str:
    """The median of `values` and, with more than one, their range."""
    median = f"{statistics.median(values):.{digits}f}"
    if len(values) < 2:
        return median
    return f"{median} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(rounds: dict[str, list[Round]]) -> None:
    """Each target's median round, its CPU per request (median and range over the rounds),
    and the ratios, each the median (and range) of the rounds' ratios: round i of one target
    against round i of the other, run back to back."""
    median = {name: sorted(rs, key=lambda r: r.rate)[len(rs) // 2] for name, rs in rounds.items()}
    print(
        f"{'target':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8} "
        f"{'server CPU us/req (range)':>26}"
    )
    for name, r in median.items():
        failures = sum(x.failures for x in rounds[name])
        cpu = _spread([x.cpu_us for x in rounds[name]], 1)
        print(f"{name:40} {r.rate:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {failures:8d} {cpu:>26}")

    def ratios(name: str, base: str, of: str) -> str:
        return _spread(
            [
                getattr(a, of) / getattr(b, of)
                for a, b in zip(rounds[name], rounds[base], strict=True)
            ]
        )

    bare, relay = "bare ASGI endpoint (no-op)", "bare relay (forward only, no checks)"
    for name in median:
        if name != bare:
            print(
                f"{name.strip()}: throughput {ratios(name, bare, 'rate')}x bare, "
                f"p99 {ratios(name, bare, 'p99_ms')}x bare"
            )
    for name in median:
        if name.startswith("receiver"):
            print(
                f"{name.strip()}: throughput {ratios(name, relay, 'rate')}x the bare relay, "
                f"p99 {ratios(name, relay, 'p99_ms')}x the bare relay"
            )
    print(
        f"bare relay: server CPU per request {ratios(relay, bare, 'cpu_us')}x the bare endpoint's"
    )
    for name in median:
        if name.startswith("receiver"):
            print(
                f"{name.strip()}: server CPU per request {ratios(name, relay, 'cpu_us')}x "
                "the bare relay's"
            )


# --- in one process (--in-process) ---------------------------------------------------------


class _Transport:
    """What the served protocol writes to, in memory: the answer is whole at its second write
    (uvicorn writes the head, then the body)."""

    def __init__(self) -> None:
        self.writes = 0
        self.closed = False
        self.last: bytes = b""
        self.answered: asyncio.Future[None] | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": (HOST, 8080), "peername": (HOST, 50000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.last = data if self.writes % 2 else self.last
        if not self.writes % 2 and self.answered is not None:
            self.answered.set_result(None)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def in_process(args: argparse.Namespace) -> None:
    """Each app's CPU per request in this process, served by the protocol whatsapp-receiver
    is served with (bounded heads) over an in-memory transport, every forward stubbed: the
    Python work alone, without the sockets, the kernel and the other processes."""
    import uvicorn
    from channel_api.receiver.main import UVICORN_OPTIONS
    from channel_api.serving import options
    from uvicorn.server import ServerState

    channels, secrets = make_channels(args.channels)
    rng = random.Random(5)
    sample = [rng.choice(channels) for _ in range(2000)]
    apps: dict[str, tuple[Any, Callable[[Channel], str]]] = {
        "bare ASGI endpoint (no-op)": (bare_app, lambda c: "/bare"),
        "bare relay (forward stubbed)": (
            relay_app(forwarder(0, False)),
            lambda c: f"/relay/{c.instance_id}",
        ),
        "receiver POST /hooks/whatsapp/{id} (forward stubbed)": (
            receiver_app(0, secrets, False),
            lambda c: f"/hooks/whatsapp/{c.instance_id}",
        ),
        "receiver POST /hooks/whatsapp (forward stubbed)": (
            receiver_app(0, secrets, False),
            lambda c: "/hooks/whatsapp",
        ),
    }
    loop = asyncio.get_running_loop()
    print(
        f"in one process: {args.channels} channels in the cache, {args.in_process} requests "
        f"x {args.rounds} rounds per app, CPU per request (best round, all rounds)"
    )
    for name, (app, path) in apps.items():
        requests = [signed_request(path(c), c, n) for n, c in enumerate(sample)]
        extra: dict[str, Any] = {**options(served(0)), **UVICORN_OPTIONS}
        config = uvicorn.Config(app, **extra)
        config.load()
        protocol_class: Any = config.http_protocol_class
        state: Any = ServerState
        protocol = protocol_class(config=config, server_state=state(), app_state={}, _loop=loop)
        transport = _Transport()
        protocol.connection_made(transport)
        rounds = []
        for _ in range(args.rounds):
            started = time.process_time()
            for n in range(args.in_process):
                transport.answered = loop.create_future()
                protocol.data_received(requests[n % len(requests)])
                await transport.answered
            rounds.append((time.process_time() - started) / args.in_process * 1e6)
            if transport.closed or not transport.last.startswith(b"HTTP/1.1 200 "):
                sys.exit(f"{name}: {transport.last[:40]!r}, closed: {transport.closed}")
        protocol.connection_lost(None)  # its keep-alive and head timers cancelled
        listed = " ".join(f"{r:.1f}" for r in rounds)
        print(f"{name:55} {min(rounds):6.1f} us  ({listed})")


# --- the soak (--soak) -------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


async def paced(
    port: int, channels: list[Channel], rate: float, seconds: float, connections: int
) -> tuple[set[int], int, dict[int, int]]:
    """Unique signed events at `rate` a second for `seconds`, alternating the per-channel and
    the shared URL: the ids answered 200, how many were sent, the other answers' counts."""
    accepted: set[int] = set()
    others: dict[int, int] = {}
    sent = 0
    started = time.monotonic()
    interval = connections / rate
    rng = random.Random(22)

    async def worker(k: int) -> None:
        nonlocal sent
        reader, writer = await asyncio.open_connection(HOST, port)
        due = started + k * interval / connections
        try:
            while due < started + seconds:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                due += interval
                n = sent
                sent += 1
                channel = rng.choice(channels)
                path = "/hooks/whatsapp" if n % 2 else f"/hooks/whatsapp/{channel.instance_id}"
                writer.write(signed_request(path, channel, n))
                status = await _answer(reader)
                if status == 200:
                    accepted.add(n)
                else:
                    others[status] = others.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(worker(k) for k in range(connections)))
    return accepted, sent, others


async def soak(args: argparse.Namespace) -> None:
    channels, secrets = make_channels(args.channels)
    receiver_port, sink_port = free_port(), free_port()
    spawn = multiprocessing.get_context("spawn")
    sink = spawn.Process(target=serve_counting_sink, args=(sink_port,), daemon=True)
    receiver = spawn.Process(
        target=serve_receiver, args=(receiver_port, sink_port, secrets), daemon=True
    )
    sink.start()
    receiver.start()
    try:
        await wait_until_serving(sink_port, "/")
        await wait_until_serving(receiver_port, "/readyz")
        assert receiver.pid is not None
        rng = random.Random(5)
        burst = [
            signed_request(f"/hooks/whatsapp/{c.instance_id}", c, -1 - n)  # ids the soak never uses
            for n, c in enumerate(rng.choice(channels) for _ in range(2000))
        ]
        capacity = await load("capacity", receiver_port, burst, args.requests, args.connections, 30)
        rate = capacity.rate / 2
        print(
            f"receiver soak: {args.channels} channels in the cache; capacity {capacity.rate:.0f}/s "
            f"(per-channel URL, {args.connections} connections); now {rate:.0f}/s, half of it, for "
            f"{args.soak:.0f} s, per-channel and shared URL alternating"
        )
        load_task = asyncio.create_task(
            paced(receiver_port, channels, rate, args.soak, args.connections)
        )
        await asyncio.sleep(60)
        rss_first_minute = rss_bytes(receiver.pid)
        accepted, sent, others = await load_task
        rss_end = rss_bytes(receiver.pid)
        reader, writer = await asyncio.open_connection(HOST, sink_port)
        writer.write(f"GET /stats HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        stats = json.loads(await reader.readexactly(length))
        writer.close()
    finally:
        for process in (receiver, sink):
            process.terminate()
        for process in (receiver, sink):
            process.join(5)
    delivered = set(stats["ids"])
    lost = accepted - delivered
    twice = stats["events"] - stats["distinct"]
    growth = rss_end / rss_first_minute - 1
    print(
        f"sent {sent} ({sent / args.soak:.0f}/s), accepted {len(accepted)}, other answers "
        f"{others or 'none'}; the sink got {stats['events']} events, {stats['distinct']} distinct"
    )
    print(
        f"accepted but not delivered: {len(lost)}; delivered twice: {twice}; delivered but not "
        f"accepted (a 5xx Meta would retry): {len(delivered - accepted)}"
    )
    print(
        f"receiver RSS after the first minute {rss_first_minute / 2**20:.1f} MiB, at the end "
        f"{rss_end / 2**20:.1f} MiB ({growth:+.1%})"
    )
    held = not lost and not twice and abs(growth) <= 0.05
    print("the soak held" if held else "THE SOAK FAILED")
    if not held:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--profile", metavar="DIR", help="py-spy the served targets into DIR")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="the soak, not the bench")
    parser.add_argument(
        "--in-process", type=int, metavar="N", help="each app's CPU per request in this process"
    )
    args = parser.parse_args()
    if not 0 < args.requests <= 100_000 or not 0 < args.connections <= 256:
        parser.error("--requests must be 1..100000 and --connections 1..256")
    if args.soak is not None and args.soak < 70:
        parser.error("--soak needs at least 70 seconds (RSS is compared with the first minute's)")
    if args.in_process is not None:
        import uvloop

        uvloop.run(in_process(args))
    else:
        asyncio.run(soak(args) if args.soak is not None else run(args))


if __name__ == "__main__":
    main()

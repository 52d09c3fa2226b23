"""Webhook receiver benchmark: signed POST throughput and p99 through uvicorn, with 10,000
channels in the cache, against a bare ASGI endpoint that does nothing, in the same run.

    .venv/bin/python bench/receiver_bench.py [--channels 10000] [--requests 4000]
        [--rounds 3] [--connections 32] [--max-seconds 20]

Uvicorn processes on 127.0.0.1: the bare endpoint, the receiver (its cache loaded with the
channels' Secrets, forwarding to the sink), the sink (the same bare endpoint, standing in
for the instances), the receiver with its forward stubbed, which separates the cost of
its own checks from the hop to the instance, and a bare relay: an ASGI app that forwards the
raw body to the same sink with the same forward client and checks nothing, the floor this
design (Meta gets 200 only once the instance answered) can reach. The load generator is a
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
import multiprocessing
import os
import random
import statistics
import sys
import time
import uuid
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


def serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(bare_app, host=HOST, port=port, access_log=False, log_level="warning")


def serve_relay(port: int, sink_port: int) -> None:
    """Forwards each body to the sink with the receiver's forward client; checks nothing."""
    import uvicorn
    from channel_api.receiver.forward import Delivery, Forwarder

    forwarder = Forwarder(
        f"http://{HOST}:{sink_port}/agents/{{instance_id}}",
        FORWARD_SECRET,
        timeout=10.0,
        max_connections=256,
    )

    async def relay(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        instance_id = scope["path"].rsplit("/", 1)[-1]
        delivery = await forwarder.deliver(instance_id, b"".join(chunks), RELAY_APP_SECRET)
        status = 200 if delivery is Delivery.ACCEPTED else 502
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"OK"})

    uvicorn.run(relay, host=HOST, port=port, access_log=False, log_level="warning")


def serve_receiver(
    port: int, sink_port: int, secrets: list[dict[str, Any]], forward: bool = True
) -> None:
    """The receiver app; with `forward=False` deliveries succeed without leaving the process
    (what the receiver's own checks cost, apart from the hop to the instance)."""
    import uvicorn
    from channel_api.bounded_http import bounded_http
    from channel_api.receiver.app import Receiver
    from channel_api.receiver.channel_cache import ChannelCache
    from channel_api.receiver.forward import Delivery, Forwarder
    from channel_api.receiver.settings import ReceiverSettings
    from channel_api.receiver.status import StatusWriter

    class NoHop(Forwarder):
        async def deliver(self, instance_id: str, body: bytes, app_secret: bytes) -> Delivery:
            return Delivery.ACCEPTED

    async def no_status_writes(path: str, body: dict[str, Any]) -> None:
        return None

    cache = ChannelCache()
    cache.apply("SYNC", {"items": secrets})
    cache.mark_synced()
    forwarder = (Forwarder if forward else NoHop)(
        f"http://{HOST}:{sink_port}/agents/{{instance_id}}",
        FORWARD_SECRET,
        timeout=10.0,
        max_connections=256,
    )
    status = StatusWriter(no_status_writes, "bench", interval=30.0)
    app = Receiver(cache, forwarder, status, max_body_bytes=3 * 1024 * 1024)
    # Request heads bounded as whatsapp-receiver serves them (the settings' defaults).
    limits = ReceiverSettings.model_construct().head_limits()
    uvicorn.run(
        app,
        host=HOST,
        port=port,
        access_log=False,
        log_level="warning",
        http=bounded_http(limits),
    )


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
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(5)

    median = {name: sorted(rs, key=lambda r: r.rate)[len(rs) // 2] for name, rs in rounds.items()}
    cpu = {name: statistics.median(r.cpu_us for r in rs) for name, rs in rounds.items()}
    print(
        f"{'target':40} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'non-200':>8} "
        f"{'server CPU us/req':>18}"
    )
    for name, r in median.items():
        failures = sum(x.failures for x in rounds[name])
        print(
            f"{name:40} {r.rate:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {failures:8d} "
            f"{cpu[name]:18.1f}"
        )
    bare = median["bare ASGI endpoint (no-op)"]
    relay = median["bare relay (forward only, no checks)"]
    for name, r in median.items():
        if not name.startswith("bare ASGI"):
            print(
                f"{name.strip()}: throughput {r.rate / bare.rate:.2f}x bare, "
                f"p99 {r.p99_ms / bare.p99_ms:.2f}x bare"
            )
    for name, r in median.items():
        if name.startswith("receiver"):
            print(
                f"{name.strip()}: throughput {r.rate / relay.rate:.2f}x the bare relay, "
                f"p99 {r.p99_ms / relay.p99_ms:.2f}x the bare relay"
            )
    if any(x.failures for rs in rounds.values() for x in rs):
        sys.exit("some requests were not answered 200")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=4_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    args = parser.parse_args()
    if not 0 < args.requests <= 100_000 or not 0 < args.connections <= 256:
        parser.error("--requests must be 1..100000 and --connections 1..256")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()

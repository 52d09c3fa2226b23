"""Graph client benchmark: credentials checks per second through `GraphClient` against the
Graph API stand-in, beside the same requests made with bare aiohttp, in the same run.

    .venv/bin/python bench/graph_client_bench.py [--numbers 1000] [--rounds 3]
        [--concurrency 16]

The stand-in runs in a process of its own on 127.0.0.1 (nothing else is ever called), seeded
with `--numbers` phone numbers. Each round checks every number once with each target,
alternating which goes first (machines here are noisy); the median round is reported, and
the client's throughput as a ratio of the bare requests'. What the ratio shows is the
client's own cost per call: proof, semaphore, retry bookkeeping, parsing into typed results.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import time

import aiohttp
from channel_operator.graph import CHECK_FIELDS, GraphClient, GraphCredentials, RetryPolicy
from graph_standin import GraphStandin, NumberSeed
from localkube.cluster import free_port

HOST = "127.0.0.1"
WABA = "102290129340398"


def number_id(index: int) -> str:
    return str(106540352000000 + index)


def credentials(index: int) -> GraphCredentials:
    return GraphCredentials(f"EAAGbench{index:08d}token", f"bench-app-secret-{index % 7}")


def serve(port: int, numbers: int, ready: multiprocessing.synchronize.Event) -> None:
    async def run() -> None:
        standin = GraphStandin(HOST, port)
        for index in range(numbers):
            creds = credentials(index)
            standin.seed(
                NumberSeed(
                    phone_number_id=number_id(index),
                    waba_id=WABA,
                    access_token=creds.access_token,
                    app_secret=creds.app_secret,
                )
            )
        await standin.start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(run())


async def bare(url: str, numbers: int, concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)
    fields = ",".join(CHECK_FIELDS)
    async with aiohttp.ClientSession() as session:

        async def one(index: int) -> None:
            creds = credentials(index)
            async with (
                slots,
                session.get(
                    f"{url}/v25.0/{number_id(index)}",
                    params={"fields": fields, "appsecret_proof": creds.appsecret_proof},
                    headers={"Authorization": f"Bearer {creds.access_token}"},
                ) as response,
            ):
                assert response.status == 200
                await response.json()

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(numbers)))
        return numbers / (time.perf_counter() - start)


async def client(url: str, numbers: int, concurrency: int) -> float:
    async with GraphClient(
        url, max_concurrency=concurrency, retry=RetryPolicy(attempts=1)
    ) as graph:
        start = time.perf_counter()
        checks = await asyncio.gather(
            *(graph.check_phone_number(number_id(i), credentials(i)) for i in range(numbers))
        )
        elapsed = time.perf_counter() - start
    assert all(check.health_status is not None for check in checks)
    return numbers / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--numbers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(port, args.numbers, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(120):
            print("the stand-in did not start", file=sys.stderr)
            return 1
        url = f"http://{HOST}:{port}"
        results: dict[str, list[float]] = {"bare": [], "client": []}
        for round_ in range(args.rounds):
            order = ["bare", "client"] if round_ % 2 == 0 else ["client", "bare"]
            for target in order:
                run = bare if target == "bare" else client
                results[target].append(asyncio.run(run(url, args.numbers, args.concurrency)))
        bare_rate = statistics.median(results["bare"])
        client_rate = statistics.median(results["client"])
        print(
            f"checks of {args.numbers} numbers, concurrency {args.concurrency}, "
            f"median of {args.rounds} rounds"
        )
        print(f"  bare aiohttp   {bare_rate:8.0f}/s")
        print(f"  GraphClient    {client_rate:8.0f}/s   ratio {client_rate / bare_rate:.2f}")
    finally:
        server.terminate()
        server.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

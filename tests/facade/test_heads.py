"""Issue 21, item 2, for the facade as it is served (uvicorn with httptools and the bounded
protocol `whatsapp-facade` runs): 10 MiB of header lines took it from 75 to 318 MiB, and
half-sent heads were held for ever. Expected: such heads are cut off with memory barely
moved, half-sent heads closed at their deadline, connections past the cap refused, and
honest requests answered all along."""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit

import httpx
from channel_api.bounded_http import HeadLimits

from tests.facade.conftest import AppFactory
from tests.facade.serve import serve_in_thread
from tests.support.raw_http import LONG_HEAD_LINES, MIB, ending, half_heads, long_head, memory_bytes

HALF_HEADS = 300
EXTRA = 100
LIMITS = HeadLimits(max_head_bytes=16 * 1024, head_timeout=3.0, max_connections=HALF_HEADS + 50)


async def test_facade_request_heads_are_bounded(make_app: AppFactory) -> None:
    with serve_in_thread(make_app(), LIMITS) as base_url:
        port = urlsplit(base_url).port
        assert port is not None
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
            assert (await http.get("/healthz")).status_code == 200
            peak_before = memory_bytes("VmHWM", os.getpid())
            endings = await asyncio.gather(*(long_head(port, line) for line in LONG_HEAD_LINES))
            assert set(endings) <= {"431", "closed"}, endings
            assert memory_bytes("VmHWM", os.getpid()) - peak_before < 32 * MIB

            connections = await half_heads(port, HALF_HEADS)
            attack = [asyncio.create_task(ending(reader)) for reader, _ in connections]
            assert (await http.get("/healthz")).status_code == 200
            connections += await half_heads(port, EXTRA)
            refused = [asyncio.create_task(ending(r)) for r, _ in connections[HALF_HEADS:]]
            done, _ = await asyncio.wait(refused, timeout=LIMITS.head_timeout / 2)
            closed_at_once = [task.result() for task in done]
            assert closed_at_once.count("closed") >= EXTRA - (LIMITS.max_connections - HALF_HEADS)
            endings = await asyncio.wait_for(asyncio.gather(*attack, *refused), timeout=120)
            assert endings[:HALF_HEADS] == ["408"] * HALF_HEADS
            assert (await http.get("/healthz")).status_code == 200
            for _, writer in connections:
                writer.close()

"""Serve an app with uvicorn on a free loopback port, in a thread with its own event loop,
so synchronous clients (schemathesis) talk to it over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn
from channel_api.bounded_http import HeadLimits, bounded_http
from channel_api.facade.settings import FacadeSettings
from fastapi import FastAPI

# The limits of the facade's defaults (model_construct: no environment, no validation).
DEFAULT_LIMITS = FacadeSettings.model_construct().head_limits()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serve_in_thread(app: FastAPI, limits: HeadLimits = DEFAULT_LIMITS) -> Iterator[str]:
    """Served as `whatsapp-facade` serves it: request heads bounded by `limits`."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            http=bounded_http(limits),
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the facade did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)

"""`kubectl port-forward`, the way a user reaches a Service of the cluster from this machine."""

from __future__ import annotations

import re
import selectors
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from localkube import Cluster

FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")


@contextmanager
def port_forward(
    cluster: Cluster, namespace: str, target: str, port: int, timeout: float = 60.0
) -> Iterator[str]:
    """Forward a free local port to `target` (e.g. svc/name) port `port`; yields its URL."""
    process = subprocess.Popen(
        ["kubectl", "port-forward", "-n", namespace, target, f":{port}", "--address=127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cluster.env(),
    )
    assert process.stdout is not None
    try:
        selector = selectors.DefaultSelector()
        selector.register(process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"port-forward to {target} never started: {seen}"
            if not selector.select(remaining):
                continue
            line = process.stdout.readline()
            assert line, f"port-forward to {target} ended: {seen}"
            seen.append(line.strip())
            if match := FORWARDING.search(line):
                break
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        process.terminate()
        process.wait(timeout=30)

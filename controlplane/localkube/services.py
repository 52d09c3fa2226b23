"""Run processes beside the local cluster (the product's operator, facade and receiver; a
test's peer): started with their environment, logged to a file, waited on until healthy, ended
by pid. `channel_launcher.product` says how each of the product's is started; `whatsapp-dev`,
the tests and the benchmarks start them through it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from localkube.processes import end_process_group, start_process


class ServiceError(RuntimeError):
    pass


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str  # where it serves

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, no goodbye: what a crash or an OOM kill looks like (fault tests)."""
        if self.alive():
            os.killpg(self.process.pid, 9)
        self.process.wait()

    def stop(self) -> None:
        end_process_group(self.process.pid)
        self.process.poll()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def script(name: str) -> str:
    """A console script of this project, from the same environment as the running Python."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def start_service(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    url: str,
    health_url: str | None = None,
    timeout: float = 60.0,
    tie_to_parent: bool = True,
) -> Service:
    """Start `argv` (serving at `url`) in its own process group and wait until `health_url`
    answers 200."""
    process = start_process(
        argv, log_path=log_path, tie_to_parent=tie_to_parent, env={**os.environ, **env}
    )
    service = Service(name=name, process=process, log_path=log_path, url=url)
    if health_url is None:
        return service
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise ServiceError(f"{name} exited at start-up:\n{service.log_tail()}")
        try:
            with urllib.request.urlopen(health_url, timeout=1) as response:  # noqa: S310
                if response.status == 200:
                    return service
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    service.stop()
    raise ServiceError(f"{name} not healthy after {timeout:.0f}s:\n{service.log_tail()}")


@contextmanager
def running(service: Service) -> Iterator[Service]:
    try:
        yield service
    finally:
        service.stop()

"""How localkube starts and ends a process, the one way for the cluster's components
(localkube.cluster, localkube.node) and the product's processes (localkube.services): each in
a process group of its own, logged to a file, ended by pid; when tied to its parent (tests), the
kernel kills it if the parent dies.

`Components` are the named processes of one cluster, recorded under its state folder so that
another process (`localkube down`) ends exactly what was started.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class ClusterError(RuntimeError):
    """A local cluster's component did not start, or a command against the cluster failed."""


def die_with_parent() -> None:
    # PR_SET_PDEATHSIG: if the process that started us dies, so do we (no orphans).
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def start_process(
    argv: Sequence[str],
    *,
    log_path: Path,
    tie_to_parent: bool,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a process group of its own, stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(
            list(argv),
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if tie_to_parent else None,
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reaped(pid: int) -> bool:
    """Collect a child that exited (so a dead child is not mistaken for a zombie alive)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return waited == pid


def end_process_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child: poll instead
            waited = 0 if pid_alive(pid) else pid
        if waited == pid:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@dataclass
class Components:
    """The named processes of one cluster: `pids` by name, each one's command line in
    `<state_dir>/<name>.argv.json` (to restart it) and its log in `<state_dir>/logs/<name>.log`.
    `recorded` is called whenever `pids` changed, so that their owner can save them."""

    state_dir: Path
    pids: dict[str, int]
    recorded: Callable[[], None]

    def spawn(self, name: str, argv: list[str], tie_to_parent: bool) -> None:
        (self.state_dir / f"{name}.argv.json").write_text(json.dumps(argv))
        process = start_process(argv, log_path=self.log_path(name), tie_to_parent=tie_to_parent)
        self.pids[name] = process.pid
        self.recorded()

    def wait(self, name: str, ready: Callable[[], bool], timeout: float) -> None:
        """Until `ready()`; ClusterError if `name` exits first or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(self.pids[name]) or reaped(self.pids[name]):
                raise ClusterError(f"{name} exited during start-up; see {self.log_tail(name)}")
            if ready():
                return
            time.sleep(0.1)
        raise ClusterError(f"{name} not ready after {timeout:.0f}s; see {self.log_tail(name)}")

    def end(self, name: str) -> None:
        """End `name`, if it was started."""
        if name in self.pids:
            end_process_group(self.pids.pop(name))
            self.recorded()

    def restart(self, name: str) -> None:
        """Kill `name` and start it again with the same command line (fault tests)."""
        argv = json.loads((self.state_dir / f"{name}.argv.json").read_text())
        self.end(name)
        self.spawn(name, argv, tie_to_parent=True)

    def running(self) -> bool:
        return bool(self.pids) and all(pid_alive(pid) for pid in self.pids.values())

    def log_path(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_path(name)
        try:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return str(path)
        return f"{path}:\n" + "\n".join(tail)

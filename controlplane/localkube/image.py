"""The images the local node runs, built here because no registry is reachable:

- the base image the Dockerfile starts from (its `PYTHON_IMAGE` argument): Debian bookworm
  (Python 3.11) made by `mmdebstrap`;
- the project image, built from the repository's Dockerfile by buildah;
- the pause image (the pods' sandbox process), a static binary built from `go/pause`.

Each is kept as a docker-archive in the cache (keyed by what it is built from), so a second
cluster imports it in seconds; buildah's own storage lives in the cache too, never in the
machine's default /var/lib/containers.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from localkube.build import GO_DIR, cache_root

log = logging.getLogger(__name__)

REPO = GO_DIR.parents[1]
BASE_IMAGE = "localhost/localkube-python:3.11-bookworm"
PAUSE_IMAGE = "localhost/localkube-pause:1"
PROJECT_IMAGE = "whatsapp-channels"  # the chart's image.repository
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What the Dockerfile builds from (pyproject's packages); a change rebuilds the image.
PROJECT_SOURCES = ("Dockerfile", ".dockerignore", "pyproject.toml", "contract", "operator", "api")
PROJECT_SOURCES_EXTRA = ("controlplane/localkube",)
# The machine's trust store and pip settings, lent to the build's RUN steps (never copied
# into an image), so pip reaches the package index the way this machine does.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_PIP_CONF = Path("/etc/pip.conf")


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Archive:
    """A docker-archive file holding one image, and the name it carries."""

    path: Path
    name: str  # as containerd names it after import, e.g. docker.io/library/x:1


def image_cache() -> Path:
    return cache_root().parent / "node-images"


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    """One build at a time per machine (parallel test sessions share the cache)."""
    image_cache().mkdir(parents=True, exist_ok=True)
    with open(image_cache() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(argv: list[str], *, cwd: Path | None = None, timeout: float = 1800.0) -> str:
    started = time.monotonic()
    result = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise ImageError(f"{' '.join(argv[:3])} ... failed ({result.returncode}):\n{tail}")
    log.info(
        "%s in %.0fs",
        " ".join(a for a in argv if not a.startswith("-"))[:60],
        time.monotonic() - started,
    )
    return result.stdout


def _buildah(*args: str) -> list[str]:
    store = image_cache() / "buildah"
    return [
        "buildah",
        "--root",
        str(store / "storage"),
        "--runroot",
        str(store / "run"),
        "--storage-driver",
        "overlay",
        *args,
    ]


def _digest_paths(paths: list[Path], *extra: str) -> str:
    digest = hashlib.sha256()
    for item in extra:
        digest.update(item.encode())
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _export(image: str, archive: Path, name: str) -> None:
    tmp = archive.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    _run(_buildah("push", image, f"docker-archive:{tmp}:{name}"))
    tmp.rename(archive)


def _base_image() -> str:
    """The Dockerfile's base image (Debian bookworm's Python 3.11) in buildah's storage."""
    key = hashlib.sha256(" ".join((*BASE_PACKAGES, DEBIAN_MIRROR)).encode()).hexdigest()[:12]
    marker = image_cache() / f"base-{key}.done"
    if marker.exists():
        return BASE_IMAGE
    image_cache().mkdir(parents=True, exist_ok=True)
    rootfs = image_cache() / f"base-{key}.tar"
    log.warning("building the base image (mmdebstrap of Debian bookworm)")
    _run(
        [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "bookworm",
            str(rootfs),
            DEBIAN_MIRROR,
        ]
    )
    container = _run(_buildah("from", "scratch")).strip()
    try:
        _run(_buildah("add", container, str(rootfs), "/"))
        _run(
            _buildah(
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--env",
                "LANG=C.UTF-8",
                "--cmd",
                "python3",
                container,
            )
        )
        _run(_buildah("commit", container, BASE_IMAGE))
    finally:
        subprocess.run(_buildah("rm", container), capture_output=True, check=False)
    rootfs.unlink()
    marker.touch()
    return BASE_IMAGE


def _project_image(tag: str) -> Archive:
    """The project image `whatsapp-channels:<tag>` built from the Dockerfile, as an archive."""
    sources = [REPO / name for name in (*PROJECT_SOURCES, *PROJECT_SOURCES_EXTRA)]
    key = _digest_paths([p for p in sources if p.exists()], tag)
    archive = image_cache() / f"project-{key}.tar"
    name = f"{PROJECT_IMAGE}:{tag}"
    result = Archive(path=archive, name=f"docker.io/library/{name}")
    if archive.exists():
        return result
    base = _base_image()
    volumes = [
        f"--volume={path}:{path}:ro" for path in (HOST_CA_BUNDLE, HOST_PIP_CONF) if path.exists()
    ]
    log.warning("building the project image from the Dockerfile (buildah)")
    _run(
        _buildah(
            "bud",
            "--layers",
            "--network=host",
            f"--build-arg=PYTHON_IMAGE={base}",
            *volumes,
            "--tag",
            f"localhost/{name}",
            "--file",
            str(REPO / "Dockerfile"),
            str(REPO),
        )
    )
    _export(f"localhost/{name}", archive, name)
    return result


def _pause_image() -> Archive:
    """The sandbox image: the `go/pause` program alone in an image."""
    module = GO_DIR / "pause"
    key = _digest_paths(sorted(module.iterdir()), os.environ.get("GOFLAGS", ""))
    archive = image_cache() / f"pause-{key}.tar"
    result = Archive(path=archive, name=PAUSE_IMAGE)
    if archive.exists():
        return result
    image_cache().mkdir(parents=True, exist_ok=True)
    binary = image_cache() / f"pause-{key}.bin"
    go = "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else "go"
    subprocess.run(
        [go, "build", "-trimpath", "-ldflags=-s -w", "-o", str(binary), "."],
        cwd=module,
        check=True,
        env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"},
        capture_output=True,
    )
    container = _run(_buildah("from", "scratch")).strip()
    try:
        _run(_buildah("copy", "--chmod", "0755", container, str(binary), "/pause"))
        _run(_buildah("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", container))
        _run(_buildah("commit", container, PAUSE_IMAGE))
    finally:
        subprocess.run(_buildah("rm", container), capture_output=True, check=False)
    binary.unlink()
    _export(PAUSE_IMAGE, archive, PAUSE_IMAGE)
    return result


def node_images(tag: str) -> list[Archive]:
    """The pause image and the project image (tag `tag`), built if missing."""
    with _build_lock():
        return [_pause_image(), _project_image(tag)]

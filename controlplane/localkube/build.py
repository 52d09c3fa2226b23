"""Build the control-plane binaries from the pinned Go modules, once per pin.

Binaries are cached outside the checkout (a fresh clone on the same machine reuses them),
in a folder keyed by a hash of the Go sources and the Go version: a change of pins rebuilds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

GO_DIR = Path(__file__).resolve().parents[1] / "go"
HELM = "helm.sh/helm/v3"


@dataclass(frozen=True)
class Binaries:
    kube: Path  # etcd, kube-apiserver, kube-controller-manager by first argument
    helm: Path


def cache_root() -> Path:
    if explicit := os.environ.get("LOCALKUBE_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "whatsapp-channels" / "controlplane"


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise RuntimeError("the Go toolchain is needed to build the local control plane")
    return go


def _pin_key(module: Path, go: str, *stamps: str) -> str:
    digest = hashlib.sha256(" ".join(stamps).encode())
    for name in sorted(p.name for p in module.iterdir() if p.suffix in {".go", ".mod", ".sum"}):
        digest.update(name.encode())
        digest.update((module / name).read_bytes())
    digest.update(subprocess.run([go, "version"], capture_output=True, text=True).stdout.encode())
    return digest.hexdigest()[:16]


def pinned_version(module: Path, path: str) -> str:
    """The version `module`'s go.mod requires of `path`."""
    for line in (module / "go.mod").read_text().splitlines():
        parts = line.split()
        if parts[:1] == [path] and len(parts) >= 2:
            return parts[1]
    raise RuntimeError(f"{path} is not pinned in {module / 'go.mod'}")


def _kube_ldflags(version: str) -> str:
    # What release builds stamp in, so clients (kubectl, helm) see a real server version.
    major, minor = version.lstrip("v").split(".")[:2]
    stamps = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    return " ".join(
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in stamps.items()
    )


def helm_default_kube_version(module: Path) -> tuple[str, str]:
    """The Kubernetes version helm assumes without a cluster or --kube-version: like Helm's
    release builds (its Makefile), the one its client-go is for (v0.34.x -> 1.34)."""
    client_go = pinned_version(module, "k8s.io/client-go").lstrip("v").split(".")
    return str(int(client_go[0]) + 1), client_go[1]


def _helm_ldflags(module: Path) -> str:
    # Unstamped, helm's default Kubernetes version stays at 1.20, and `helm template` of a
    # chart that requires a newer one fails without --kube-version.
    major, minor = helm_default_kube_version(module)
    stamps = [f"{HELM}/internal/version.version={pinned_version(module, HELM)}"] + [
        f"{HELM}/pkg/{package}.k8sVersion{name}={value}"
        for package in ("chartutil", "lint/rules")
        for name, value in (("Major", major), ("Minor", minor))
    ]
    return " ".join(f"-X {stamp}" for stamp in stamps)


def _build(module: Path, package: str, out: Path, ldflags: str, go: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial")
    started = time.monotonic()
    log.warning("building %s (first time for these pins; this takes a while)", out.name)
    subprocess.run(
        [go, "build", "-trimpath", f"-ldflags=-s -w {ldflags}", "-o", str(tmp), package],
        cwd=module,
        check=True,
        env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false -mod=mod"},
    )
    tmp.rename(out)  # atomic: a half-built binary is never taken for a finished one
    log.warning("built %s in %.0fs", out.name, time.monotonic() - started)


def ensure_built() -> Binaries:
    """Return the binaries, building whichever is missing for the current pins."""
    go = _go()
    kube_module, helm_module = GO_DIR / "kube", GO_DIR / "helm"
    helm_ldflags = _helm_ldflags(helm_module)
    kube = cache_root() / f"kube-{_pin_key(kube_module, go)}" / "kube"
    helm = cache_root() / f"helm-{_pin_key(helm_module, go, helm_ldflags)}" / "helm"
    if not kube.exists():
        version = pinned_version(kube_module, "k8s.io/kubernetes")
        _build(kube_module, ".", kube, _kube_ldflags(version), go)
    if not helm.exists():
        _build(helm_module, f"{HELM}/cmd/helm", helm, helm_ldflags, go)
    return Binaries(kube=kube, helm=helm)

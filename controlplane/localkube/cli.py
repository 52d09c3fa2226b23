"""`localkube up|down|status|env`: the local control plane for a person at a shell."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from localkube.build import ensure_built
from localkube.cluster import Cluster, ClusterError

DEFAULT_DIR = Path(".localkube")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localkube", description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder (%(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the binaries for the pinned versions (cached)")
    sub.add_parser("up", help="start a fresh cluster in the background")
    sub.add_parser("down", help="stop every process of the cluster")
    sub.add_parser("status", help="say whether the cluster runs")
    sub.add_parser("env", help="print `export KUBECONFIG=...` for a shell")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    state_dir: Path = args.dir.resolve()

    try:
        if args.command == "build":
            binaries = ensure_built()
            print(f"kube: {binaries.kube}\nhelm: {binaries.helm}")
            return 0
        if args.command == "up":
            cluster = Cluster.start(state_dir, tie_to_parent=False)
            print(f"cluster up in {cluster.started_in:.1f}s: {cluster.server}")
            print(f"export KUBECONFIG={cluster.kubeconfig}")
            return 0
        existing = Cluster.attach(state_dir)
        if args.command == "down":
            if existing is not None:
                existing.stop()
            print("cluster down")
            return 0
        if args.command == "status":
            if existing is not None and existing.running():
                print(f"running: {existing.server} (KUBECONFIG={existing.kubeconfig})")
                return 0
            print("not running")
            return 1
        if existing is None:
            print("no cluster in this folder; run `localkube up`", file=sys.stderr)
            return 1
        print(f"export KUBECONFIG={existing.kubeconfig}")
        return 0
    except ClusterError as exc:
        print(f"localkube: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

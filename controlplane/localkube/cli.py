"""`localkube up|down|status|env`: the local control plane for a person at a shell."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from localkube import node
from localkube.build import ensure_built
from localkube.cluster import Cluster
from localkube.image import ImageError
from localkube.node import NodeError
from localkube.processes import ClusterError

DEFAULT_DIR = Path(".localkube")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localkube", description=__doc__)
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="state folder (%(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the binaries for the pinned versions (cached)")
    build.add_argument(
        "--node", action="store_true", help="also the node's images (base, pause, project)"
    )
    up = sub.add_parser("up", help="start a fresh cluster in the background")
    up.add_argument(
        "--node",
        action="store_true",
        help="with a node that runs pods (containerd, kubelet, kube-proxy, DNS; needs root)",
    )
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
            if args.node:
                for archive in node.images():
                    print(f"image {archive.name}: {archive.path}")
            return 0
        if args.command == "up":
            cluster = Cluster.start(state_dir, tie_to_parent=False, node=args.node)
            print(f"cluster up in {cluster.started_in:.1f}s: {cluster.server}")
            if (net := cluster.network) is not None:
                print(f"node {node.NODE_NAME}: {net.node_ip} (netns {net.netns})")
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
                if existing.network is not None:
                    net = existing.network
                    print(f"node {node.NODE_NAME}: {net.node_ip} in netns {net.netns}")
                    print(existing.kubectl("get", "nodes", "-o", "wide").stdout.rstrip())
                return 0
            print("not running")
            return 1
        if existing is None:
            print("no cluster in this folder; run `localkube up`", file=sys.stderr)
            return 1
        print(f"export KUBECONFIG={existing.kubeconfig}")
        return 0
    except (ClusterError, NodeError, ImageError) as exc:
        print(f"localkube: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

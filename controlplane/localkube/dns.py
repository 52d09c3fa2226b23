"""The local node's cluster DNS: the smallest thing that resolves Service names for pods.

`<service>.<namespace>.svc.<domain>` answers the Service's ClusterIP (A records over UDP);
every other name is NXDOMAIN: nothing is forwarded anywhere, pods reach no name outside the
cluster. Services are listed from the apiserver every few seconds, and at once when a name
of the cluster domain is not known yet (a Service created a moment ago).

    python -m localkube.dns --listen 10.213.0.1 --kubeconfig .localkube/kubeconfig
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import socket
import socketserver
import ssl
import struct
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

TYPE_A = 1
CLASS_IN = 1
TTL = 5
REFRESH_SECONDS = 3.0
MISS_REFRESH_SECONDS = 0.2


class Services:
    """ClusterIPs by (name, namespace), listed from the apiserver."""

    def __init__(self, kubeconfig: Path) -> None:
        config: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self._url = cluster["server"].rstrip("/") + "/api/v1/services"
        self._context = ssl.create_default_context(cafile=cluster["certificate-authority"])
        self._context.load_cert_chain(user["client-certificate"], user["client-key"])
        self._lock = threading.Lock()
        self._ips: dict[tuple[str, str], str] = {}
        self._listed_at = 0.0

    def refresh(self) -> None:
        with urllib.request.urlopen(self._url, timeout=5, context=self._context) as response:  # noqa: S310
            items = json.load(response)["items"]
        ips = {
            (item["metadata"]["name"], item["metadata"]["namespace"]): item["spec"]["clusterIP"]
            for item in items
            if item["spec"].get("clusterIP") not in (None, "", "None")
        }
        with self._lock:
            self._ips = ips
            self._listed_at = time.monotonic()

    def lookup(self, name: str, namespace: str) -> str | None:
        with self._lock:
            found = self._ips.get((name, namespace))
            stale = time.monotonic() - self._listed_at > MISS_REFRESH_SECONDS
        if found is None and stale:
            try:
                self.refresh()
            except OSError as exc:
                log.warning("listing services failed: %s", exc)
            with self._lock:
                found = self._ips.get((name, namespace))
        return found

    def keep_fresh(self) -> None:
        while True:
            try:
                self.refresh()
            except OSError as exc:
                log.warning("listing services failed: %s", exc)
            time.sleep(REFRESH_SECONDS)


def _read_name(packet: bytes, offset: int) -> tuple[str, int]:
    labels: list[str] = []
    while True:
        length = packet[offset]
        if length == 0:
            return ".".join(labels), offset + 1
        if length & 0xC0:
            raise ValueError("compressed names are not expected in questions")
        labels.append(packet[offset + 1 : offset + 1 + length].decode("ascii", "replace"))
        offset += 1 + length


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def answer(packet: bytes, services: Services, domain: str) -> bytes | None:
    """The response to one query packet (None: not a query we can parse)."""
    if len(packet) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if flags & 0x8000 or qdcount != 1:
        return None
    try:
        qname, end = _read_name(packet, 12)
        qtype, qclass = struct.unpack("!HH", packet[end : end + 4])
    except (ValueError, IndexError, struct.error):
        return None
    question = packet[12 : end + 4]
    name = qname.lower().rstrip(".")
    labels = name.split(".")
    suffix = ["svc", *domain.split(".")]
    ip = None
    known = False
    if len(labels) == 2 + len(suffix) and labels[2:] == suffix:
        ip = services.lookup(labels[0], labels[1])
        known = ip is not None
    rcode = 0 if known else 3  # NXDOMAIN
    answers = b""
    if known and ip is not None and qtype == TYPE_A and qclass == CLASS_IN:
        answers = struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + socket.inet_aton(ip)
    response_flags = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080 | rcode  # QR AA RD RA
    header = struct.pack("!HHHHHH", ident, response_flags, 1, 1 if answers else 0, 0, 0)
    return header + question + answers


def query(server: str, name: str, *, timeout: float = 2.0, port: int = 53) -> str | None:
    """Ask `server` for the A record of `name`: its address, or None when it has none."""
    ident = secrets.randbelow(0xFFFF)
    packet = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    packet += _encode_name(name) + struct.pack("!HH", TYPE_A, CLASS_IN)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, (server, port))
        while True:
            data, _ = sock.recvfrom(4096)
            if struct.unpack("!H", data[:2])[0] == ident:
                break
    ancount = struct.unpack("!H", data[6:8])[0]
    if not ancount:
        return None
    _, end = _read_name(data, 12)
    return socket.inet_ntoa(data[end + 4 + 12 : end + 4 + 16])


def serve(listen: str, port: int, services: Services, domain: str) -> None:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            packet, sock = self.request
            response = answer(packet, services, domain)
            if response is not None:
                sock.sendto(response, self.client_address)

    threading.Thread(target=services.keep_fresh, daemon=True).start()
    with socketserver.ThreadingUDPServer((listen, port), Handler) as server:
        server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="localkube.dns", description=__doc__)
    parser.add_argument("--listen", required=True, help="address to serve on (UDP)")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--domain", default="cluster.local")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    serve(args.listen, args.port, Services(args.kubeconfig), args.domain)


if __name__ == "__main__":
    main()

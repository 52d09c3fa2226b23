"""Handing a verified event to its instance, with proof that the receiver sent it.

The proof: `X-Receiver-Timestamp: <unix seconds>` and
`X-Receiver-Signature: v1=<hex HMAC-SHA256(forward secret, "<timestamp>.<instance id>." + body)>`.
The instance id inside the MAC means an event for one instance cannot be replayed to
another that shares the key; the timestamp lets the instance refuse old replays.
`forward_proof_valid` is the check an instance runs.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import time

import aiohttp

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Receiver-Timestamp"
SIGNATURE_HEADER = "X-Receiver-Signature"
INSTANCE_HEADER = "X-WhatsApp-Instance-Id"
_VERSION = "v1="
# How much of an instance's answer is read: it is ignored, and an instance is tenant code.
_ANSWER_READ_LIMIT = 64 * 1024


def forward_proof(secret: bytes, timestamp: int, instance_id: str, body: bytes) -> str:
    mac = hmac.new(secret, f"{timestamp}.{instance_id}.".encode(), hashlib.sha256)
    mac.update(body)
    return _VERSION + mac.hexdigest()


def forward_proof_valid(
    secret: bytes,
    *,
    instance_id: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now: float | None = None,
    tolerance_seconds: float = 300.0,
) -> bool:
    """What an instance checks: a fresh timestamp and a matching MAC, in constant time."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    expected = forward_proof(secret, int(timestamp), instance_id, body)
    return hmac.compare_digest(expected.encode(), signature.encode(errors="replace"))


class Delivery(enum.Enum):
    ACCEPTED = "accepted"  # the instance answered 2xx
    REFUSED = "refused"  # it answered something else
    UNREACHABLE = "unreachable"
    TIMED_OUT = "timed out"


class Forwarder:
    """One pooled HTTP client for every instance; a delivery is one POST with a timeout."""

    def __init__(
        self, url_template: str, secret: bytes, *, timeout: float, max_connections: int
    ) -> None:
        self._url_template = url_template
        self._key = hmac.new(secret, digestmod=hashlib.sha256)  # keyed once, copied per event
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=30)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                headers={"User-Agent": "whatsapp-receiver"},
                auto_decompress=False,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, instance_id: str) -> str:
        return self._url_template.format(instance_id=instance_id)

    def proof(self, timestamp: int, instance_id: str, body: bytes) -> str:
        mac = self._key.copy()
        mac.update(f"{timestamp}.{instance_id}.".encode())
        mac.update(body)
        return _VERSION + mac.hexdigest()

    async def deliver(self, instance_id: str, body: bytes) -> Delivery:
        if self._session is None:
            await self.start()
        assert self._session is not None
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            INSTANCE_HEADER: instance_id,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: self.proof(timestamp, instance_id, body),
        }
        try:
            async with self._session.post(
                self.url(instance_id), data=body, headers=headers, allow_redirects=False
            ) as answer:
                await answer.content.read(_ANSWER_READ_LIMIT)
                status = answer.status
        except TimeoutError:
            log.warning("instance %s did not answer in time", instance_id)
            return Delivery.TIMED_OUT
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("instance %s unreachable: %s", instance_id, type(exc).__name__)
            return Delivery.UNREACHABLE
        if 200 <= status < 300:
            return Delivery.ACCEPTED
        log.warning("instance %s refused an event: HTTP %d", instance_id, status)
        return Delivery.REFUSED


async def deliver_all(forwarder: Forwarder, parts: list[tuple[str, bytes]]) -> list[Delivery]:
    """Several instances at once (a batch spanning channels)."""
    if len(parts) == 1:
        return [await forwarder.deliver(*parts[0])]
    return list(await asyncio.gather(*(forwarder.deliver(i, b) for i, b in parts)))

"""Handing a verified event to its instance: the delivery rules.

One POST per instance, under a timeout, over the lean HTTP/1.1 client (`http1_client`),
signed twice: as Meta signs (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256(channel app
secret, the exact bytes forwarded)>`, `webhook_rules.meta_signature`: computed by the
receiver for every request, the same HMAC that checked Meta's when the bytes are Meta's,
never copied from Meta's header), so an instance written with a WhatsApp Cloud API library (pywa,
whatsapp-api-js) checks it as it checks Meta; and with the receiver's own forward proof
(`whatsapp_channel.forward_proof`). The instance's answer decides what Meta is told: 2xx
accepted, anything else refused, no answer unreachable or timed out.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import time
from urllib.parse import urlsplit

from whatsapp_channel.forward_proof import (
    INSTANCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ForwardSigner,
)

from .http1_client import FAILURES, Http1Client, Target, TimedOut

log = logging.getLogger(__name__)

META_SIGNATURE_HEADER = "X-Hub-Signature-256"
# The per-event headers: `%` formatting of bytes is the cheapest way to build them.
_SIGNED = (
    f"{TIMESTAMP_HEADER}: %d\r\n{SIGNATURE_HEADER}: %s\r\n{META_SIGNATURE_HEADER}: sha256=%s\r\n"
).encode()
# Per-instance targets kept; past this the cache starts over (channels come and go).
_TARGETS_CACHED = 65536
# The share of all delivery slots kept for instances with no delivery in flight.
_RESERVE = 0.25


class Delivery(enum.Enum):
    ACCEPTED = "accepted"  # the instance answered 2xx
    REFUSED = "refused"  # it answered something else
    UNREACHABLE = "unreachable"
    TIMED_OUT = "timed out"
    BUSY = "busy"  # not tried: the instance (or the forwarder) already had its most in flight


class Forwarder:
    """Delivers events to `url_template` (`{instance_id}` its one placeholder), signed with
    `secret`; a delivery is one POST with a timeout.

    At most `max_per_instance` deliveries to one instance are in flight at once, and
    `max_connections` in all. A delivery past either is not tried (`Delivery.BUSY`) rather
    than queued, so a hung instance costs others neither connections nor deadline.

    So that a few hung instances cannot hold every slot between them (16 hung instances at
    16 each were all 256), slots are shared out fairly (issue 21):

    - an instance's first delivery in flight needs only a free slot; each further one needs
      more than a quarter of all slots free (`_RESERVE`), so that quarter stays for the
      first deliveries of the others;
    - an instance whose last delivery timed out gets one delivery in flight, until one is
      answered again.

    The cap per tenant is the cap per instance (an instance is one tenant's agent); a cap
    per forward host would add nothing to it: the URL template either gives each instance a
    host of its own or gives all of them the same one."""

    def __init__(
        self,
        url_template: str,
        secret: bytes,
        *,
        timeout: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,
        max_per_instance: int = 16,
    ) -> None:
        parts = urlsplit(url_template)
        if parts.scheme not in ("http", "https") or "@" in parts.netloc:
            raise ValueError("the forward URL must be http(s)://host[:port]/... without userinfo")
        self._url_template = url_template
        self._signer = ForwardSigner(secret)
        self._timeout = timeout
        self._client = Http1Client(max_connections=max_connections, ssl_context=ssl_context)
        self._max_connections = max_connections
        self._max_per_instance = max_per_instance
        self._reserve = int(max_connections * _RESERVE)
        self._in_flight = 0
        self._in_flight_to: dict[str, int] = {}
        self._timed_out: set[str] = set()  # instances whose last delivery timed out
        self._targets: dict[str, Target] = {}

    async def start(self) -> None:
        await self._client.start(tls=self._url_template.startswith("https:"))

    async def close(self) -> None:
        await self._client.close()

    def url(self, instance_id: str) -> str:
        return self._url_template.format(instance_id=instance_id)

    def _target(self, instance_id: str) -> Target:
        target = self._targets.get(instance_id)
        if target is None:
            headers = {
                "User-Agent": "whatsapp-receiver",
                "Content-Type": "application/json",
                INSTANCE_HEADER: instance_id,
            }
            target = Target.post_to(self.url(instance_id), headers)
            if len(self._targets) >= _TARGETS_CACHED:
                self._targets.clear()
            self._targets[instance_id] = target
        return target

    async def deliver(self, instance_id: str, body: bytes, signature: bytes) -> Delivery:
        """POSTs `body` to the instance with `signature` (`webhook_rules.meta_signature` of
        `body` with its channel's app secret), as Meta signs."""
        if not self._client.open:
            await self.start()
        try:
            target = self._target(instance_id)
        except ValueError as exc:
            log.warning("instance %s has no usable URL: %s", instance_id, exc)
            return Delivery.UNREACHABLE
        in_flight = self._in_flight_to.get(instance_id, 0)
        if self._in_flight >= self._max_connections or (
            in_flight and self._busy(instance_id, in_flight)
        ):
            log.info("instance %s has too many events in flight", instance_id)
            return Delivery.BUSY
        self._in_flight_to[instance_id] = in_flight + 1
        self._in_flight += 1
        try:
            delivery = await self._deliver(target, instance_id, body, signature)
            if delivery is Delivery.TIMED_OUT:
                if len(self._timed_out) >= _TARGETS_CACHED:
                    self._timed_out.clear()
                self._timed_out.add(instance_id)
            elif delivery is not Delivery.UNREACHABLE:  # it answered
                self._timed_out.discard(instance_id)
            return delivery
        finally:
            self._in_flight -= 1
            left = self._in_flight_to[instance_id] - 1
            if left:
                self._in_flight_to[instance_id] = left
            else:
                del self._in_flight_to[instance_id]

    def _busy(self, instance_id: str, in_flight: int) -> bool:
        """Whether an instance with `in_flight` (at least one) deliveries may not have more."""
        return (
            in_flight >= self._max_per_instance
            or instance_id in self._timed_out
            or self._max_connections - self._in_flight <= self._reserve
        )

    async def _deliver(
        self, target: Target, instance_id: str, body: bytes, signature: bytes
    ) -> Delivery:
        timestamp = int(time.time())
        proof = _SIGNED % (
            timestamp,
            self._signer.sign(timestamp, instance_id, body).encode(),
            signature,
        )
        try:
            status = await self._client.post(target, proof, body, timeout=self._timeout)
        except TimedOut:
            log.warning("instance %s did not answer in time", instance_id)
            return Delivery.TIMED_OUT
        except FAILURES as exc:
            log.warning("instance %s unreachable: %s", instance_id, type(exc).__name__)
            return Delivery.UNREACHABLE
        if 200 <= status < 300:
            return Delivery.ACCEPTED
        log.warning("instance %s refused an event: HTTP %d", instance_id, status)
        return Delivery.REFUSED


async def deliver_all(
    forwarder: Forwarder, parts: list[tuple[str, bytes, bytes]]
) -> list[Delivery]:
    """Several instances at once (a batch spanning channels): (instance id, body, signature)."""
    if len(parts) == 1:
        return [await forwarder.deliver(*parts[0])]
    return list(await asyncio.gather(*(forwarder.deliver(i, b, s) for i, b, s in parts)))

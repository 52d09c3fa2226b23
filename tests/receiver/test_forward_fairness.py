"""Issue 21, item 4: with 16 deliveries per instance and 256 in all, 16 hung instances held
every delivery slot, and everyone else's events got 503. Expected: instances with no delivery
in flight always find a slot (a quarter of them is kept for first deliveries), and an
instance whose delivery timed out gets one delivery in flight until it answers again."""

from __future__ import annotations

import asyncio

from channel_api.receiver.forward import Delivery, Forwarder
from channel_api.receiver.webhook_rules import meta_signature

from tests.receiver.conftest import FORWARD_SECRET
from tests.receiver.instances import Instances
from tests.support.payloads import new_instance_id

PER_INSTANCE = 16
ALL = 256
HUNG = [new_instance_id() for _ in range(16)]
HEALTHY = [new_instance_id() for _ in range(16)]
# A healthy instance on a loaded machine answers well within this; a hung one never does.
TIMEOUT = 5.0
BODY = b'{"object":"whatsapp_business_account","entry":[]}'
APP_SECRET = b"fairness-app-secret"


async def _deliver_many(forwarder: Forwarder, instances: list[str], each: int) -> list[Delivery]:
    return list(
        await asyncio.gather(
            *(
                forwarder.deliver(i, BODY, meta_signature(APP_SECRET, BODY))
                for i in instances
                for _ in range(each)
            )
        )
    )


def _tried(server: Instances) -> int:
    """Deliveries to the hung instances that reached them."""
    return sum(r.instance_id in HUNG for r in server.requests)


async def test_hung_instances_cannot_hold_every_delivery_slot():
    async with Instances(hang=set(HUNG)) as server:
        forwarder = Forwarder(
            server.url_template,
            FORWARD_SECRET,
            timeout=TIMEOUT,
            max_connections=ALL,
            max_per_instance=PER_INSTANCE,
        )
        try:
            # Every hung instance is sent as many events as its cap, at once: past three
            # quarters of all slots, only first deliveries are tried.
            hung = asyncio.ensure_future(_deliver_many(forwarder, HUNG, PER_INSTANCE))
            held = ALL * 3 // 4
            await server.wait_for(lambda: _tried(server) >= held)
            # Meanwhile every other instance's event is delivered.
            assert await _deliver_many(forwarder, HEALTHY, 1) == [Delivery.ACCEPTED] * 16
            outcomes = await hung
            # Three quarters of the slots, and the first delivery of each instance past them.
            tried = outcomes.count(Delivery.TIMED_OUT)
            assert held <= tried <= held + len(HUNG)
            assert outcomes.count(Delivery.BUSY) == len(outcomes) - tried

            # Having timed out, each hung instance gets one delivery in flight; a healthy one
            # its whole cap beside them.
            before = _tried(server)
            hung = asyncio.ensure_future(_deliver_many(forwarder, HUNG, PER_INSTANCE))
            await server.wait_for(lambda: _tried(server) >= before + 16)
            healthy = await _deliver_many(forwarder, HEALTHY[:1], PER_INSTANCE)
            assert healthy == [Delivery.ACCEPTED] * PER_INSTANCE
            assert _tried(server) == before + 16
            server.release.set()  # the hung instances answer again
            outcomes = await hung
            assert outcomes.count(Delivery.ACCEPTED) == 16
            assert outcomes.count(Delivery.BUSY) == len(outcomes) - 16

            # Answered again: the whole cap.
            again = await _deliver_many(forwarder, HUNG[:1], PER_INSTANCE)
            assert again == [Delivery.ACCEPTED] * PER_INSTANCE
        finally:
            await forwarder.close()

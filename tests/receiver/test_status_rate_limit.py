"""The receiver's status writes on the real cluster: lastEventAt is written, and at most once
per WA_RECEIVER_STATUS_WRITE_INTERVAL_SECONDS however many events arrive (issue 14; the
schedule itself is pinned with a fake clock in test_status.py).

The writes are counted from the apiserver's own watch history of the channel. The bound is
one the receiver cannot exceed however slow this machine is: writes at least `interval`
apart, within the span the events were sent in, plus the one at shutdown."""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from pathlib import Path

import httpx
from channel_launcher.product import start_receiver
from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import running
from whatsapp_channel.kube import Kube, channels_path
from whatsapp_channel.model import API_VERSION, KIND

from tests.support.identities import identity
from tests.support.payloads import (
    channel_secret,
    meta_bytes,
    new_instance_id,
    notification,
    signed,
    text_change,
)
from tests.support.sink import Sink

PHONE = "106540352248001"
APP_SECRET = "rate-limit-app-secret-0123456789"
INTERVAL = 2.0
SPAN = 4 * INTERVAL


async def test_status_writes_are_at_most_one_per_interval(
    cluster: Cluster, crd: Path, namespace: str, sink: Sink, tmp_path: Path
) -> None:
    instance = new_instance_id()
    channel = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": instance, "namespace": namespace},
        "spec": {
            "instanceId": instance,
            "phoneNumberId": PHONE,
            "secretRef": {"name": f"whatsapp-{instance}"},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(channel))
    kube = Kube.connect(str(cluster.kubeconfig), user_agent="tests")
    try:
        created = await kube.get(channels_path(namespace, instance))
        secret = channel_secret(instance, PHONE, app_secret=APP_SECRET, verify_token="tok")
        secret["metadata"]["namespace"] = namespace
        secret["metadata"]["ownerReferences"][0]["uid"] = created["metadata"]["uid"]
        cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
        start = created["metadata"]["resourceVersion"]

        logs = Path(cluster.state_dir) / "logs"
        forward_secret = logs / f"rate-limit-forward-secret-{instance}"
        logs.mkdir(parents=True, exist_ok=True)
        forward_secret.write_bytes(secrets.token_hex(32).encode())
        service = start_receiver(
            identity(cluster, "receiver", namespace, tmp_path),
            logs,
            namespace=namespace,
            forward_url_template=sink.url_template,
            forward_secret_file=forward_secret,
            forward_timeout_seconds=10,
            status_write_interval_seconds=INTERVAL,
            port=free_port(),
        )
        sent = 0
        with running(service):
            url = f"{service.url}/hooks/whatsapp/{instance}"
            async with httpx.AsyncClient(timeout=30) as http:
                began = time.monotonic()
                while time.monotonic() - began < SPAN:
                    body = meta_bytes(notification([text_change(PHONE, f"event {sent}")]))
                    answer = await http.post(url, content=body, headers=signed(APP_SECRET, body))
                    assert answer.status_code == 200, answer.text
                    sent += 1
                    await asyncio.sleep(0.1)  # a steady trickle, not a flood
                span = time.monotonic() - began
        # The receiver has stopped (and written what was pending at shutdown).

        writes: list[dict[str, object]] = []

        async def history() -> None:
            path = channels_path(namespace)
            async for event in kube.watch(path, resource_version=start, timeout_seconds=2):
                if event["type"] == "MODIFIED":
                    writes.append(event["object"]["status"])

        await asyncio.wait_for(history(), timeout=30)
        assert sent >= 2 * len(writes)  # events far outnumber writes, however fast they went
        assert writes, "the receiver never wrote the channel's status"
        assert all(set(status) == {"lastEventAt"} for status in writes), writes
        assert len(writes) <= math.floor(span / INTERVAL) + 2, (len(writes), span, sent)
        final = (await kube.get(channels_path(namespace, instance)))["status"]
        assert str(final["lastEventAt"]).endswith("Z")
    finally:
        await kube.close()

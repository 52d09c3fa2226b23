"""The receiver's metrics, scraped from the real process on its own port after real events:
each refusal counted under its own reason (the caller still sees one answer), forwards
counted and timed, and no label value an instance id, a phone number or a secret."""

from __future__ import annotations

from pathlib import Path

import httpx
from localkube import Cluster
from localkube.cluster import free_port

from tests.support.identities import identity
from tests.support.owners import apply_owned
from tests.support.payloads import (
    channel_secret,
    meta_bytes,
    new_instance_id,
    notification,
    signed,
    text_change,
)
from tests.support.processes import log_dir, run_receiver
from tests.support.scrape import assert_no_label_holds, scrape, value
from tests.support.sink import Sink

PHONE = "106540352249001"
APP_SECRET = "metrics-app-secret-0123456789"
VERIFY_TOKEN = "metrics-verify-token-0123456789"
EVENTS = "whatsapp_receiver_webhook_events_total"


async def test_events_are_counted_by_outcome_on_the_metrics_port_only(
    cluster: Cluster, crd: Path, namespace: str, sink: Sink, tmp_path: Path
) -> None:
    instance = new_instance_id()
    secret = channel_secret(instance, PHONE, app_secret=APP_SECRET, verify_token=VERIFY_TOKEN)
    apply_owned(cluster, namespace, secret)
    kubeconfig = identity(cluster, "receiver", namespace, tmp_path)
    metrics_port = free_port()
    with run_receiver(
        kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        forward_url_template=sink.url_template,
        metrics_port=metrics_port,
    ) as receiver:
        before = await scrape(metrics_port)
        body = meta_bytes(notification([text_change(PHONE, "hi")]))
        url = f"{receiver.url}/hooks/whatsapp/{instance}"
        async with httpx.AsyncClient(timeout=10) as http:
            ok = await http.post(url, content=body, headers=signed(APP_SECRET, body))
            assert ok.status_code == 200
            forged = await http.post(url, content=body, headers=signed("not-the-secret", body))
            unknown = await http.post(
                f"{receiver.url}/hooks/whatsapp/{new_instance_id()}",
                content=body,
                headers=signed(APP_SECRET, body),
            )
            # Refusals stay one answer to the caller; only the metrics tell them apart.
            assert (forged.status_code, forged.text) == (unknown.status_code, unknown.text)
            assert forged.status_code == 403
            unsigned = await http.post(url, content=body)
            assert unsigned.status_code == 401
            # The public port serves no metrics.
            assert (await http.get(f"{receiver.url}/metrics")).status_code == 404
        await sink.wait_for(1)
        after = await scrape(metrics_port)

    def moved(outcome: str) -> float:
        labels = {"endpoint": "per_channel", "outcome": outcome}
        return value(after, EVENTS, **labels) - value(before, EVENTS, **labels)

    assert moved("forwarded") == 1
    assert moved("bad_signature") == 1
    assert moved("unknown_channel") == 1
    assert moved("missing_signature") == 1
    forward_count = "whatsapp_receiver_forward_duration_seconds_count"
    assert value(after, forward_count, endpoint="per_channel") >= 1
    assert value(after, "whatsapp_receiver_forward_failures_total", reason="refused") == 0
    assert_no_label_holds(
        after, instance, PHONE, APP_SECRET, VERIFY_TOKEN, receiver.forward_secret.decode()
    )

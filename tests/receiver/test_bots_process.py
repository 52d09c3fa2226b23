"""Issue 15 on the real control plane: the `whatsapp-receiver` process, learning its channels
from Secrets in the apiserver, forwards Meta's events to a real pywa bot that checks
`X-Hub-Signature-256` with the channel's app secret, on the channel's URL and the shared one.
When the channel's app secret is rotated and the bot still holds the old one, the bot refuses,
Meta gets a 5xx, and the metrics count a refused forward, not a delivered one."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from localkube import Cluster
from localkube.cluster import free_port

from tests.receiver import meta_examples as meta
from tests.receiver.bots import pywa_bot
from tests.receiver.test_bots import assert_pywa_typed
from tests.support.identities import identity
from tests.support.owners import apply_owned
from tests.support.payloads import channel_secret, meta_bytes, signed
from tests.support.processes import log_dir, run_receiver
from tests.support.scrape import scrape, value

APP_SECRET = "process-bot-app-secret-0123456789"
ROTATED = "process-bot-rotated-app-secret-0123"
PHONE = meta.PHONE_NUMBER_ID
OTHER_PHONE = "106540352249777"
EVENTS = "whatsapp_receiver_webhook_events_total"


def _apply(cluster: Cluster, namespace: str, secret: dict[str, Any]) -> None:
    apply_owned(cluster, namespace, secret)


async def test_the_receiver_process_forwards_to_a_pywa_bot_signed_with_the_channel_secret(
    cluster: Cluster, crd: Path, namespace: str, tmp_path: Path
) -> None:
    instance, other = str(uuid.uuid4()), str(uuid.uuid4())
    secret = channel_secret(instance, PHONE, app_secret=APP_SECRET, verify_token="vt-1")
    _apply(cluster, namespace, secret)
    _apply(
        cluster,
        namespace,
        channel_secret(other, OTHER_PHONE, app_secret=APP_SECRET, verify_token="vt-2"),
    )
    kubeconfig = identity(cluster, "receiver", namespace, tmp_path)
    metrics_port = free_port()
    async with pywa_bot(instance, PHONE, APP_SECRET) as bot:
        with run_receiver(
            kubeconfig,
            log_dir(cluster),
            namespace=namespace,
            forward_url_template=bot.url_template,
            metrics_port=metrics_port,
        ) as receiver:
            before = await scrape(metrics_port)
            async with httpx.AsyncClient(timeout=60) as http:
                body = meta_bytes(meta.TEXT)
                answer = await http.post(
                    f"{receiver.url}/hooks/whatsapp/{instance}",
                    content=body,
                    headers=signed(APP_SECRET, body),
                )
                assert answer.status_code == 200, answer.text
                await bot.wait_for(handled=1)
                assert_pywa_typed(bot.handled[0], meta.TEXT)

                theirs = meta.for_phone(meta.BUTTON_REPLY, OTHER_PHONE)
                batch = {**meta.BUTTON_REPLY, "entry": theirs["entry"] + meta.BUTTON_REPLY["entry"]}
                body = meta_bytes(batch)
                answer = await http.post(
                    f"{receiver.url}/hooks/whatsapp", content=body, headers=signed(APP_SECRET, body)
                )
                assert answer.status_code == 200, answer.text
                await bot.wait_for(handled=2, requests=3)
                assert_pywa_typed(bot.handled[1], meta.BUTTON_REPLY)
                assert [r.path for r in bot.to_others()] == [f"/agents/{other}/whatsapp"]
                assert all(OTHER_PHONE.encode() not in (r.body or b"") for r in bot.to_bot())
                middle = await scrape(metrics_port)

                # The app secret is rotated at Meta and in the channel; the bot keeps the old.
                secret["data"]["app_secret"] = base64.b64encode(ROTATED.encode()).decode()
                _apply(cluster, namespace, secret)
                body = meta_bytes(meta.for_phone(meta.TEXT, PHONE, body="after the rotation"))
                deadline = time.monotonic() + 30
                while True:  # until the receiver's watch has the new secret
                    answer = await http.post(
                        f"{receiver.url}/hooks/whatsapp/{instance}",
                        content=body,
                        headers=signed(ROTATED, body),
                    )
                    if answer.status_code != 403 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                assert answer.status_code == 502, answer.text
                await bot.wait_for(requests=4)
                after = await scrape(metrics_port)

    def moved(
        samples: dict[Any, float], since: dict[Any, float], endpoint: str, outcome: str
    ) -> float:
        labels = {"endpoint": endpoint, "outcome": outcome}
        return value(samples, EVENTS, **labels) - value(since, EVENTS, **labels)

    assert moved(middle, before, "per_channel", "forwarded") == 1
    assert moved(middle, before, "shared", "forwarded") == 1
    assert moved(after, middle, "per_channel", "forwarded") == 0
    assert moved(after, middle, "per_channel", "forward_refused") == 1
    failures = "whatsapp_receiver_forward_failures_total"
    assert value(after, failures, reason="refused") - value(middle, failures, reason="refused") == 1
    assert [r.status for r in bot.to_bot()] == [200, 200, 403]  # pywa refused the last one
    assert len(bot.handled) == 2

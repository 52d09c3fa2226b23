"""End to end on the real control plane: a channel POSTed through the facade, reconciled by
the operator, answers Meta's challenge at its webhook_url, and its signed events reach the
instance (a local sink); the instance down means Meta gets a 5xx; an app secret rotated
through the facade takes effect within seconds. Laid out as the chart does it: the operator's
sealing keys in a namespace of their own, which the receiver's account cannot read."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from pathlib import Path

import httpx
from localkube import Cluster
from localkube.cluster import free_port
from whatsapp_channel.kube import JSON
from whatsapp_channel.model import KIND

from tests.support.graph import shared_standin
from tests.support.identities import identity
from tests.support.payloads import meta_bytes, notification, signed, status_change, text_change
from tests.support.processes import log_dir, run_facade, run_operator, run_receiver
from tests.support.sink import Sink

PHONE = "106540352249999"


async def status_with(cluster: Cluster, namespace: str, instance: str, field: str) -> JSON:
    """The channel's status once it has `field` (generous: a loaded machine is slow)."""
    deadline = time.monotonic() + 60
    while True:
        got = json.loads(
            cluster.kubectl("get", KIND, instance, "-n", namespace, "-o", "json").stdout
        )
        status: JSON = got.get("status") or {}
        if status.get(field):
            return status
        assert time.monotonic() < deadline, f"{field} never written: {status}"
        await asyncio.sleep(0.2)


async def test_facade_channel_to_meta_challenge_to_instance(
    cluster: Cluster, crd: Path, namespace: str, keys_namespace: str, sink: Sink, tmp_path: Path
) -> None:
    logs = log_dir(cluster)
    api_key = secrets.token_urlsafe(32)
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"admin {api_key}\n")
    receiver_port = free_port()
    webhook_base = f"http://127.0.0.1:{receiver_port}"

    with (
        run_operator(
            cluster.kubeconfig,
            logs,
            namespace=namespace,
            **shared_standin().operator_env(webhook_base),
            keys_namespace=keys_namespace,
        ),
        run_receiver(
            identity(cluster, "receiver", namespace, tmp_path),
            logs,
            port=receiver_port,
            namespace=namespace,
            forward_url_template=sink.url_template,
        ) as receiver,
        run_facade(
            identity(cluster, "facade", namespace, tmp_path, keys_namespace=keys_namespace),
            logs,
            namespace=namespace,
            api_keys_file=keys_file,
            ready_wait_seconds=20,
            keys_namespace=keys_namespace,
        ) as facade,
    ):
        instance = str(uuid.uuid4())
        api = f"{facade.url}/v1/instances/{instance}/channels/whatsapp"
        standin = shared_standin()
        standin.seed(
            PHONE,
            {
                "access_token": "EAAG-e2e-access-token",
                "app_secret": "e2e-app-secret-one-0123456789",
            },
        )
        async with httpx.AsyncClient(headers={"X-Api-Key": api_key}, timeout=30) as http:
            created = await http.post(
                api,
                json={
                    "access_token": "EAAG-e2e-access-token",
                    "app_secret": "e2e-app-secret-one-0123456789",
                    "phone_number_id": PHONE,
                },
            )
            assert created.status_code == 200, created.text
            channel = created.json()
            assert channel["status"] == "active"
            webhook_url = channel["webhook_url"]
            assert webhook_url == f"{webhook_base}/hooks/whatsapp/{instance}"
            verify_token = channel["verify_token"]

            # Meta verifies the callback URL it was given.
            params = {
                "hub.mode": "subscribe",
                "hub.verify_token": verify_token,
                "hub.challenge": "1158201444",
            }
            start = time.monotonic()
            while (answer := await http.get(webhook_url, params=params)).status_code != 200:
                assert answer.status_code == 403
                assert time.monotonic() - start < 60, "the receiver never learnt the channel"
                await asyncio.sleep(0.1)
            assert (answer.text, answer.headers["content-type"]) == (
                "1158201444",
                "text/plain; charset=utf-8",
            )
            wrong = await http.get(webhook_url, params={**params, "hub.verify_token": "nope"})
            assert wrong.status_code == 403
            shared = await http.get(f"{webhook_base}/hooks/whatsapp", params=params)
            assert (shared.status_code, shared.text) == (200, "1158201444")

            # Meta posts a signed message: it reaches the instance, then Meta gets 200.
            body = meta_bytes(notification([text_change(PHONE, "Hallo, schöne Grüße 👋")]))
            answer = await http.post(
                webhook_url, content=body, headers=signed("e2e-app-secret-one-0123456789", body)
            )
            assert answer.status_code == 200
            [forwarded] = sink.received
            assert (forwarded.instance_id, forwarded.body) == (instance, body)

            # Meta's traffic shows on the channel's status (written at most once a second):
            # the event, not the challenges above. The webhook is managed (the operator
            # registered it at the stand-in), so they are answered and noted nowhere; and
            # any note of them would be written with or before the event's.
            status = await status_with(cluster, namespace, instance, "lastEventAt")
            assert "lastChallengeAt" not in status
            status_body = meta_bytes(notification([status_change(PHONE, "read")]))
            answer = await http.post(
                f"{webhook_base}/hooks/whatsapp",
                content=status_body,
                headers=signed("e2e-app-secret-one-0123456789", status_body),
            )
            assert answer.status_code == 200
            assert sink.received[-1].body == status_body

            # The instance is down: Meta gets a 5xx and will deliver again.
            await sink.stop()
            answer = await http.post(
                webhook_url, content=body, headers=signed("e2e-app-secret-one-0123456789", body)
            )
            assert answer.status_code == 502
            await sink.start()  # same port
            assert (
                await http.post(
                    webhook_url,
                    content=body,
                    headers=signed("e2e-app-secret-one-0123456789", body),
                )
            ).status_code == 200

            # The app secret is rotated through the facade: within seconds the old signature
            # is refused and the new one accepted; the verify token is kept.
            standin.seed(
                PHONE,
                {
                    "access_token": "EAAG-e2e-access-token",
                    "app_secret": "e2e-app-secret-two-9876543210",
                },
            )
            rotated = await http.post(
                api,
                json={
                    "access_token": "EAAG-e2e-access-token",
                    "app_secret": "e2e-app-secret-two-9876543210",
                    "phone_number_id": PHONE,
                },
            )
            assert rotated.status_code == 200, rotated.text
            start = time.monotonic()
            new_headers = signed("e2e-app-secret-two-9876543210", body)
            while (
                await http.post(webhook_url, content=body, headers=new_headers)
            ).status_code != 200:
                assert time.monotonic() - start < 60, "the rotated app secret never took effect"
                await asyncio.sleep(0.1)
            old = await http.post(
                webhook_url, content=body, headers=signed("e2e-app-secret-one-0123456789", body)
            )
            assert old.status_code == 403
            assert (await http.get(webhook_url, params=params)).status_code == 200

            view = (await http.get(api)).json()
            assert view["status"] == "active"

    log = receiver.service.log_path.read_text()
    assert "Traceback" not in log
    for secret in ("e2e-app-secret-one", "e2e-app-secret-two", verify_token):
        assert secret not in log

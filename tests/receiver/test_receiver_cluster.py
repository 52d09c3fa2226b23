"""The receiver process against the real apiserver, independent of the operator: its cache
follows labelled channel Secrets through list+watch, two replicas side by side, a rotated
app secret takes effect within seconds, status is written through the status subresource,
all under a service account with only the receiver's rights."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from localkube import Cluster
from whatsapp_channel.channel_secret import ENABLED_ANNOTATION
from whatsapp_channel.model import API_VERSION, KIND

from tests.support.identities import identity, service_account
from tests.support.owners import apply_owned
from tests.support.payloads import (
    channel_secret,
    meta_bytes,
    new_instance_id,
    notification,
    signed,
    text_change,
)
from tests.support.processes import RunningReceiver, log_dir, run_receiver
from tests.support.sink import Sink

PHONE_1, PHONE_2 = "106540352240001", "106540352240002"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> float:
    """Seconds until `check` held; fails after `timeout`."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < timeout, "condition not reached in time"
        await asyncio.sleep(0.1)
    return time.monotonic() - start


def apply(cluster: Cluster, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


async def post_event(
    http: httpx.AsyncClient, url: str, app_secret: str, phone: str, text: str = "hi"
) -> int:
    body = meta_bytes(notification([text_change(phone, text)]))
    return (await http.post(url, content=body, headers=signed(app_secret, body))).status_code


async def challenge(http: httpx.AsyncClient, url: str, token: str) -> int:
    params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "8675309"}
    answer = await http.get(url, params=params)
    if answer.status_code == 200:
        assert answer.text == "8675309"
    return answer.status_code


async def test_replicas_follow_channel_secrets_through_the_watch(
    cluster: Cluster, crd: Path, namespace: str, sink: Sink, tmp_path: Path
) -> None:
    kubeconfig = identity(cluster, "receiver", namespace, tmp_path)

    # Channel 1 exists before the receivers start (they find it in their first list), and
    # has a WhatsAppChannel to write status to; its Secret is owned by it.
    first = new_instance_id()
    apply(
        cluster,
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": first, "namespace": namespace},
            "spec": {
                "instanceId": first,
                "phoneNumberId": PHONE_1,
                "secretRef": {"name": f"whatsapp-{first}"},
            },
        },
    )
    uid = json.loads(cluster.kubectl("get", KIND, first, "-n", namespace, "-o", "json").stdout)[
        "metadata"
    ]["uid"]
    secret_1 = channel_secret(first, PHONE_1, app_secret="first-app-secret", verify_token="tok-1")
    secret_1["metadata"]["namespace"] = namespace
    secret_1["metadata"]["ownerReferences"][0]["uid"] = uid
    apply(cluster, secret_1)
    # Not a channel's: no instance label. The receivers never see it.
    apply(
        cluster,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": "operator-keys",
                "namespace": namespace,
                "labels": {"app.kubernetes.io/managed-by": "whatsapp-channel-operator"},
            },
            "stringData": {"k": "v"},
        },
    )

    with (
        run_receiver(
            kubeconfig,
            log_dir(cluster),
            namespace=namespace,
            forward_url_template=sink.url_template,
        ) as a,
        run_receiver(
            kubeconfig,
            log_dir(cluster),
            namespace=namespace,
            forward_url_template=sink.url_template,
        ) as b,
    ):
        replicas: list[RunningReceiver] = [a, b]
        async with httpx.AsyncClient(timeout=10) as http:
            for r in replicas:
                url = f"{r.url}/hooks/whatsapp/{first}"
                assert await challenge(http, url, "tok-1") == 200
                assert await challenge(http, url, "tok-2") == 403
                assert await post_event(http, url, "first-app-secret", PHONE_1) == 200
                assert await post_event(http, url, "wrong-secret", PHONE_1) == 403
            received = await sink.wait_for(2)
            assert [f.instance_id for f in received] == [first, first]

            # Channel 2 appears while they run: both pick it up within seconds.
            second = new_instance_id()
            secret_2 = channel_secret(
                second, PHONE_2, app_secret="second-secret", verify_token="t2"
            )
            apply_owned(cluster, namespace, secret_2)
            for r in replicas:

                async def second_known(r: RunningReceiver = r) -> bool:
                    return await challenge(http, f"{r.url}/hooks/whatsapp", "t2") == 200

                await eventually(second_known, timeout=30)
                shared = f"{r.url}/hooks/whatsapp"
                assert await post_event(http, shared, "second-secret", PHONE_2) == 200

            # The app secret is rotated: old signatures refused, new ones accepted, in seconds.
            secret_1["data"]["app_secret"] = "cm90YXRlZC1hcHAtc2VjcmV0"  # "rotated-app-secret"
            apply(cluster, secret_1)
            for r in replicas:
                url = f"{r.url}/hooks/whatsapp/{first}"

                async def rotated(url: str = url) -> bool:
                    return await post_event(http, url, "rotated-app-secret", PHONE_1) == 200

                await eventually(rotated, timeout=30)
                assert await post_event(http, url, "first-app-secret", PHONE_1) == 403

            # Disabled, then deleted: refused like an unknown channel.
            secret_2["metadata"]["annotations"][ENABLED_ANNOTATION] = "false"
            apply(cluster, secret_2)
            cluster.kubectl("delete", "secret", f"whatsapp-{first}", "-n", namespace)
            for r in replicas:

                async def both_gone(r: RunningReceiver = r) -> bool:
                    statuses = {
                        await post_event(
                            http, f"{r.url}/hooks/whatsapp/{first}", "rotated-app-secret", PHONE_1
                        ),
                        await post_event(
                            http, f"{r.url}/hooks/whatsapp/{second}", "second-secret", PHONE_2
                        ),
                        await challenge(http, f"{r.url}/hooks/whatsapp", "t2"),
                    }
                    return statuses == {403}

                await eventually(both_gone, timeout=30)

            # The channel's status shows Meta's traffic: each replica writes it at most once
            # a second. Waited for while they run: read once after they were stopped, it was
            # often still missing (a replica's shutdown write was seen landing after the read).
            async def status_written() -> bool:
                got = json.loads(
                    cluster.kubectl("get", KIND, first, "-n", namespace, "-o", "json").stdout
                )
                status = got.get("status") or {}
                return bool(status.get("lastChallengeAt") and status.get("lastEventAt"))

            await eventually(status_written, timeout=30)
        channel = json.loads(
            cluster.kubectl("get", KIND, first, "-n", namespace, "-o", "json").stdout
        )
        assert channel["status"]["lastChallengeAt"].endswith("Z")
        assert channel["status"]["lastEventAt"].endswith("Z")
        for r in replicas:
            log = r.service.log_path.read_text()
            assert "Traceback" not in log
            for secret in ("first-app-secret", "rotated-app-secret", "second-secret", "tok-1"):
                assert secret not in log

    # The receiver's account can do what it needs and nothing more.
    subject = f"--as=system:serviceaccount:{namespace}:{service_account('receiver')}"
    channels = "whatsappchannels.whatsapp.hydracore.io"
    for verb, resource, allowed in (
        ("watch", ["secrets"], "yes"),
        ("patch", [channels, "--subresource=status"], "yes"),
        ("create", ["secrets"], "no"),
        ("patch", [channels], "no"),
        ("get", [channels], "no"),
    ):
        can_i = cluster.kubectl(
            "auth", "can-i", verb, *resource, "-n", namespace, subject, check=False
        )
        assert can_i.stdout.strip() == allowed, (verb, resource)

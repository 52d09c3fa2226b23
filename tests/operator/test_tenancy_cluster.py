"""Issue 13 against the real control plane: the attacks a tenant with `kubectl apply` can try
on the operator, performed with the real operator process (and, for the shared webhook URL,
the real receiver process forwarding to a stand-in instance)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from localkube import Cluster
from localkube.services import Service
from nacl.public import PublicKey, SealedBox
from whatsapp_channel.kube import JSON, Kube, channels_path
from whatsapp_channel.reasons import (
    CHANNEL_READY,
    MALFORMED_SEAL,
    PHONE_NUMBER_TAKEN,
    SEAL_DOES_NOT_OPEN,
    SECRET_REF_NOT_ALLOWED,
)

from tests.operator.test_operator_cluster import (
    assert_no_secret_leaked,
    credentials,
    get_secret,
    manifest,
    public_key,
    ready_of,
    wait_ready,
)
from tests.support.payloads import meta_bytes, notification, signed, text_change
from tests.support.processes import log_dir, run_receiver
from tests.support.sink import Sink
from tests.support.waiting import eventually

PHONE = "106540352249999"


@pytest.fixture(autouse=True)
def _meta(meta_env: dict[str, Any]) -> dict[str, Any]:
    """Each test's operator asks the Graph stand-in and registers with a receiver of its own
    namespace (`conftest.meta_env`)."""
    return meta_env


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    server = Sink()
    await server.start()
    yield server
    await server.stop()


def events_of(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    listed = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(listed)["items"]
    return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]


async def test_a_second_channel_for_a_phone_number_gets_no_secret_and_no_events(
    cluster: Cluster,
    operator: Service,
    namespace: str,
    kube: Kube,
    sink: Sink,
) -> None:
    key = await public_key(kube, namespace)
    # One Meta app serving many numbers: one app secret, the victim's and the attacker's.
    victim, attacker = str(uuid.uuid4()), str(uuid.uuid4())
    victim_values = credentials()
    attacker_values = {**credentials(), "app_secret": victim_values["app_secret"]}
    await kube.create(
        channels_path(namespace), manifest(key, namespace, victim, victim_values, phone=PHONE)
    )
    await wait_ready(kube, namespace, victim, reason=CHANNEL_READY)
    await kube.create(
        channels_path(namespace), manifest(key, namespace, attacker, attacker_values, phone=PHONE)
    )
    claimant = await wait_ready(
        kube, namespace, attacker, status="False", reason=PHONE_NUMBER_TAKEN
    )
    assert victim not in ready_of(claimant)["message"]
    assert await get_secret(kube, namespace, attacker) is None
    events = events_of(cluster, namespace, attacker)
    assert any(e["reason"] == PHONE_NUMBER_TAKEN for e in events)
    assert all(victim not in e["message"] for e in events)  # never names another instance

    with run_receiver(
        cluster.kubeconfig,
        log_dir(cluster),
        namespace=namespace,
        forward_url_template=sink.url_template,
    ) as receiver:
        shared = f"{receiver.url}/hooks/whatsapp"
        async with httpx.AsyncClient(timeout=10) as http:
            body = meta_bytes(notification([text_change(PHONE, "for the victim")]))
            headers = signed(victim_values["app_secret"], body)
            answer = await http.post(shared, content=body, headers=headers)
            assert answer.status_code == 200
            assert [f.instance_id for f in sink.received] == [victim]

            # The victim disables its channel: its customers' messages go to nobody, and
            # certainly not to the claimant.
            current = await kube.get(channels_path(namespace, victim))
            current["spec"]["enabled"] = False
            await kube.replace(channels_path(namespace, victim), current)
            await wait_ready(kube, namespace, victim, reason="ChannelDisabled")

            async def refused() -> bool:
                late = meta_bytes(notification([text_change(PHONE, "while disabled")]))
                posted = await http.post(
                    shared, content=late, headers=signed(victim_values["app_secret"], late)
                )
                return posted.status_code == 403

            await eventually(refused, "the shared URL refusing the disabled number")
            assert [f.instance_id for f in sink.received] == [victim]
    assert_no_secret_leaked(operator, cluster, namespace, victim_values, attacker_values)


async def test_a_secret_ref_to_another_channels_secret_is_refused(
    cluster: Cluster,
    operator: Service,
    namespace: str,
    kube: Kube,
) -> None:
    key = await public_key(kube, namespace)
    victim, attacker = str(uuid.uuid4()), str(uuid.uuid4())
    values = credentials()
    await kube.create(channels_path(namespace), manifest(key, namespace, victim, values))
    await wait_ready(kube, namespace, victim, reason=CHANNEL_READY)

    body: JSON = {
        "apiVersion": "whatsapp.hydracore.io/v1alpha1",
        "kind": "WhatsAppChannel",
        "metadata": {"name": attacker},
        "spec": {
            "instanceId": attacker,
            "phoneNumberId": "106540352240123",
            "secretRef": {"name": f"whatsapp-{victim}"},
        },
    }
    await kube.create(channels_path(namespace), body)
    await wait_ready(kube, namespace, attacker, status="False", reason=SECRET_REF_NOT_ALLOWED)
    assert await get_secret(kube, namespace, attacker) is None
    assert_no_secret_leaked(operator, cluster, namespace, values)


def opaque_seal(key_id: str, public: bytes, plaintext: bytes) -> str:
    box = SealedBox(PublicKey(public)).encrypt(plaintext)
    return f"wa1:{key_id}:{base64.b64encode(box).decode()}"


async def test_malformed_seals_are_ready_false_with_a_warning_and_no_traceback(
    cluster: Cluster,
    operator: Service,
    namespace: str,
    kube: Kube,
) -> None:
    key = await public_key(kube, namespace)
    hostile_id = ("\nkey\x1b[31m" * 900)[:8000]
    nested = opaque_seal(key.key_id, key.public_key, b"[" * 2900 + b"]" * 2900)
    # Each case: the fields that replace good seals of the channel's own.
    cases: dict[str, dict[str, str]] = {
        # an unknown key id in one field, no seal at all in another, a hostile key id
        MALFORMED_SEAL: {
            "accessToken": "wa1:0123456789abcdef:AAAA",
            "appSecret": "x",
            "verifyToken": f"wa1:{hostile_id}:AAAA",
        },
        # deeply nested JSON, sealed to the operator's own key (anyone can: it is public)
        SEAL_DOES_NOT_OPEN: {"appSecret": nested},
    }
    names = {}
    for number, (reason, fields) in enumerate(cases.items()):
        name = str(uuid.uuid4())
        names[reason] = name
        body = manifest(key, namespace, name, credentials(), phone=f"1065403522{number:05d}")
        body["spec"]["sealed"].update(fields)
        await kube.create(channels_path(namespace), body)
    for reason, name in names.items():
        channel = await wait_ready(kube, namespace, name, status="False", reason=reason)
        assert await get_secret(kube, namespace, name) is None
        message = ready_of(channel)["message"]
        assert message.isprintable()
        assert len(message) < 300

        async def warned(name: str = name, reason: str = reason) -> bool:
            return any(
                e["reason"] == reason and e["type"] == "Warning"
                for e in events_of(cluster, namespace, name)
            )

        await eventually(warned, f"a Warning event {reason} for {name}")
        for event in events_of(cluster, namespace, name):
            assert "\n" not in event["message"]
            assert "\x1b" not in event["message"]
            assert len(event["message"]) < 1100
    log = operator.log_path.read_text(errors="replace")
    assert "Traceback" not in log
    assert "\x1b[31m" not in log

"""Issue 13: one phone number id, one channel, through the REST API. The facade answers 409
for a number another instance's channel holds (found with the apiserver's field selector on
spec.phoneNumberId, so channels written with kubectl count too); the facade process runs as
its chart ServiceAccount on the real control plane. And `ChannelSetup` never prints a secret.
"""

from __future__ import annotations

import json
import uuid

import httpx
from localkube import Cluster
from localkube.services import Service
from whatsapp_channel.model import (
    API_VERSION,
    CREDENTIAL_FIELDS,
    KIND,
    ChannelSetup,
    status_reason,
)
from whatsapp_channel.reasons import PHONE_NUMBER_TAKEN
from whatsapp_channel.sealing import published_keys, seal

# Fixtures `operated` and `facade` come from test_e2e (the facade as its own ServiceAccount).
from tests.facade.conftest import ApiKeys
from tests.facade.test_e2e import (  # noqa: F401
    channel_url,
    facade,
    kubectl_json,
    operated,
    secret_data,
    setup_body,
)
from tests.support.waiting import eventually

TAKEN = (
    "phone_number_id is already used by another instance's WhatsApp channel; "
    "a phone number can belong to one channel only"
)


def channels_in(cluster: Cluster, namespace: str) -> set[str]:
    listed = kubectl_json(cluster, "get", "whatsappchannels", "-n", namespace, "-o", "json")
    return {item["metadata"]["name"] for item in listed["items"]}


async def test_a_phone_number_held_by_another_channel_is_409(
    cluster: Cluster,
    operated: str,  # noqa: F811
    facade: Service,  # noqa: F811
    api_keys: ApiKeys,
) -> None:
    owner, claimant = str(uuid.uuid4()), str(uuid.uuid4())
    async with httpx.AsyncClient(headers={"X-Api-Key": api_keys.admin}, timeout=30) as http:
        first = await http.post(channel_url(facade, owner), json=setup_body(7))
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "active"
        taken = await http.post(
            channel_url(facade, claimant),
            json=setup_body(8, phone_number_id=setup_body(7)["phone_number_id"]),
        )
        assert taken.status_code == 409
        assert taken.json() == {"detail": TAKEN}
        assert claimant not in channels_in(cluster, operated)
        # The holder itself may post again.
        again = await http.post(channel_url(facade, owner), json=setup_body(7))
        assert again.status_code == 200, again.text

        # A channel written with kubectl (no label of ours) holds its number just the same.
        written, late = str(uuid.uuid4()), str(uuid.uuid4())
        config = kubectl_json(
            cluster, "get", "configmap", "whatsapp-channels-sealing-public", "-n", operated,
            "-o", "json",
        )  # fmt: skip
        key = published_keys(config["data"]).active
        # Credentials Meta accepts for the number (a claimant Meta refuses yields at once).
        values = {**setup_body(9), "verify_token": "verify-token-0009"}
        sealed = {
            field: seal(key, namespace=operated, name=written, field=field, value=values[snake])
            for field, snake in CREDENTIAL_FIELDS.items()
        }
        phone = values["phone_number_id"]
        channel = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": written, "namespace": operated},
            "spec": {"instanceId": written, "phoneNumberId": phone, "sealed": sealed},
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(channel))
        # (not seeded at the stand-in under that number: setup_body(10) seeds number 10)
        refused = await http.post(
            channel_url(facade, late), json={**setup_body(10), "phone_number_id": phone}
        )
        assert refused.status_code == 409
        assert refused.json() == {"detail": TAKEN}
        assert late not in channels_in(cluster, operated)


def test_channel_setup_never_prints_its_secrets() -> None:
    setup = ChannelSetup.model_validate(setup_body(3, verify_token="verify-token-1234"))
    clear = [setup_body(3)["access_token"], setup_body(3)["app_secret"], "verify-token-1234"]
    for text in (repr(setup), str(setup), setup.model_dump_json(), json.dumps(setup.model_dump())):
        for value in clear:
            assert value not in text
    assert setup.access_token is not None
    assert setup.access_token.get_secret_value() == clear[0]
    assert setup.app_secret is not None
    assert setup.app_secret.get_secret_value() == clear[1]
    assert setup.verify_token is not None
    assert setup.verify_token.get_secret_value() == clear[2]


async def test_an_older_channel_reposted_with_a_younger_channels_number_is_409(
    cluster: Cluster,
    operated: str,  # noqa: F811
    facade: Service,  # noqa: F811
    api_keys: ApiKeys,
) -> None:
    """Issue 21 item 1; fails on the code before it (the older channel won by its
    creationTimestamp: 200, and the victim lost its Secret at its next reconcile)."""
    older, victim = str(uuid.uuid4()), str(uuid.uuid4())
    async with httpx.AsyncClient(headers={"X-Api-Key": api_keys.admin}, timeout=30) as http:
        first = await http.post(channel_url(facade, older), json=setup_body(21))
        assert first.status_code == 200, first.text
        posted = await http.post(channel_url(facade, victim), json=setup_body(22))
        assert posted.status_code == 200, posted.text
        assert posted.json()["status"] == "active"
        url = posted.json()["webhook_url"]
        held = secret_data(cluster, operated, victim)

        number = setup_body(22)["phone_number_id"]
        # (not seeded at the stand-in under the victim's number: setup_body(21) seeds 21)
        moved = {**setup_body(21), "phone_number_id": number}
        taken = await http.post(channel_url(facade, older), json=moved)
        assert taken.status_code == 409
        assert taken.json() == {"detail": TAKEN}

        # Past the facade (kubectl): the operator refuses the older channel the same way,
        # naming nobody, and the victim's own reconcile keeps its Secret and URL.
        cluster.kubectl(
            "patch", "whatsappchannel", older, "-n", operated, "--type=merge",
            "-p", json.dumps({"spec": {"phoneNumberId": number}}),
        )  # fmt: skip

        async def refused() -> bool:
            body = kubectl_json(cluster, "get", "whatsappchannel", older, "-n", operated)
            return status_reason(body) == PHONE_NUMBER_TAKEN

        await eventually(refused, "the older channel refused the victim's number")
        ready = kubectl_json(cluster, "get", "whatsappchannel", older, "-n", operated)
        assert victim not in json.dumps(ready["status"])
        again = await http.post(channel_url(facade, victim), json=setup_body(22))
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "active"
        assert again.json()["webhook_url"] == url
        assert secret_data(cluster, operated, victim) == held
        current = await http.get(channel_url(facade, victim))
        assert current.json()["status"] == "active"

"""A channel Secret on the real control plane, owned by a real WhatsAppChannel: the receiver
routes only by Secrets controlled by their channel (issue 21 item 5), and the garbage
collector deletes a Secret whose owner does not exist. No operator runs beside these tests,
so the channel (a `secretRef` to nothing) is never reconciled."""

from __future__ import annotations

import json
from typing import Any

from localkube import Cluster
from whatsapp_channel.channel_secret import INSTANCE_LABEL
from whatsapp_channel.model import API_VERSION, KIND


def apply_owned(cluster: Cluster, namespace: str, secret: dict[str, Any]) -> None:
    """Create the Secret's WhatsAppChannel (if need be), then the Secret, owned by it."""
    instance = secret["metadata"]["labels"][INSTANCE_LABEL]
    channel = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": instance, "namespace": namespace},
        "spec": {
            "instanceId": instance,
            "phoneNumberId": "106540352240000",
            "secretRef": {"name": "no-such-secret"},
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(channel))
    created = json.loads(
        cluster.kubectl("get", "whatsappchannel", instance, "-n", namespace, "-o", "json").stdout
    )
    secret["metadata"]["namespace"] = namespace
    secret["metadata"]["ownerReferences"] = [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": instance,
            "uid": created["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]
    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))

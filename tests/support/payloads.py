"""Meta-shaped notifications, signed the way Meta signs them, and the Secrets the operator
writes for a channel."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from channel_api.receiver.channel_cache import ChannelCache
from whatsapp_channel import channel_secret as contract
from whatsapp_channel.model import DEFAULT_NAMESPACE, WebhookMode

WABA_ID = "102290129340398"


def new_instance_id() -> str:
    return str(uuid.uuid4())


def channel_secret(
    instance_id: str,
    phone_number_id: str,
    *,
    app_secret: str | None,
    verify_token: str | None,
    enabled: bool = True,
    webhook_mode: WebhookMode | None = None,
    waba_id: str | None = None,
) -> dict[str, Any]:
    """A Secret as the operator generates it for a channel (owned by a channel that need not
    exist: tests against a cluster drop the owner, or the garbage collector would).
    `webhook_mode` None: without the webhook-mode annotation, as an older operator wrote."""
    return contract.build(
        contract.ChannelSecret(
            namespace=DEFAULT_NAMESPACE,
            channel=instance_id,
            channel_uid=str(uuid.uuid4()),
            instance_id=instance_id,
            phone_number_id=phone_number_id,
            enabled=enabled,
            access_token="EAAG-access-token",
            app_secret=app_secret,
            verify_token=verify_token,
            webhook_mode=webhook_mode,
            waba_id=waba_id,
        )
    )


def _value(phone_number_id: str) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550984277", "phone_number_id": phone_number_id},
    }


def text_change(
    phone_number_id: str, text: str, *, wamid: str = "wamid.HBgLNjAxNzM1"
) -> dict[str, Any]:
    value = _value(phone_number_id)
    value["contacts"] = [{"profile": {"name": "Zoë Müller"}, "wa_id": "60173526233"}]
    value["messages"] = [
        {
            "from": "60173526233",
            "id": wamid,
            "timestamp": "1694427240",
            "text": {"body": text},
            "type": "text",
        }
    ]
    return {"value": value, "field": "messages"}


def status_change(phone_number_id: str, status: str = "delivered") -> dict[str, Any]:
    value = _value(phone_number_id)
    value["statuses"] = [
        {
            "id": "wamid.HBgLNjAxNzM1MjYyMzMVAgARGBJCNkY5NTBENEU3ODYxQTM3RUQA",
            "status": status,
            "timestamp": "1694492484",
            "recipient_id": "60173526233",
            "conversation": {
                "id": "f5fdae3920125a39a1e6a23e5f877c16",
                "origin": {"type": "utility"},
            },
            "pricing": {"billable": True, "pricing_model": "CBP", "category": "utility"},
        }
    ]
    return {"value": value, "field": "messages"}


def account_change() -> dict[str, Any]:
    """An account-level change: it names no phone number."""
    return {
        "value": {"phone_number": "15550984277", "event": "VERIFIED_ACCOUNT"},
        "field": "account_update",
    }


def notification(*entries: list[dict[str, Any]], waba_id: str = WABA_ID) -> dict[str, Any]:
    """`entries`: the changes of each entry."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "time": 1739321024, "changes": changes} for changes in entries],
    }


def meta_bytes(event: dict[str, Any]) -> bytes:
    """The body as Meta sends it: compact JSON with non-ASCII escaped in lower-case hex."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=True).encode()


def meta_signature(app_secret: str | bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value Meta sends for `body`."""
    key = app_secret.encode() if isinstance(app_secret, str) else app_secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def signed(app_secret: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": meta_signature(app_secret, body),
    }


def fill_cache(cache: ChannelCache, secrets: Iterable[Mapping[str, Any]]) -> None:
    """Fill a receiver's channel cache as the watch's first list does, and mark it synced."""
    cache.apply("SYNC", {"items": list(secrets)})
    cache.mark_synced()

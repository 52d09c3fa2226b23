"""Warning events posted outside Kopf's handlers (the health checks run in a task of the
operator's own), shaped as Kopf posts them. Messages never carry a credential."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from whatsapp_channel.kube import Kube, KubeError, core_path
from whatsapp_channel.model import API_VERSION, KIND, now_rfc3339

log = logging.getLogger(__name__)

COMPONENT = "whatsapp-channel-operator"
_pending: set[asyncio.Task[None]] = set()


def event_body(channel: Mapping[str, Any], reason: str, message: str) -> dict[str, Any]:
    metadata = channel.get("metadata") or {}
    now = now_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "namespace": metadata.get("namespace"),
            "name": f"{metadata.get('name')}.{uuid.uuid4().hex[:16]}",
        },
        "involvedObject": {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "namespace": metadata.get("namespace"),
            "name": metadata.get("name"),
            "uid": metadata.get("uid"),
        },
        "type": "Warning",
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def warning_poster(kube: Kube) -> Callable[[Mapping[str, Any]], Callable[[str, str], None]]:
    """`poster(channel)(reason, message)` posts a Warning about `channel` in the background."""

    def for_channel(channel: Mapping[str, Any]) -> Callable[[str, str], None]:
        namespace = str((channel.get("metadata") or {}).get("namespace"))

        async def post(reason: str, message: str) -> None:
            try:
                await kube.create(
                    core_path("events", namespace), event_body(channel, reason, message)
                )
            except KubeError as exc:
                log.warning("a Warning event was not posted (%s %s)", exc.status, exc.reason)

        def warn(reason: str, message: str) -> None:
            task = asyncio.create_task(post(reason, message))
            _pending.add(task)
            task.add_done_callback(_pending.discard)

        return warn

    return for_channel

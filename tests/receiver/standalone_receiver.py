"""The receiver app under uvicorn, as `whatsapp-receiver` runs it (same settings class, same
uvicorn options), but with its channel cache loaded from a file instead of a watch: for
tests that attack a real receiver process and need no cluster.

    python -m tests.receiver.standalone_receiver <secrets.json>    # WA_RECEIVER_* as usual
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import uvicorn
from channel_api.receiver.admission import Admission
from channel_api.receiver.app import Receiver
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Forwarder
from channel_api.receiver.settings import ReceiverSettings
from channel_api.receiver.status import StatusWriter


async def _no_status_writes(path: str, body: dict[str, Any]) -> None:
    return None


def main() -> None:
    settings = ReceiverSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cache = ChannelCache()
    cache.apply("SYNC", {"items": json.loads(Path(sys.argv[1]).read_text())})
    cache.mark_synced()
    forwarder = Forwarder(
        settings.forward_url_template,
        settings.forward_secret(),
        timeout=settings.forward_timeout_seconds,
        max_connections=settings.forward_max_connections,
        max_per_instance=settings.forward_max_per_instance,
    )
    app = Receiver(
        cache,
        forwarder,
        StatusWriter(_no_status_writes, settings.namespace, interval=60.0),
        max_body_bytes=settings.max_body_bytes,
        admission=Admission(
            max_requests=settings.max_concurrent_requests,
            max_buffered_bytes=settings.max_buffered_bytes,
            body_timeout=settings.body_timeout_seconds,
        ),
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        server_header=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()

"""The receiver app under uvicorn, as `whatsapp-receiver` runs it (same settings class, same
uvicorn options, same bounded request heads), but with its channel cache loaded from a file
instead of a watch: for tests that attack a real receiver process and need no cluster.

    python -m tests.receiver.standalone_receiver <secrets.json>    # WA_RECEIVER_* as usual

`started` runs it so for a test.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from channel_api.receiver.app import Receiver, admission_of
from channel_api.receiver.channel_cache import ChannelCache
from channel_api.receiver.forward import Forwarder
from channel_api.receiver.main import UVICORN_OPTIONS
from channel_api.receiver.settings import ReceiverSettings
from channel_api.receiver.status import StatusWriter
from channel_api.serving import run
from localkube.cluster import free_port
from localkube.services import Service, running, start_service


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
        admission=admission_of(settings),
    )
    run(app, settings.model_copy(update={"host": "127.0.0.1"}), **UVICORN_OPTIONS)


@contextlib.contextmanager
def started(
    tmp_path: Path, forward_url_template: str, secrets: list[dict[str, Any]], env: Mapping[str, str]
) -> Iterator[Service]:
    """This receiver in a process of its own, serving `secrets` (channel Secrets), with `env`
    (WA_RECEIVER_*) beside the forward settings; until the block ends."""
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text(json.dumps(secrets))
    forward_secret = tmp_path / "forward-secret"
    forward_secret.write_bytes(b"forward-secret-standalone-0123456789")
    port = free_port()
    service = start_service(
        "receiver",
        [sys.executable, "-m", "tests.receiver.standalone_receiver", str(secrets_file)],
        env={
            "WA_RECEIVER_FORWARD_URL_TEMPLATE": forward_url_template,
            "WA_RECEIVER_FORWARD_SECRET_FILE": str(forward_secret),
            "WA_RECEIVER_PORT": str(port),
            "WA_RECEIVER_LOG_LEVEL": "info",
            **env,
        },
        log_path=tmp_path / "receiver.log",
        url=f"http://127.0.0.1:{port}",
        health_url=f"http://127.0.0.1:{port}/readyz",
    )
    with running(service):
        yield service


if __name__ == "__main__":
    main()

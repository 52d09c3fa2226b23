"""`whatsapp-receiver`: the webhook receiver under uvicorn."""

from __future__ import annotations

import logging
import sys

import prometheus_client
import uvicorn
from kubernetes.config import ConfigException
from pydantic import ValidationError
from whatsapp_channel.kube import load_config

from .app import create_app
from .settings import ReceiverSettings


def main() -> None:
    try:
        settings = ReceiverSettings()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        app = create_app(settings, load_config())  # $KUBECONFIG, else in-cluster
        if settings.metrics_port:
            prometheus_client.start_http_server(settings.metrics_port, settings.host)
    except (ValidationError, ValueError, OSError, ConfigException) as exc:
        sys.exit(f"whatsapp-receiver: cannot start: {exc}")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # The access log would print hub.verify_token from the challenge's query string.
        access_log=False,
        server_header=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()

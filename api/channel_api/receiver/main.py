"""`whatsapp-receiver`: the webhook receiver under uvicorn, configured from WA_RECEIVER_* env."""

from __future__ import annotations

import prometheus_client
import uvicorn
from whatsapp_channel.kube import KubeConfigError
from whatsapp_channel.settings import configure_logging, load_settings, refuse

from channel_api.receiver.app import create_app
from channel_api.receiver.settings import ReceiverSettings

PROG = "whatsapp-receiver"


def main() -> None:
    settings = load_settings(ReceiverSettings, PROG)
    configure_logging(settings.log_level)
    try:
        app = create_app(settings)
    except (OSError, ValueError) as exc:
        refuse(PROG, f"cannot start: {exc}")
    except KubeConfigError as exc:
        refuse(PROG, str(exc))
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, settings.host)
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

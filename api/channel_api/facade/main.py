"""`whatsapp-facade`: serve the REST facade with uvicorn, configured from WA_FACADE_* env."""

from __future__ import annotations

import prometheus_client
import uvicorn
from whatsapp_channel.kube import KubeConfigError
from whatsapp_channel.settings import configure_logging, load_settings, refuse

from channel_api.facade.api_keys import ApiKeysError
from channel_api.facade.app import create_app
from channel_api.facade.settings import FacadeSettings

PROG = "whatsapp-facade"


def main() -> None:
    settings = load_settings(FacadeSettings, PROG)
    configure_logging(settings.log_level)
    try:
        app = create_app(settings)
    except (OSError, ApiKeysError) as exc:
        refuse(PROG, f"API keys: {exc}")
    except KubeConfigError as exc:
        refuse(PROG, str(exc))
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, settings.host)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        server_header=False,
    )


if __name__ == "__main__":
    main()

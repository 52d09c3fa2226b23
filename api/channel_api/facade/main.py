"""`whatsapp-facade`: serve the REST facade with uvicorn, configured from WA_FACADE_* env."""

from __future__ import annotations

import logging
import sys

import prometheus_client
import uvicorn
from pydantic import ValidationError

from channel_api.facade.api_keys import ApiKeysError
from channel_api.facade.app import create_app
from channel_api.facade.settings import FacadeSettings


def main() -> None:
    try:
        settings = FacadeSettings()  # required values come from the environment
    except ValidationError as exc:
        problems = "; ".join(
            f"WA_FACADE_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        print(f"whatsapp-facade: bad configuration: {problems}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        app = create_app(settings)
    except (OSError, ApiKeysError) as exc:
        print(f"whatsapp-facade: API keys: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.metrics_port:
        prometheus_client.start_http_server(settings.metrics_port, settings.host)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        server_header=False,
    )


if __name__ == "__main__":
    main()

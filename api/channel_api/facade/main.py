"""`whatsapp-facade`: serve the REST facade with uvicorn, configured from WA_FACADE_* env."""

from __future__ import annotations

from channel_api.facade.api_keys import ApiKeysError
from channel_api.facade.app import create_app
from channel_api.facade.settings import FacadeSettings
from channel_api.serving import serve

PROG = "whatsapp-facade"


def main() -> None:
    serve(
        PROG,
        FacadeSettings,
        create_app,
        start_errors=(OSError, ApiKeysError),
        start_error_prefix="API keys",
    )


if __name__ == "__main__":
    main()

"""`whatsapp-receiver`: the webhook receiver under uvicorn, configured from WA_RECEIVER_* env."""

from __future__ import annotations

from channel_api.receiver.app import create_app
from channel_api.receiver.settings import ReceiverSettings
from channel_api.serving import serve

PROG = "whatsapp-receiver"
UVICORN_OPTIONS = {
    # The access log would print hub.verify_token from the challenge's query string.
    "access_log": False,
    "lifespan": "on",
}


def main() -> None:
    serve(
        PROG,
        ReceiverSettings,
        create_app,
        start_errors=(OSError, ValueError),
        start_error_prefix="cannot start",
        **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()

"""The receiver's one settings class: environment variables prefixed `WA_RECEIVER_`, and
`WA_CHANNELS_NAMESPACE`, shared with the operator and the facade."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict
from whatsapp_channel.settings import LogLevel, channels_namespace_field

from channel_api.bounded_http import ServingSettings

# A forwarding secret shorter than this is a typo or a placeholder, not a key.
MIN_FORWARD_SECRET_BYTES = 16


class ReceiverSettings(ServingSettings):
    """Where the channels live, where events go, and the limits that protect the process.

    The apiserver connection is not here: it comes from $KUBECONFIG or the in-cluster
    service account, as for every process of the product.
    """

    model_config = SettingsConfigDict(env_prefix="WA_RECEIVER_", extra="ignore")

    namespace: str = channels_namespace_field(
        "WA_RECEIVER_NAMESPACE", description="Namespace of the channels' Secrets."
    )
    # Where a channel's verified events go; `{instance_id}` is replaced by the channel's.
    forward_url_template: str
    # A file holding the key that signs forwarded requests (the instance checks it).
    forward_secret_file: Path
    # A file holding the verify token entered with the app's own callback URL
    # (/hooks/whatsapp-app: account webhooks); None: that URL's challenge is refused.
    app_verify_token_file: Path | None = None
    forward_timeout_seconds: float = Field(default=10.0, gt=0)
    forward_max_connections: int = Field(default=256, ge=1)
    # Meta documents webhook payloads of up to 3 MB (its webhooks overview, "Payload size").
    max_body_bytes: int = Field(default=3 * 1024 * 1024, ge=1024)
    # lastChallengeAt/lastEventAt are written at most once per this interval per channel.
    status_write_interval_seconds: float = Field(default=30.0, gt=0)
    host: str = "0.0.0.0"  # noqa: S104 - a server in a pod listens on its pod address
    port: int = Field(default=8080, ge=0, le=65535)
    # Prometheus metrics (/metrics) on `host`, never on `port`, which faces the internet; 0: none.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    log_level: LogLevel = "INFO"
    # What one process takes on at once (issue 13): webhook POSTs admitted on the shared URL,
    # and as many on per-channel URLs, past which 503 with Retry-After; the body bytes they
    # hold together, ditto; and the time a whole body has to arrive, past which 408.
    max_concurrent_requests: int = Field(default=1024, ge=1)
    # Of those, what one client address may hold (issue 21): no single client holds them all.
    # Behind a proxy, list it in trusted_proxies, or every client counts as the proxy.
    max_requests_per_client: int = Field(default=64, ge=1)
    max_buffered_bytes: int = Field(default=64 * 1024 * 1024, ge=1024 * 1024)
    # (for a body of max_body_bytes; a smaller declared length gets its share, at least 2 s)
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    # Deliveries in flight to one instance; past it that instance's events get 503 at once.
    forward_max_per_instance: int = Field(default=16, ge=1)

    @field_validator("forward_url_template")
    @classmethod
    def _one_placeholder(cls, value: str) -> str:
        try:
            url = value.format(instance_id="00000000-0000-0000-0000-000000000000")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                "must be an http(s) URL whose only placeholder is {instance_id}"
            ) from exc
        if "{instance_id}" not in value or not url.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL containing {instance_id}")
        return value

    def app_verify_token(self) -> bytes | None:
        """The app callback's verify token, read once at start-up (a trailing newline is not
        part of it); None when not configured or empty."""
        if self.app_verify_token_file is None:
            return None
        return self.app_verify_token_file.read_bytes().rstrip(b"\r\n") or None

    def forward_secret(self) -> bytes:
        """The forwarding key, read once at start-up; a trailing newline is not part of it."""
        secret = self.forward_secret_file.read_bytes().rstrip(b"\r\n")
        if len(secret) < MIN_FORWARD_SECRET_BYTES:
            raise ValueError(
                f"{self.forward_secret_file} holds fewer than {MIN_FORWARD_SECRET_BYTES} bytes"
            )
        return secret

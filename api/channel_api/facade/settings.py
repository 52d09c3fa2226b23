"""The facade's one settings class: environment variables prefixed `WA_FACADE_`, and
`WA_CHANNELS_NAMESPACE` and `WA_KEYS_NAMESPACE`, shared with the operator.

Cluster access is the standard `KUBECONFIG`, or the in-cluster service account without it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict
from whatsapp_channel.settings import LogLevel, channels_namespace_field, keys_namespace_field

from channel_api.bounded_http import ServingSettings


class FacadeSettings(ServingSettings):
    model_config = SettingsConfigDict(env_prefix="WA_FACADE_", extra="ignore")

    namespace: str = channels_namespace_field(
        "WA_FACADE_NAMESPACE", description="Namespace of the WhatsAppChannel resources."
    )
    keys_namespace: str | None = keys_namespace_field(
        "WA_FACADE_SEALING_KEY_NAMESPACE",
        description="Namespace of the operator's sealing public key ConfigMap: the "
        "operator's keys namespace, the same WA_KEYS_NAMESPACE (default: `namespace`).",
    )
    api_keys_file: Path = Field(
        description="File of API keys (see channel_api.facade.api_keys for its format), "
        "mounted from a Secret; re-read when it changes."
    )
    ready_wait_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="How long POST waits for the operator to report the channel ready "
        "(and DELETE for it to be gone) before answering.",
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Larger request bodies get 413."
    )
    kube_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Per-call apiserver timeout; past it the answer is 503."
    )
    sealing_key_refresh_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long the sealing public key is cached before it is read again.",
    )
    host: str = Field(default="127.0.0.1", description="Listen address.")
    port: int = Field(default=8080, ge=0, le=65535, description="Listen port.")
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the Prometheus metrics, /metrics, on `host`; 0: none. Never "
        "`port`: the metrics are not for the facade's clients.",
    )
    log_level: LogLevel = Field(default="INFO", description="uvicorn/app log level.")
    platform_app: bool = Field(
        default=False,
        description="The operator holds the platform's own Meta app "
        "(operator.platformApp.existingSecret): a POST may leave out app_secret.",
    )
    onboarding_page: bool = Field(
        default=False,
        description="Serve the onboarding page (/onboarding/<instance id>, Embedded Signup) "
        "and the route that mints its short-lived links; needs platform_app_id and "
        "signup_config_id.",
    )
    platform_app_id: str | None = Field(
        default=None, pattern=r"^[0-9]{1,32}$", description="The platform app's id (the page)."
    )
    signup_config_id: str | None = Field(
        default=None,
        pattern=r"^[0-9]{1,32}$",
        description="The platform app's Embedded Signup configuration id (the page).",
    )
    facebook_sdk_url: str = Field(
        default="https://connect.facebook.net/en_US/sdk.js",
        pattern=r"^https?://[^\s\"'<>]+$",
        description="Facebook's JavaScript SDK, as the page loads it (a stand-in's in tests).",
    )
    graph_version: str = Field(
        default="v25.0", pattern=r"^v[0-9]+\.[0-9]+$", description="FB.init's version."
    )
    onboarding_link_seconds: float = Field(
        default=900.0, gt=0, le=86400, description="How long a minted onboarding link lives."
    )

    @property
    def sealing_namespace(self) -> str:
        """Where the operator publishes its sealing public key."""
        return self.keys_namespace or self.namespace

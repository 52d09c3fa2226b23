"""The operator's one settings class: environment variables prefixed `WA_OPERATOR_`, and
`WA_KEYS_NAMESPACE`, which the facade and `whatsapp-seal` read too.

Cluster access is the standard `KUBECONFIG`, or the in-cluster service account without it.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from whatsapp_channel.model import DEFAULT_NAMESPACE, DNS1123_SUBDOMAIN_PATTERN
from whatsapp_channel.settings import LogLevel, keys_namespace_field


class KeysSettings(BaseSettings):
    """Where the operator's sealing keys are: all `whatsapp-operator rotate-key` reads."""

    model_config = SettingsConfigDict(env_prefix="WA_OPERATOR_", extra="ignore")

    namespace: str = Field(
        default=DEFAULT_NAMESPACE,
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        max_length=63,
        description="The namespace whose WhatsAppChannels the operator reconciles, and where "
        "it writes their Secrets.",
    )
    keys_namespace: str | None = keys_namespace_field(
        "WA_OPERATOR_KEYS_NAMESPACE",
        description="The namespace of the operator's sealing keys (Secret "
        "whatsapp-channels-sealing-keys) and of their public half (ConfigMap "
        "whatsapp-channels-sealing-public): the operator's own, where nothing but the "
        "operator may read Secrets. Default: `namespace`, which only suits a single-namespace "
        "local run: whoever may read the Secrets of the channel namespace (the webhook "
        "receiver lists them all) could read the private keys. Keys found in `namespace` by an "
        "operator configured with another keys namespace are moved there.",
    )

    @property
    def sealing_namespace(self) -> str:
        """Where the sealing keys and their public ConfigMap are."""
        return self.keys_namespace or self.namespace


class OperatorSettings(KeysSettings):
    webhook_base_url: str = Field(
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="The receiver's public base URL (e.g. https://hooks.example.com); each "
        "channel's status.webhookUrl is this plus /hooks/whatsapp/<instance id>.",
    )
    liveness_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a probe from the kubelet comes from outside the pod
        description="Address of the liveness endpoint.",
    )
    liveness_port: int = Field(
        default=8080, ge=0, le=65535, description="Port of the liveness endpoint, /healthz."
    )
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the Prometheus metrics, /metrics, on the liveness host; 0: none.",
    )
    log_level: LogLevel = Field(
        default="INFO", description="No level logs a credential, DEBUG included."
    )

    @property
    def liveness_endpoint(self) -> str:
        return f"http://{self.liveness_host}:{self.liveness_port}/healthz"

"""The operator's one settings class: environment variables prefixed `WA_OPERATOR_`, and
`WA_CHANNELS_NAMESPACE` and `WA_KEYS_NAMESPACE`, which the facade and `whatsapp-seal` read too.

Cluster access is the standard `KUBECONFIG`, or the in-cluster service account without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from whatsapp_channel.model import DNS1123_SUBDOMAIN_PATTERN, WebhookMode
from whatsapp_channel.settings import LogLevel, channels_namespace_field, keys_namespace_field


class KeysSettings(BaseSettings):
    """Where the operator's sealing keys are: all `whatsapp-operator rotate-key` reads."""

    model_config = SettingsConfigDict(env_prefix="WA_OPERATOR_", extra="ignore")

    namespace: str = channels_namespace_field(
        "WA_OPERATOR_NAMESPACE",
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
    graph_base_url: str = Field(
        default="https://graph.facebook.com",
        pattern=r"^https?://[^\s/?#]+/?$",
        description="Meta's Graph API (https; plain http only for a loopback stand-in, "
        "e.g. whatsapp-graph-standin).",
    )
    graph_version: str = Field(
        default="v25.0", pattern=r"^v[0-9]+\.[0-9]+$", description="The Graph API version."
    )
    graph_timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="Per Graph call attempt; past it, retried."
    )
    graph_max_concurrency: int = Field(
        default=16, ge=1, le=256, description="Graph calls in flight at most, all channels."
    )
    graph_proxy_from_env: bool = Field(
        default=False,
        description="Reach Meta through HTTPS_PROXY/NO_PROXY from the environment.",
    )
    graph_plain_http_host: str = Field(
        default="",
        pattern=r"^[A-Za-z0-9.:-]*$",
        description="Tests only, never in production: one non-loopback host the Graph base "
        "URL may name with plain http (a Graph stand-in on a test network, e.g. the local "
        "node's host address). Empty: https, plain http for loopback only.",
    )
    graph_account_call_budget: int = Field(
        default=200,
        ge=1,
        description="Graph calls per business account per hour the operator allows itself "
        "(Meta's budget is about 200 per app and account; past ours, RateLimited).",
    )
    graph_active_account_call_budget: int = Field(
        default=5000,
        ge=1,
        description="The same for an active account, one with a registered phone number "
        "(Meta's budget: 5,000 an hour per app and active account). Never below "
        "graph_account_call_budget.",
    )
    graph_throttle_seconds: float = Field(
        default=60.0,
        ge=0,
        description="After Meta's rate limit (4, 80007) without a stated "
        "estimated_time_to_regain_access, no Graph call for this long (that scope: the "
        "business account, or the whole app for 4).",
    )
    health_period_seconds: float = Field(
        default=3600.0,
        ge=1,
        description="Each channel is checked at Meta again after this long (jittered by "
        "+-10%); a restart makes no call for channels checked within it.",
    )
    watch_initial_streaming: bool = Field(
        default=False,
        description="Take the channels at start as a watch's initial events "
        "(sendInitialEvents, Kubernetes 1.34+) instead of one listing answer: a start over "
        "tens of thousands of channels holds far less memory (docs/benchmarks.md). Off by "
        "default: Kopf resumes a stream cut short during those initial events from the last "
        "channel read, so channels not yet sent wait for their next change or restart.",
    )
    webhook_mode: WebhookMode = Field(
        default="managed",
        description="For channels without spec.webhook.mode: managed (the operator "
        "registers the webhook at Meta) or manual (entered in the Meta app by hand).",
    )

    leader_election_lease: str = Field(
        default="whatsapp-channels-operator",
        pattern=DNS1123_SUBDOMAIN_PATTERN,
        max_length=253,
        description="The coordination.k8s.io Lease the operator's replicas elect their leader "
        "on, in the keys namespace (the operator's own); only its holder works.",
    )
    lease_duration_seconds: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="How long a candidate waits, from the last change it saw of the Lease, "
        "before it takes the Lease of a silent leader (client-go's default).",
    )
    renew_deadline_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A leader that could not renew its Lease for this long exits, before the "
        "lease can lapse (shorter than the lease duration).",
    )
    retry_period_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the leader renews, and a candidate tries to take, the Lease "
        "(shorter than the renew deadline).",
    )

    @model_validator(mode="after")
    def _lease_timing(self) -> Self:
        if not self.retry_period_seconds < self.renew_deadline_seconds:
            raise ValueError("retry_period_seconds must be shorter than renew_deadline_seconds")
        if not self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError("renew_deadline_seconds must be shorter than lease_duration_seconds")
        return self

    platform_app_dir: Path | None = Field(
        default=None,
        description="A directory holding the platform's own Meta app, one file per key "
        "(app_id, app_secret, optional config_id): a Secret mounted as a volume "
        "(the chart's operator.platformApp.existingSecret). With it, a channel may leave out "
        "its app secret; unset: none.",
    )

    @property
    def liveness_endpoint(self) -> str:
        return f"http://{self.liveness_host}:{self.liveness_port}/healthz"

"""The product on a cluster, as `whatsapp-dev`, the tests and the benchmarks run it: the CRD,
the three processes (operator, facade, receiver) and the kubeconfig of a service account.

Each process is its console script with its `WA_<PROCESS>_*` variables (and the shared
`WA_CHANNELS_NAMESPACE` and `WA_KEYS_NAMESPACE`), given as keywords named after its settings
class's fields (the TypedDicts below; tests/launcher/test_product.py checks them against
the classes); it listens on loopback, logs to `<log_dir>/<script>-<namespace>-<port>.log`
and is returned once its health URL answers 200.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Required, TypedDict, Unpack

from localkube.cluster import Cluster, free_port
from localkube.services import Service, script, start_service
from whatsapp_channel.settings import (
    CHANNELS_NAMESPACE_VARIABLE,
    KEYS_NAMESPACE_VARIABLE,
    LogLevel,
)

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "whatsappchannels.yaml"
CRD_NAME = "whatsappchannels.whatsapp.hydracore.io"
LOOPBACK = "127.0.0.1"
# Settings read from one variable by every process that has them, instead of <prefix><NAME>.
SHARED_VARIABLES = {
    "namespace": CHANNELS_NAMESPACE_VARIABLE,
    "keys_namespace": KEYS_NAMESPACE_VARIABLE,
}


@dataclass(frozen=True)
class Process:
    """One of the product's console scripts: its variables' prefix, the ones that say where
    it listens, and its health paths (alive; able to serve)."""

    script: str
    prefix: str
    listen: str  # "<prefix><listen>HOST" and "<prefix><listen>PORT"
    live_path: str
    ready_path: str

    def env(self, **settings: object) -> dict[str, str]:
        """`settings` (a settings field's name and value; None: its default) as variables; a
        list comma-separated, as the settings read it."""
        return {
            self.variable(name): ",".join(value) if isinstance(value, list) else str(value)
            for name, value in settings.items()
            if value is not None
        }

    def variable(self, field: str) -> str:
        """The environment variable of settings field `field`."""
        return SHARED_VARIABLES.get(field) or f"{self.prefix}{field.upper()}"

    @property
    def host_variable(self) -> str:
        return f"{self.prefix}{self.listen}HOST"

    @property
    def port_variable(self) -> str:
        return f"{self.prefix}{self.listen}PORT"

    @property
    def metrics_port_variable(self) -> str:
        return f"{self.prefix}METRICS_PORT"


OPERATOR = Process("whatsapp-operator", "WA_OPERATOR_", "LIVENESS_", "/healthz", "/healthz")
FACADE = Process("whatsapp-facade", "WA_FACADE_", "", "/healthz", "/readyz")
RECEIVER = Process("whatsapp-receiver", "WA_RECEIVER_", "", "/healthz", "/readyz")
PROCESSES = {process.script: process for process in (OPERATOR, FACADE, RECEIVER)}


class OperatorEnv(TypedDict, total=False):
    """Fields of channel_operator.settings.OperatorSettings (None: its default)."""

    namespace: Required[str]
    webhook_base_url: Required[str]
    keys_namespace: str | None
    metrics_port: int | None  # on loopback; None: off
    log_level: LogLevel | None
    graph_base_url: str | None  # Meta's Graph API, or a loopback stand-in
    graph_version: str | None
    graph_timeout_seconds: float | None
    graph_max_concurrency: int | None
    graph_proxy_from_env: bool | None
    graph_plain_http_host: str | None  # tests only: a non-loopback stand-in over http
    graph_account_call_budget: int | None
    graph_active_account_call_budget: int | None  # an account with a registered number
    graph_throttle_seconds: float | None
    health_period_seconds: float | None
    watch_initial_streaming: bool | None
    webhook_mode: Literal["managed", "manual"] | None
    leader_election_lease: str | None
    lease_duration_seconds: float | None
    renew_deadline_seconds: float | None
    retry_period_seconds: float | None
    platform_app_dir: Path | None  # the platform's Meta app (channel_operator.platform_app)


class ServingEnv(TypedDict, total=False):
    """Fields of channel_api.bounded_http.ServingSettings, in the facade's and receiver's."""

    max_head_bytes: int | None
    head_timeout_seconds: float | None
    max_connections: int | None
    trusted_proxies: list[str] | None


class FacadeEnv(ServingEnv, total=False):
    """Fields of channel_api.facade.settings.FacadeSettings (None: its default)."""

    namespace: Required[str]
    api_keys_file: Required[Path]
    keys_namespace: str | None
    ready_wait_seconds: float | None
    max_body_bytes: int | None
    kube_timeout_seconds: float | None
    sealing_key_refresh_seconds: float | None
    metrics_port: int | None  # on loopback; None: off
    log_level: LogLevel | None
    platform_app: bool | None  # the operator holds a platform app
    onboarding_page: bool | None  # the Embedded Signup page (needs the two ids below)
    platform_app_id: str | None
    signup_config_id: str | None
    facebook_sdk_url: str | None  # Facebook's SDK, or the stand-in's
    graph_version: str | None  # the Graph version the page's SDK is initialised with
    onboarding_link_seconds: float | None


class ReceiverEnv(ServingEnv, total=False):
    """Fields of channel_api.receiver.settings.ReceiverSettings (None: its default)."""

    namespace: Required[str]
    forward_url_template: Required[str]
    forward_secret_file: Required[Path]
    forward_timeout_seconds: float | None
    forward_max_connections: int | None
    max_body_bytes: int | None
    status_write_interval_seconds: float | None
    metrics_port: int | None  # on loopback; None: off
    log_level: LogLevel | None
    max_concurrent_requests: int | None
    max_requests_per_client: int | None
    max_buffered_bytes: int | None
    body_timeout_seconds: float | None
    forward_max_per_instance: int | None
    app_verify_token_file: Path | None  # the app callback's verify token (account webhooks)


def start(
    process: Process,
    env: dict[str, str],
    *,
    kubeconfig: Path,
    log_dir: Path,
    port: int | None = None,
    ready: bool = True,
    wait: bool = True,
) -> Service:
    """Start `process` with `env` as the user of `kubeconfig`, listening on loopback at
    `port` (default: a free one); return once it is ready (or only alive: `ready=False`;
    or at once: `wait=False`, for a process expected not to become healthy yet)."""
    port = port or free_port()
    url = f"http://{LOOPBACK}:{port}"
    namespace = env.get(process.variable("namespace"), "default")
    return start_service(
        process.script,
        [script(process.script)],
        env={
            **env,
            "KUBECONFIG": str(kubeconfig),
            process.host_variable: LOOPBACK,
            process.port_variable: str(port),
        },
        log_path=log_dir / f"{process.script}-{namespace}-{port}.log",
        health_url=(url + (process.ready_path if ready else process.live_path)) if wait else None,
        url=url,
    )


def start_operator(
    kubeconfig: Path,
    log_dir: Path,
    *,
    port: int | None = None,
    wait: bool = True,
    **env: Unpack[OperatorEnv],
) -> Service:
    return start(
        OPERATOR, OPERATOR.env(**env), kubeconfig=kubeconfig, log_dir=log_dir, port=port, wait=wait
    )


def start_facade(
    kubeconfig: Path,
    log_dir: Path,
    *,
    port: int | None = None,
    ready: bool = True,
    **env: Unpack[FacadeEnv],
) -> Service:
    return start(
        FACADE, FACADE.env(**env), kubeconfig=kubeconfig, log_dir=log_dir, port=port, ready=ready
    )


def start_receiver(
    kubeconfig: Path, log_dir: Path, *, port: int | None = None, **env: Unpack[ReceiverEnv]
) -> Service:
    return start(RECEIVER, RECEIVER.env(**env), kubeconfig=kubeconfig, log_dir=log_dir, port=port)


def apply_crd(cluster: Cluster, namespace: str = "default") -> Path:
    """The WhatsAppChannel CRD applied, established and served (listable in `namespace`)."""
    cluster.kubectl("apply", "-f", str(CRD_FILE))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    cluster.wait_until_served("whatsappchannels", namespace)
    return CRD_FILE

"""How the facade and the receiver start: settings loaded and refused one way, the app built,
metrics on a port of their own, then uvicorn. One place, so the two HTTP processes cannot
drift apart in how they start, log or refuse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import prometheus_client
import uvicorn
from pydantic_settings import BaseSettings
from whatsapp_channel.kube import KubeConfigError
from whatsapp_channel.settings import configure_logging, load_settings, refuse

from channel_api.bounded_http import HeadLimits, bounded_http


class ServedSettings(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def metrics_port(self) -> int: ...
    @property
    def log_level(self) -> str: ...

    @property
    def trusted_proxies(self) -> list[str]: ...

    def head_limits(self) -> HeadLimits: ...


S = TypeVar("S", bound=BaseSettings)


def serve(
    prog: str,
    settings_class: type[S],
    create_app: Callable[[S], Any],
    *,
    start_errors: tuple[type[Exception], ...],
    start_error_prefix: str,
    **uvicorn_options: Any,
) -> None:
    """Load `settings_class` from the environment, build the app and serve it; bad settings,
    missing cluster credentials or one of `start_errors` stop the process with one line."""
    settings = load_settings(settings_class, prog)
    served: ServedSettings = settings  # type: ignore[assignment]
    configure_logging(served.log_level)
    try:
        app = create_app(settings)
    except KubeConfigError as exc:
        refuse(prog, str(exc))
    except start_errors as exc:
        refuse(prog, f"{start_error_prefix}: {exc}")
    if served.metrics_port:
        prometheus_client.start_http_server(served.metrics_port, served.host)
    run(app, served, **uvicorn_options)


def run(app: Any, served: ServedSettings, **uvicorn_options: Any) -> None:
    """Serve `app` with uvicorn as configured (`options`)."""
    uvicorn.run(app, **options(served), **uvicorn_options)


def options(served: ServedSettings) -> dict[str, Any]:
    """uvicorn's options for serving as configured: request heads bounded (`bounded_http`),
    the client's address forwarded only by the proxies the settings trust."""
    return {
        "host": served.host,
        "port": served.port,
        "log_level": served.log_level.lower(),
        "server_header": False,
        "http": bounded_http(served.head_limits()),
        # Neither app serves WebSockets: an upgrade would leave the bounded protocol.
        "ws": "none",
        "proxy_headers": bool(served.trusted_proxies),
        "forwarded_allow_ips": served.trusted_proxies or None,
    }

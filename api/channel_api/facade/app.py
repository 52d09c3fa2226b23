"""The app factory: settings and (optionally) a Kubernetes client in, a FastAPI app out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from whatsapp_channel.kube import Kube, KubeError

from channel_api.facade import onboarding, routes
from channel_api.facade.api_keys import ApiKeyFile
from channel_api.facade.body_limit import BodyLimit
from channel_api.facade.channel_watch import ChannelWatch
from channel_api.facade.errors import install_error_handlers
from channel_api.facade.metrics import RequestMetrics
from channel_api.facade.operations import Channels
from channel_api.facade.public_keys import SealingKeyCache, SealingKeyUnavailable
from channel_api.facade.settings import FacadeSettings

log = logging.getLogger(__name__)


def create_app(settings: FacadeSettings, kube: Kube | None = None) -> FastAPI:
    """Without `kube`, one is made here with `Kube.connect` (and closed at shutdown); a given
    one belongs to the caller. A broken API keys file or no cluster credentials fail here."""
    api_keys = ApiKeyFile(settings.api_keys_file)
    owned = kube is None
    client = (
        kube
        if kube is not None
        else Kube.connect(user_agent="whatsapp-facade", timeout=settings.kube_timeout_seconds)
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sealing_keys = SealingKeyCache(
            client,
            settings.sealing_namespace,
            refresh_seconds=settings.sealing_key_refresh_seconds,
        )
        watch = ChannelWatch(client, settings.namespace)
        if settings.ready_wait_seconds > 0:
            watch.start()
        app.state.sealing_keys = sealing_keys
        app.state.channels = Channels(
            client,
            settings.namespace,
            sealing_keys,
            watch,
            ready_wait_seconds=settings.ready_wait_seconds,
            platform_app=settings.platform_app,
        )
        log.info("serving WhatsApp channels of namespace %s", settings.namespace)
        try:
            yield
        finally:
            await watch.stop()
            if owned:
                await client.close()

    app = FastAPI(
        title="HydraCore",
        summary="WhatsApp channels of HydraCore instances",
        version="1.0.0",
        lifespan=lifespan,
    )
    app.state.api_keys = api_keys
    install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics)  # outermost
    app.include_router(routes.router)
    if settings.onboarding_page:
        if settings.platform_app_id is None or settings.signup_config_id is None:
            raise ValueError("the onboarding page needs platform_app_id and signup_config_id")
        app.state.onboarding_links = onboarding.Links(
            settings.api_keys_file, settings.onboarding_link_seconds
        )
        app.state.onboarding = {
            "app_id": settings.platform_app_id,
            "config_id": settings.signup_config_id,
            "sdk_url": settings.facebook_sdk_url,
            "version": settings.graph_version,
        }
        app.include_router(onboarding.router())
    _describe_credentials(app, app_secret_required=not settings.platform_app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """Liveness: the process serves."""
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: the cluster answers and the operator's sealing key can be read."""
        try:
            await request.app.state.sealing_keys.get()
        except (KubeError, SealingKeyUnavailable) as exc:
            return unready(exc)
        return JSONResponse({"status": "ok"})

    return app


def _describe_credentials(app: FastAPI, *, app_secret_required: bool) -> None:
    """The OpenAPI document says what this facade takes: `access_token` or `signup_code`
    (one of them, a string, never null: the model's oneOf), and `app_secret` required
    unless the operator holds the platform's own Meta app (then that app's secret is
    used)."""
    generate = app.openapi

    def not_null(properties: dict[str, Any], name: str) -> None:
        field = properties[name]
        (string,) = [s for s in field.pop("anyOf", [field]) if s.get("type") != "null"]
        field.update(string)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            setup = generate()["components"]["schemas"]["ChannelSetup"]
            for name in ("access_token", "signup_code"):
                not_null(setup["properties"], name)
            if app_secret_required:  # as the seed has it: a string, required
                setup["required"] = sorted({*setup.get("required", ()), "app_secret"})
                not_null(setup["properties"], "app_secret")
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


# Anyone may ask /readyz: the answer is fixed; why is in the log (the apiserver's words name
# the service account, the namespaces and the objects it was refused).
UNREADY = {
    "status": "unready",
    "detail": "not ready: the cluster or the operator's sealing key is unavailable",
}


def unready(exc: Exception) -> JSONResponse:
    log.warning("not ready: %s: %s", type(exc).__name__, exc)
    return JSONResponse(UNREADY, status_code=503)

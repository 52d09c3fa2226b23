"""How failures answer: client mistakes as 4xx, the cluster's trouble as 503 with a clear
detail, never a trace, never a secret (validation errors lose their `input` echo)."""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable, Iterator

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from whatsapp_channel.kube import Forbidden, Invalid, KubeError, Unavailable

from channel_api.facade import auth
from channel_api.facade.metrics import APISERVER_ERRORS
from channel_api.facade.operations import (
    ChannelBusy,
    ChannelStoreMissing,
    NoChannel,
    PhoneNumberTaken,
)
from channel_api.facade.public_keys import SealingKeyUnavailable

log = logging.getLogger(__name__)

NO_CHANNEL = "no WhatsApp channel for this instance"
PHONE_NUMBER_TAKEN = (
    "phone_number_id is already used by another instance's WhatsApp channel; "
    "a phone number can belong to one channel only"
)
RETRY_AFTER = {"Retry-After": "5"}
# Field paths in an apiserver "is invalid" message; the values beside them are not repeated.
_INVALID_FIELD = re.compile(r"\b(spec(?:\.[A-Za-z]+)+)\b")


class ErrorDetail(BaseModel):
    detail: str


def _detail(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _route(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    refusal = await auth.refusal(request)
    if refusal is not None:
        return refusal
    # Exactly loc/msg/type: `input` would echo the tokens of a malformed body.
    errors = [
        {"loc": list(error["loc"]), "msg": str(error["msg"]), "type": str(error["type"])}
        for error in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


def _routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's include_router wrapper
        yield from _routes(included.routes) if included is not None else (route,)


def _allowed_methods(request: Request) -> str:
    """Every method some route serves on this path (Starlette's 405 names only the first
    route's, and each method of the channel path is a route of its own)."""
    path = request.url.path
    methods: set[str] = set()
    for route in _routes(request.app.router.routes):
        pattern = getattr(route, "path_regex", None)
        if pattern is not None and pattern.match(path):
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 405:
        exc.headers = {**(exc.headers or {}), "Allow": _allowed_methods(request)}
    if exc.status_code == 400 and "instance_id" in request.path_params:  # an unreadable body
        refusal = await auth.refusal(request)
        if refusal is not None:
            return refusal
    return await http_exception_handler(request, exc)


async def _no_channel(request: Request, exc: Exception) -> Response:
    return _detail(404, NO_CHANNEL)


async def _busy(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChannelBusy)
    return _detail(409, exc.detail, RETRY_AFTER)


async def _phone_taken(request: Request, exc: Exception) -> Response:
    # Which channel holds it is not said: the caller's key may not manage that instance.
    return _detail(409, PHONE_NUMBER_TAKEN)


async def _sealing_key_unavailable(request: Request, exc: Exception) -> Response:
    log.warning("%s: %s", _route(request), exc)
    return _detail(503, f"cannot seal credentials: {exc}; retry shortly", RETRY_AFTER)


async def _store_missing(request: Request, exc: Exception) -> Response:
    log.error("%s: the channels namespace or the WhatsAppChannel CRD is missing", _route(request))
    return _detail(503, "the channels namespace or the WhatsAppChannel CRD is missing")


async def _kube_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KubeError)
    APISERVER_ERRORS.labels(type(exc).__name__).inc()
    # The apiserver's message may quote values; log its status and reason only.
    log.warning("%s: apiserver answered %d %s", _route(request), exc.status, exc.reason)
    if isinstance(exc, Invalid):
        fields = sorted(set(_INVALID_FIELD.findall(exc.message))) or ["spec"]
        refusal = {
            "loc": ["body"],
            "msg": f"the cluster refused the channel: invalid {', '.join(fields)}",
            "type": "value_error",
        }
        return JSONResponse({"detail": [refusal]}, status_code=422)
    if isinstance(exc, Unavailable):
        return _detail(
            503,
            "the Kubernetes API server is unavailable or too slow; retry shortly",
            RETRY_AFTER,
        )
    if isinstance(exc, Forbidden):
        return _detail(503, "the facade is not allowed to do this in the cluster (check its RBAC)")
    return _detail(503, f"unexpected answer from the Kubernetes API server ({exc.status})")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(NoChannel, _no_channel)
    app.add_exception_handler(ChannelBusy, _busy)
    app.add_exception_handler(PhoneNumberTaken, _phone_taken)
    app.add_exception_handler(SealingKeyUnavailable, _sealing_key_unavailable)
    app.add_exception_handler(ChannelStoreMissing, _store_missing)
    app.add_exception_handler(KubeError, _kube_error)
    app.add_middleware(LastResort)


class LastResort:
    """A bug answers 500 with a fixed detail and logs its traceback without the exception's
    message (which could quote a request's values)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            log.error(
                "unhandled %s in %s %s\n%s",
                type(exc).__name__,
                scope.get("method"),
                scope.get("path"),
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            if started:
                raise
            response = _detail(500, "internal error")
            await response(scope, receive, send)

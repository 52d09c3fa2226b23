"""Who is calling and which instances they may manage: the API key from `Authorization:
Bearer` or `X-Api-Key`, checked against the keys file; 401 without a known key, 403 for an
instance the key may not manage, decided before the cluster is asked."""

from __future__ import annotations

import uuid

from fastapi import HTTPException, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.security import HTTPBearer

from channel_api.facade.api_keys import ApiKey, ApiKeyFile

bearer = HTTPBearer(auto_error=False, description="An API key as a Bearer token.")

UNAUTHENTICATED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="missing or invalid API key",
    headers={"WWW-Authenticate": "Bearer"},
)
NOT_YOURS = HTTPException(
    status_code=status.HTTP_403_FORBIDDEN, detail="this API key may not manage this instance"
)


def authenticate(request: Request, bearer_key: str | None, header_key: str | None) -> ApiKey:
    """The caller's key from `Authorization: Bearer` (preferred) or `X-Api-Key`, or 401."""
    presented = bearer_key or header_key
    keys: ApiKeyFile = request.app.state.api_keys
    key = keys.identify(presented) if presented else None
    if key is None:
        raise UNAUTHENTICATED
    return key


def authorize(key: ApiKey, instance_id: uuid.UUID) -> str:
    """The channel name (canonical instance id) if `key` may manage it, else 403, decided
    before the cluster is asked so a limited key learns nothing about other instances."""
    name = str(instance_id)
    if not key.may_manage(name):
        raise NOT_YOURS
    return name


async def refusal(request: Request) -> Response | None:
    """401 or 403 when the caller may not use this route, else None. FastAPI reads the body
    before it resolves dependencies, so the answers about a body that cannot be read ask
    this first: a stranger gets 401 and a key limited to other instances 403, whatever
    the body."""
    try:
        credentials = await bearer(request)
        key = authenticate(
            request,
            credentials.credentials if credentials else None,
            request.headers.get("x-api-key"),
        )
        raw_instance = request.path_params.get("instance_id")
        if raw_instance is not None:
            try:
                instance_id = uuid.UUID(str(raw_instance))
            except ValueError:
                return None  # the 422 says so
            authorize(key, instance_id)
    except HTTPException as refused:
        return await http_exception_handler(request, refused)
    return None

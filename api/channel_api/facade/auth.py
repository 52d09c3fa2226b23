"""Who is calling and which instances they may manage: the API key from `Authorization:
Bearer` or `X-Api-Key`, checked against the keys file; 401 without a known key, 403 for an
instance the key may not manage, decided before the cluster is asked."""

from __future__ import annotations

import uuid

from fastapi import HTTPException, Request, Response, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from channel_api.facade.api_keys import ApiKey, ApiKeyFile

bearer = HTTPBearer(auto_error=False, description="An API key as a Bearer token.")
# Declared beside the bearer so that OpenAPI lists two alternative security requirements:
# either credential alone is enough. The X-Api-Key header parameter stays as the contract has it.
api_key_header = APIKeyHeader(
    name="X-Api-Key", auto_error=False, description="An API key in the X-Api-Key header."
)

UNAUTHENTICATED = HTTPException(
    status_code=status.HTTP_401_UNAUTHORIZED,
    detail="missing or invalid API key",
    headers={"WWW-Authenticate": "Bearer"},
)
NOT_YOURS = HTTPException(
    status_code=status.HTTP_403_FORBIDDEN, detail="this API key may not manage this instance"
)


def authenticate(request: Request) -> ApiKey:
    """The caller's key, or 401. A key may come as `Authorization: Bearer` or `X-Api-Key`;
    every credential presented must be valid and name the same key: a bad bearer is not
    rescued by a good X-Api-Key (nor the other way round), and an `Authorization` header
    that is not a bearer is a bad credential, not an absent one."""
    keys: ApiKeyFile = request.app.state.api_keys
    presented: list[str] = []
    for authorization in request.headers.getlist("authorization"):
        scheme, token = get_authorization_scheme_param(authorization)
        presented.append(token if scheme.lower() == "bearer" else "")
    presented.extend(request.headers.getlist("x-api-key"))
    found = {keys.identify(value) if value else None for value in presented}
    if len(found) != 1:
        raise UNAUTHENTICATED  # none presented, or two that disagree
    (key,) = found
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
        key = authenticate(request)
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

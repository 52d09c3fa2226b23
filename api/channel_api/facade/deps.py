"""The routes' dependencies: who is calling, which instance they may manage, the channels."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from channel_api.facade.api_keys import ApiKey, ApiKeyFile
from channel_api.facade.channels import Channels

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


async def api_key(
    request: Request,
    # Both only declare the schemes and the header for OpenAPI; `authenticate` reads the request.
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    _header: Annotated[str | None, Depends(api_key_header)],
    x_api_key: Annotated[str | None, Header(alias="X-Api-Key", title="X-Api-Key")] = None,
) -> ApiKey:
    return authenticate(request)


Caller = Annotated[ApiKey, Depends(api_key)]


async def manageable_instance(
    caller: Caller, instance_id: Annotated[uuid.UUID, Path(title="Instance Id")]
) -> str:
    return authorize(caller, instance_id)


InstanceId = Annotated[str, Depends(manageable_instance)]


def channels(request: Request) -> Channels:
    service: Channels = request.app.state.channels
    return service


ChannelsDep = Annotated[Channels, Depends(channels)]

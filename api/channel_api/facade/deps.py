"""The routes' dependencies: who is calling, which instance they may manage, the channels."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from channel_api.facade.api_keys import ApiKey, ApiKeyFile
from channel_api.facade.channels import Channels

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


async def api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    x_api_key: Annotated[str | None, Header(alias="X-Api-Key", title="X-Api-Key")] = None,
) -> ApiKey:
    return authenticate(request, credentials.credentials if credentials else None, x_api_key)


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

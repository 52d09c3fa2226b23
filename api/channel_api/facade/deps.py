"""The routes' dependencies: who is calling, which instance they may manage, the channels."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials

from channel_api.facade.api_keys import ApiKey
from channel_api.facade.auth import api_key_header, authenticate, authorize, bearer
from channel_api.facade.operations import Channels


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

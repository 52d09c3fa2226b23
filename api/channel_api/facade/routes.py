"""The contract's three endpoints; each is one call into `Channels`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from whatsapp_channel.model import ChannelCreated, ChannelSetup, ChannelView

from channel_api.facade.deps import ChannelsDep, InstanceId
from channel_api.facade.errors import ErrorDetail

CHANNEL_PATH = "/v1/instances/{instance_id}/channels/whatsapp"


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorDetail, "description": description}


router = APIRouter(
    tags=["Whatsapp channel"],
    responses={
        401: _error("Missing or invalid API key"),
        403: _error("The API key may not manage this instance"),
        503: _error("The cluster is unavailable or not ready; retry"),
    },
)


@router.get(
    CHANNEL_PATH,
    summary="Whatsapp Status",
    response_model=ChannelView,
    responses={404: _error("The instance has no WhatsApp channel")},
)
async def whatsapp_status(instance_id: InstanceId, channels: ChannelsDep) -> ChannelView:
    """Get WhatsApp channel status for an instance."""
    return await channels.read(instance_id)


@router.post(
    CHANNEL_PATH,
    summary="Setup Whatsapp",
    response_model=ChannelCreated,
    response_model_exclude_unset=True,
    responses={
        400: _error("The body could not be decoded (FastAPI's answer to bytes that are not UTF-8)"),
        409: _error(
            "The channel is being torn down or changed concurrently (retry), or another "
            "instance's channel holds the phone_number_id"
        ),
        413: _error("Request body too large"),
    },
)
async def setup_whatsapp(
    instance_id: InstanceId, setup: ChannelSetup, channels: ChannelsDep
) -> ChannelCreated:
    """Configure WhatsApp for an instance. Creates or replaces the instance's channel; the
    credentials are stored sealed. When `verify_token` is omitted for a new channel, a
    generated one is returned in this response only."""
    return await channels.set_up(instance_id, setup)


@router.delete(
    CHANNEL_PATH,
    summary="Teardown Whatsapp",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: _error("The instance has no WhatsApp channel")},
)
async def teardown_whatsapp(instance_id: InstanceId, channels: ChannelsDep) -> None:
    """Remove WhatsApp channel from instance."""
    await channels.tear_down(instance_id)

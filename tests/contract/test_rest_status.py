"""The one mapping from a channel's conditions to the REST `status` (issue 14: every branch,
each found by a mutant that no other test noticed)."""

from __future__ import annotations

from typing import Any

import pytest
from whatsapp_channel.model import rest_status


def channel(
    ready: dict[str, Any] | None,
    *,
    generation: int = 2,
    enabled: bool | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "c", "generation": generation}
    if deleting:
        metadata["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec: dict[str, Any] = {"instanceId": "c"}
    if enabled is not None:
        spec["enabled"] = enabled
    conditions = [] if ready is None else [{"type": "Ready", "observedGeneration": 2, **ready}]
    return {"metadata": metadata, "spec": spec, "status": {"conditions": conditions}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (channel({"status": "True", "reason": "ChannelReady"}), "active"),
        (channel({"status": "True", "reason": "ChannelReady"}, enabled=True), "active"),
        (channel({"status": "True", "reason": "ChannelDisabled"}, enabled=False), "disabled"),
        (channel({"status": "False", "reason": "SealDoesNotOpen"}), "error"),
        (channel({"status": "Unknown", "reason": "GraphUnavailable"}), "pending"),
        (channel({"status": "True", "reason": "ChannelReady"}, generation=3), "pending"),
        (channel(None), "pending"),
        (channel({"status": "True", "reason": "ChannelReady"}, deleting=True), "deleting"),
        (channel({"status": "False", "reason": "SealDoesNotOpen"}, deleting=True), "deleting"),
        ({}, "pending"),
    ],
)
def test_rest_status(obj: dict[str, Any], expected: str) -> None:
    assert rest_status(obj) == expected

"""The webhook mode in the channel Secret (the receiver notes Meta's challenges only for
manual webhooks): which mode the operator writes, that a Secret of an older operator (no
mode) or of another default converges with one write, and that nothing is written again."""

from __future__ import annotations

import copy
import uuid
from typing import Any, cast

import pytest
from channel_operator import reconcile
from channel_operator.channel_at_meta import Meta
from channel_operator.desired import ChannelRef, build_secret
from channel_operator.graph import GraphClient
from channel_operator.reconcile import Runtime
from whatsapp_channel.channel_secret import WEBHOOK_MODE_ANNOTATION, parse
from whatsapp_channel.kube import JSON, core_path
from whatsapp_channel.model import WebhookMode

from tests.operator.test_reconcile import (
    NS,
    VALUES,
    channel_body,
    make_runtime,
    public_key,
    sealed_spec,
)
from tests.support.fake_kube import MemoryKube

# Writing the Secret asks Meta nothing: a client that is never called.
NO_GRAPH = cast(GraphClient, object())


def with_meta(rt: Runtime, default: WebhookMode) -> Runtime:
    rt.meta = Meta(graph=NO_GRAPH, webhook_mode=default)
    return rt


def spec_with(kube: MemoryKube, name: str, mode: WebhookMode | None) -> JSON:
    webhook = {"webhook": {"mode": mode}} if mode else {}
    return sealed_spec(public_key(kube), name, VALUES, **webhook)


def stored(kube: MemoryKube, name: str) -> JSON:
    return kube.objects[core_path("secrets", NS, f"whatsapp-{name}")]


def mode_in(kube: MemoryKube, name: str) -> str | None:
    annotations = stored(kube, name)["metadata"]["annotations"]
    value = annotations.get(WEBHOOK_MODE_ANNOTATION)
    return str(value) if value is not None else None


async def sync(rt: Runtime, body: JSON) -> Any:
    spec = reconcile.parse_spec(body["spec"])
    return await reconcile.sync_secret(
        rt, ChannelRef.from_body(body), spec, status=dict(body.get("status") or {})
    )


@pytest.mark.parametrize(
    ("default", "asked", "written"),
    [
        (None, None, "manual"),  # no Meta: only the challenge note tells the webhook works
        (None, "managed", "manual"),
        ("managed", None, "managed"),
        ("managed", "manual", "manual"),
        ("manual", None, "manual"),
        ("manual", "managed", "managed"),
    ],
)
async def test_the_secret_says_the_channels_effective_mode(
    default: WebhookMode | None, asked: WebhookMode | None, written: WebhookMode
) -> None:
    kube = MemoryKube()
    rt = await make_runtime(kube)
    if default is not None:
        with_meta(rt, default)
    name = str(uuid.uuid4())
    body = channel_body(name, spec_with(kube, name, asked))
    assert reconcile.effective_mode(rt, reconcile.parse_spec(body["spec"])) == written
    assert await sync(rt, body) == "created"
    assert mode_in(kube, name) == written
    parsed = parse(stored(kube, name))
    assert parsed is not None
    assert parsed.notes_challenges == (written == "manual")


async def test_an_older_operators_secret_gets_the_mode_once_and_then_no_write() -> None:
    kube = MemoryKube()
    name = str(uuid.uuid4())
    seeded = await make_runtime(kube)
    body = channel_body(name, spec_with(kube, name, None))
    credentials = await reconcile.read_credentials(
        seeded, ChannelRef.from_body(body), reconcile.parse_spec(body["spec"])
    )
    older = build_secret(
        ChannelRef.from_body(body), reconcile.parse_spec(body["spec"]), credentials
    )
    del older["metadata"]["annotations"][WEBHOOK_MODE_ANNOTATION]  # as before the mode existed
    await kube.create(core_path("secrets", NS), copy.deepcopy(older))

    rt = await make_runtime(kube)  # the new operator starts: its cache lists the old Secret
    patch: JSON = {}
    assert await reconcile.reconcile(rt, body, patch) is None
    path = core_path("secrets", NS, f"whatsapp-{name}")
    assert kube.secret_writes() == [("PUT", path)]
    assert mode_in(kube, name) == "manual"
    assert stored(kube, name)["data"] == older["data"]

    kube.writes.clear()
    again: JSON = {}
    assert await reconcile.reconcile(rt, {**body, "status": patch}, again) is None
    assert kube.writes == []
    assert again == {}


async def test_a_new_default_mode_rewrites_each_secret_once() -> None:
    """The chart's default changed and the operator restarted: the Secrets of channels
    without their own mode follow with one write each; those with their own mode stay."""
    kube = MemoryKube()
    rt = with_meta(await make_runtime(kube), "managed")
    defaulted, own = str(uuid.uuid4()), str(uuid.uuid4())
    bodies = {
        defaulted: channel_body(defaulted, spec_with(kube, defaulted, None)),
        own: channel_body(own, spec_with(kube, own, "managed")),
    }
    for body in bodies.values():
        assert await sync(rt, body) == "created"

    restarted = with_meta(await make_runtime(kube), "manual")
    assert [await sync(restarted, body) for body in bodies.values()] == ["updated", None]
    assert (mode_in(kube, defaulted), mode_in(kube, own)) == ("manual", "managed")
    assert kube.secret_writes() == [("PUT", core_path("secrets", NS, f"whatsapp-{defaulted}"))]

    kube.writes.clear()
    again = with_meta(await make_runtime(kube), "manual")
    assert [await sync(again, body) for body in bodies.values()] == [None, None]
    assert kube.writes == []

"""Which answered challenges the receiver notes in status (lastChallengeAt): those of manual
webhooks, and of Secrets that do not say (an older operator's). A managed webhook's challenge
comes from the operator's own registration call, which the operator confirms at Meta: it is
answered the same, and noted nowhere (one apiserver write less per channel). Events are
noted (lastEventAt) whatever the mode."""

from __future__ import annotations

import pytest
from channel_api.receiver.channel_cache import channel_from_secret
from whatsapp_channel.channel_secret import WEBHOOK_MODE_ANNOTATION
from whatsapp_channel.kube import channels_path
from whatsapp_channel.model import WebhookMode

from tests.receiver.conftest import Harness
from tests.support.payloads import (
    channel_secret,
    meta_bytes,
    new_instance_id,
    notification,
    signed,
    text_change,
)

APP_SECRET = "0123456789abcdef0123456789abcdef"
PHONE = "114896151713920"


def challenge(token: str, value: str = "1158201444") -> dict[str, str]:
    return {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": value}


def status_path(instance_id: str) -> str:
    return channels_path("tests", instance_id, "status")


async def answer_challenges(harness: Harness, instance_id: str, token: str) -> None:
    """Meta's challenge at the channel's URL and at the shared URL, both answered."""
    for path in (f"/hooks/whatsapp/{instance_id}", "/hooks/whatsapp"):
        answer = await harness.client.get(path, params=challenge(token))
        assert (answer.status_code, answer.text) == (200, "1158201444")
    await harness.status.flush()


async def test_a_managed_channels_challenge_is_answered_and_noted_nowhere(harness: Harness):
    iid = new_instance_id()
    harness.load(
        channel_secret(
            iid, PHONE, app_secret=APP_SECRET, verify_token="token-m", webhook_mode="managed"
        )
    )
    await answer_challenges(harness, iid, "token-m")
    assert harness.patches == []

    # Its events are noted as every channel's are.
    body = meta_bytes(notification([text_change(PHONE, "hello")]))
    answer = await harness.client.post(
        f"/hooks/whatsapp/{iid}", content=body, headers=signed(APP_SECRET, body)
    )
    assert answer.status_code == 200
    await harness.status.flush()
    [(path, patch)] = harness.patches
    assert path == status_path(iid)
    assert set(patch["status"]) == {"lastEventAt"}


@pytest.mark.parametrize("mode", ["manual", None], ids=["manual", "no-annotation"])
async def test_a_manual_or_unsaid_channels_challenge_is_noted(
    harness: Harness, mode: WebhookMode | None
):
    iid = new_instance_id()
    secret = channel_secret(
        iid, PHONE, app_secret=APP_SECRET, verify_token="token-x", webhook_mode=mode
    )
    assert (WEBHOOK_MODE_ANNOTATION in secret["metadata"]["annotations"]) == (mode is not None)
    harness.load(secret)
    await answer_challenges(harness, iid, "token-x")
    [(path, patch)] = harness.patches
    assert path == status_path(iid)
    assert set(patch["status"]) == {"lastChallengeAt"}
    assert patch["status"]["lastChallengeAt"].endswith("Z")


async def test_the_mode_follows_the_secret_as_it_changes(harness: Harness):
    """The operator rewrites the Secret when the mode changes: the receiver follows it."""
    iid = new_instance_id()

    def secret(mode: WebhookMode) -> dict[str, object]:
        return channel_secret(
            iid, PHONE, app_secret=APP_SECRET, verify_token="token-c", webhook_mode=mode
        )

    harness.load(secret("manual"))
    harness.cache.apply("MODIFIED", secret("managed"))
    await answer_challenges(harness, iid, "token-c")
    assert harness.patches == []

    harness.cache.apply("MODIFIED", secret("manual"))
    await answer_challenges(harness, iid, "token-c")
    assert [(path, set(patch["status"])) for path, patch in harness.patches] == [
        (status_path(iid), {"lastChallengeAt"})
    ]


async def test_only_the_manual_one_of_two_channels_sharing_a_token_is_noted(harness: Harness):
    """The shared URL finds channels by verify token; each is noted by its own mode."""
    managed, manual = new_instance_id(), new_instance_id()
    harness.load(
        channel_secret(
            managed,
            "1111111111",
            app_secret=APP_SECRET,
            verify_token="shared",
            webhook_mode="managed",
        ),
        channel_secret(
            manual,
            "2222222222",
            app_secret=APP_SECRET,
            verify_token="shared",
            webhook_mode="manual",
        ),
    )
    answer = await harness.client.get("/hooks/whatsapp", params=challenge("shared", value="7"))
    assert (answer.status_code, answer.text) == (200, "7")
    await harness.status.flush()
    assert [path for path, _ in harness.patches] == [status_path(manual)]


@pytest.mark.parametrize(
    ("annotation", "notes"),
    [("managed", False), ("manual", True), (None, True), ("Managed", True), ("", True)],
)
def test_only_the_exact_word_managed_turns_notes_off(annotation: str | None, notes: bool):
    secret = channel_secret(new_instance_id(), PHONE, app_secret=APP_SECRET, verify_token="t")
    if annotation is not None:
        secret["metadata"]["annotations"][WEBHOOK_MODE_ANNOTATION] = annotation
    channel = channel_from_secret(secret)
    assert channel is not None
    assert channel.notes_challenges is notes

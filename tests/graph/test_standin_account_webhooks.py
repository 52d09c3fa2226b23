"""The stand-in sends account webhooks as Meta does (issue 19 item 11): a change of a
number's status or quality rating goes to the app's own callback, signed with the app
secret, never to the number's override, and only while the app is subscribed to the
account. Shapes: Meta's account_update and phone_number_quality_update references (quoted
in graph_standin/account_webhooks.py)."""

from __future__ import annotations

import json
import re
from typing import Any

from channel_api.receiver.webhook_rules import signature_valid
from channel_operator.graph import GraphClient
from graph_standin import GraphStandin, NumberSeed
from graph_standin.state import NumberPatch, PhoneNumber

from tests.graph.conftest import (
    APP_SECRET,
    CREDENTIALS,
    FAST,
    PHONE,
    TOKEN,
    VERIFY_TOKEN,
    WABA,
    Callback,
    admin,
)


async def test_a_ban_and_a_quality_drop_reach_the_apps_callback(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    override = Callback()
    await override.start()
    try:
        seed = NumberSeed(
            phone_number_id=PHONE,
            waba_id=WABA,
            access_token=TOKEN,
            app_secret=APP_SECRET,
            app_callback_url=callback.url,
        )
        standin.seed(seed)
        # Not subscribed: Meta sends nothing.
        status, answer = await admin(standin, "PATCH", f"/numbers/{PHONE}", {"status": "FLAGGED"})
        assert (status, answer["account_webhooks"]) == (200, [])
        async with GraphClient(standin.url, retry=FAST) as graph:
            await graph.subscribe_app(WABA, CREDENTIALS)
            await graph.set_webhook_override(PHONE, CREDENTIALS, override.url, VERIFY_TOKEN)

        status, answer = await admin(standin, "PATCH", f"/numbers/{PHONE}", {"status": "BANNED"})
        assert (status, answer["account_webhooks"]) == (200, [200])
        status, answer = await admin(
            standin, "PATCH", f"/numbers/{PHONE}", {"quality_rating": "RED"}
        )
        assert (status, answer["account_webhooks"]) == (200, [200])
        # Nothing changed: nothing sent.
        status, answer = await admin(standin, "PATCH", f"/numbers/{PHONE}", {"status": "BANNED"})
        assert (status, answer["account_webhooks"]) == (200, [])

        ban, quality = await callback.wait_for(2)
        for event in (ban, quality):
            assert signature_valid(
                APP_SECRET.encode(), event.body, event.headers["X-Hub-Signature-256"].encode()
            )
        banned = json.loads(ban.body)
        assert banned["object"] == "whatsapp_business_account"
        [entry] = banned["entry"]
        assert entry["id"] == WABA
        assert isinstance(entry["time"], int)
        [change] = entry["changes"]
        assert change["field"] == "account_update"
        assert change["value"]["event"] == "DISABLED_UPDATE"
        assert change["value"]["ban_info"]["waba_ban_state"] == "DISABLE"
        [change] = json.loads(quality.body)["entry"][0]["changes"]
        assert change["field"] == "phone_number_quality_update"
        assert change["value"]["event"] == "FLAGGED"
        assert change["value"]["display_phone_number"] == "15550100000"
        assert override.events == []  # never to the number's override
        assert len(callback.events) == 2
    finally:
        await override.stop()


async def test_patching_in_process_sends_them_too(standin: GraphStandin, number: PhoneNumber):
    async with GraphClient(standin.url, retry=FAST) as graph:
        await graph.subscribe_app(WABA, CREDENTIALS)
    assert await standin.patch_number(number, NumberPatch(status="RESTRICTED")) == [200]
    [event] = standin.app_callback_events  # the stand-in's own recorder: no callback entered
    assert event["entry"][0]["changes"][0]["value"] == {"event": "ACCOUNT_RESTRICTION"}


async def test_each_change_sends_metas_fields(standin: GraphStandin, number: PhoneNumber) -> None:
    # Meta's references (graph_standin/account_webhooks.py): account_update's DISABLED_UPDATE
    # carries ban_info with waba_ban_state and waba_ban_date (a date in words, "Month D,
    # YYYY"); phone_number_quality_update carries display_phone_number, FLAGGED or UNFLAGGED
    # and current_limit, for the number's business account.
    async with GraphClient(standin.url, retry=FAST) as graph:
        await graph.subscribe_app(WABA, CREDENTIALS)

    async def sent(patch: NumberPatch) -> list[tuple[str, str, dict[str, Any]]]:
        before = len(standin.app_callback_events)
        assert await standin.patch_number(number, patch)
        return [
            (event["entry"][0]["id"], change["field"], change["value"])
            for event in standin.app_callback_events[before:]
            for change in event["entry"][0]["changes"]
        ]

    [(account, field, value)] = await sent(NumberPatch(status="BANNED"))
    assert (account, field, set(value)) == (WABA, "account_update", {"event", "ban_info"})
    assert set(value["ban_info"]) == {"waba_ban_state", "waba_ban_date"}
    assert re.fullmatch(r"[A-Z][a-z]+ [0-9]{1,2}, [0-9]{4}", value["ban_info"]["waba_ban_date"])

    quality = {"display_phone_number": "61400111222", "current_limit": "TIER_1K"}
    # A status Meta reports only as a quality event: the number flagged.
    assert await sent(NumberPatch(status="FLAGGED")) == [
        (WABA, "phone_number_quality_update", {**quality, "event": "FLAGGED"})
    ]
    assert await sent(NumberPatch(status="CONNECTED")) == [
        (WABA, "account_update", {"event": "ACCOUNT_RECONNECTED"})
    ]
    assert await sent(NumberPatch(quality_rating="RED")) == [
        (WABA, "phone_number_quality_update", {**quality, "event": "FLAGGED"})
    ]
    assert await sent(NumberPatch(quality_rating="GREEN")) == [
        (WABA, "phone_number_quality_update", {**quality, "event": "UNFLAGGED"})
    ]

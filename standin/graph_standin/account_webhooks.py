"""Account webhooks, as Meta sends them to the app's own callback (never to a number's
override) when a number's status or quality changes: the stand-in sends them when a test
patches a number (`PATCH /_standin/numbers/{id}` with `status` or `quality_rating`).

Shapes from Meta's webhook references
(https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/account_update
and .../phone_number_quality_update): `{"object": "whatsapp_business_account", "entry":
[{"id": <WABA id>, "time": <unix time>, "changes": [{"value": {...}, "field": ...}]}]}`.
`account_update` carries `event` (`DISABLED_UPDATE` with `ban_info.waba_ban_state`,
`ACCOUNT_RESTRICTION`, `ACCOUNT_OFFBOARDED`, `ACCOUNT_RECONNECTED`);
`phone_number_quality_update` carries `display_phone_number`, `event` (`FLAGGED`,
`UNFLAGGED`, ...) and `current_limit`.
"""

from __future__ import annotations

import time
from typing import Any

from .state import PhoneNumber

# The number's `status` as the `account_update` event Meta sends about it.
_STATUS_EVENTS = {
    "BANNED": "DISABLED_UPDATE",
    "RESTRICTED": "ACCOUNT_RESTRICTION",
    "DISCONNECTED": "ACCOUNT_OFFBOARDED",
    "CONNECTED": "ACCOUNT_RECONNECTED",
}


def account_notification(waba_id: str, field: str, value: dict[str, Any]) -> dict[str, Any]:
    """One account webhook in Meta's envelope."""
    entry = {"id": waba_id, "time": int(time.time()), "changes": [{"value": value, "field": field}]}
    return {"object": "whatsapp_business_account", "entry": [entry]}


def account_changes(number: PhoneNumber, *, status: str, quality: str) -> list[dict[str, Any]]:
    """The account webhooks Meta sends after the number's status was `status` and its rating
    `quality` and they are now the number's own (none when nothing changed)."""
    sent: list[dict[str, Any]] = []
    digits = "".join(ch for ch in number.display_phone_number if ch.isdigit())
    event = _STATUS_EVENTS.get(number.status)
    if number.status != status and event is not None:
        value: dict[str, Any] = {"event": event}
        if event == "DISABLED_UPDATE":
            banned = {"waba_ban_state": "DISABLE", "waba_ban_date": time.strftime("%B %d, %Y")}
            value["ban_info"] = banned
        sent.append(account_notification(number.waba_id, "account_update", value))
    if number.quality_rating != quality or (number.status != status and event is None):
        flagged = number.status == "FLAGGED" or number.quality_rating == "RED"
        value = {
            "display_phone_number": digits,
            "event": "FLAGGED" if flagged else "UNFLAGGED",
            "current_limit": number.messaging_limit_tier,
        }
        sent.append(account_notification(number.waba_id, "phone_number_quality_update", value))
    return sent

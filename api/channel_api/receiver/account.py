"""Account webhooks: what Meta sends to the app's own callback URL, never to a number's
override (the business account's `account_update`, `account_alerts`,
`phone_number_quality_update`, ...), as pure functions, tested without ASGI.

Meta's shape (https://developers.facebook.com/documentation/business-messaging/whatsapp/
webhooks/reference/phone_number_quality_update, and the webhooks overview's field list):

    {"object": "whatsapp_business_account",
     "entry": [{"id": "<WABA id>", "time": 1748454394,
                "changes": [{"field": "phone_number_quality_update",
                             "value": {"display_phone_number": "...", "event": "..."}}]}]}

The entry id is the business account: the channels of that account (the Secrets' waba-id
label) hold the app secrets that verify the event, so no secret store of its own is needed.
A verified event only notes `lastAccountEventAt` on those channels; the operator then asks
Meta about each number, so nothing in the event is believed beyond "look again".
"""

from __future__ import annotations

import re
from collections.abc import Callable

from whatsapp_channel.model import META_ID_PATTERN

from .channel_cache import Channel
from .routing import Refused
from .webhook_rules import MalformedEvent, parse_event, refuse_in_constant_time, signature_valid

# Fields Meta sends about a business account or its numbers (the webhooks overview).
ACCOUNT_FIELDS = frozenset(
    {
        "account_alerts",
        "account_review_update",
        "account_update",
        "business_capability_update",
        "phone_number_name_update",
        "phone_number_quality_update",
        "security",
    }
)
OBJECT = "whatsapp_business_account"
_ACCOUNT_ID = re.compile(META_ID_PATTERN)


def account_changes(body: bytes) -> dict[str, bool]:
    """Each business account the event names, and whether it carries an account field
    (only those ask the operator to look again). MalformedEvent for anything that is not
    Meta's shape: not JSON, another `object`, an entry without a business account id."""
    event = parse_event(body)
    if event.get("object") != OBJECT:
        raise MalformedEvent("not a WhatsApp Business Account notification")
    accounts: dict[str, bool] = {}
    for entry in event["entry"]:
        waba = entry.get("id")
        if not isinstance(waba, str) or not _ACCOUNT_ID.fullmatch(waba):
            raise MalformedEvent("an entry's id is not a business account id")
        fields = {change.get("field") for change in entry.get("changes", [])}
        accounts[waba] = accounts.get(waba, False) or bool(fields & ACCOUNT_FIELDS)
    return accounts


def channels_to_recheck(
    accounts: dict[str, bool],
    body: bytes,
    signature: bytes,
    channels_for_waba: Callable[[str], tuple[Channel, ...]],
) -> tuple[Channel, ...] | Refused:
    """The channels whose numbers the operator should check again, or why not: every known
    account the event names must vouch for it (the app secret of one of its channels signed
    the body); accounts no channel knows are skipped; none known is an unknown channel."""
    known = [(waba, channels_for_waba(waba)) for waba in sorted(accounts)]
    known = [(waba, channels) for waba, channels in known if channels]
    if not known:
        refuse_in_constant_time(body)
        return Refused.UNKNOWN_CHANNEL
    verdicts: dict[bytes, bool] = {}
    recheck: list[Channel] = []
    for waba, channels in known:
        vouched = False
        for secret in {c.app_secret for c in channels if c.app_secret is not None}:
            verdict = verdicts.get(secret)
            if verdict is None:
                verdict = verdicts[secret] = signature_valid(secret, body, signature)
            vouched = vouched or verdict
        if not vouched:
            return Refused.BAD_SIGNATURE
        if accounts[waba]:
            recheck.extend(channels)
    return tuple(recheck)

"""Meta's documented `messages` webhook examples, as test data for the real bots behind the
receiver (tests/receiver/test_bots.py).

Sources (WhatsApp Business Platform, webhooks reference):
- text: "messages webhook reference", the example of "a text message sent to a business",
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages
  (quoted as published: ids, names, timestamps, text);
- image: "Image messages webhook reference",
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/image
- interactive reply button: "Interactive reply buttons messages webhook reference",
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/interactive
- statuses sent / delivered / read / failed (with `errors`): "Status messages webhook reference",
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status
- an unsupported message (with `errors`): "Unsupported messages webhook reference",
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/unsupported

Every example but the text one follows the syntax those pages document, filled with values
in the style of Meta's published example (same business account, phone number and user).
Each contact also carries the user's business-scoped user id (`user_id`, in webhooks since
Meta's 2026 BSUID rollout, https://developers.facebook.com/documentation/business-messaging/
whatsapp/business-scoped-user-ids), which pywa 4.5 requires and the quoted example predates.
Each is a whole notification; `for_phone` readdresses one to another phone number id.
"""

from __future__ import annotations

import copy
from typing import Any

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "15550783881"
USER_WA_ID = "16505551234"
USER_BSUID = "US.13491208655302741918"

# Quoted from the messages webhook reference: "this webhook describes a text message sent to
# a business".
TEXT: dict[str, Any] = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550783881",
                            "phone_number_id": "106540352242922",
                        },
                        "contacts": [
                            {
                                "profile": {"name": "Sheena Nelson"},
                                "wa_id": "16505551234",
                                "user_id": USER_BSUID,  # added: see above
                            }
                        ],
                        "messages": [
                            {
                                "from": "16505551234",
                                "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",  # noqa: E501
                                "timestamp": "1749416383",
                                "type": "text",
                                "text": {"body": "Does it come in another color?"},
                            }
                        ],
                    },
                    "field": "messages",
                }
            ],
        }
    ],
}


def _notification(value: dict[str, Any]) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": DISPLAY_PHONE_NUMBER,
            "phone_number_id": PHONE_NUMBER_ID,
        },
        **value,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA_ID, "changes": [{"value": value, "field": "messages"}]}],
    }


def _from_user(message: dict[str, Any]) -> dict[str, Any]:
    return _notification(
        {
            "contacts": [
                {"profile": {"name": "Sheena Nelson"}, "wa_id": USER_WA_ID, "user_id": USER_BSUID}
            ],
            "messages": [{"from": USER_WA_ID, **message}],
        }
    )


IMAGE = _from_user(
    {
        "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUI3MjNCNTJFNEQ3QkIyNzRCRQA=",
        "timestamp": "1744344496",
        "type": "image",
        "image": {
            "caption": "Is this the right part?",
            "mime_type": "image/jpeg",
            "sha256": "1ZL2WYzA+Fb3CHkb+KXCNRNfUIuuHzg4SwpMBOPaqOI=",
            "id": "1003383421387256",
            "url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1003383421387256&ext=1744344796&hash=ATta-FvSXoCOvSPdDa4Kf1CTEfnaaT5B7XmCh3q2Ai3VUw",
        },
    }
)

BUTTON_REPLY = _from_user(
    {
        "context": {
            "from": DISPLAY_PHONE_NUMBER,
            "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3NTQ2MDdBOUQ0QTc4OEY2NDMA",
        },
        "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUZCMTY0MDc2MUYwNzBDNTY5MAA=",
        "timestamp": "1750263898",
        "type": "interactive",
        "interactive": {
            "type": "button_reply",
            "button_reply": {"id": "change-button", "title": "Change"},
        },
    }
)

_SENT_MESSAGE_ID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3NTQ2MDdBOUQ0QTc4OEY2NDMA"


def _status(status: str, timestamp: str, **extra: Any) -> dict[str, Any]:
    return _notification(
        {
            "contacts": [{"wa_id": USER_WA_ID, "user_id": USER_BSUID}],  # BSUID rollout
            "statuses": [
                {
                    "id": _SENT_MESSAGE_ID,
                    "status": status,
                    "timestamp": timestamp,
                    "recipient_id": USER_WA_ID,
                    **extra,
                }
            ],
        }
    )


_CONVERSATION = {
    "id": "3a0b9b4d2ffac2e1aef0a1d8d87e8bd3",
    "expiration_timestamp": "1750350180",
    "origin": {"type": "service"},
}
_PRICING = {
    "billable": False,
    "pricing_model": "PMP",
    "category": "service",
    "type": "free_customer_service",
}

SENT = _status("sent", "1750263773", conversation=_CONVERSATION, pricing=_PRICING)
DELIVERED = _status("delivered", "1750263774", conversation=_CONVERSATION, pricing=_PRICING)
READ = _status("read", "1750263790")
FAILED = _status(
    "failed",
    "1750263812",
    errors=[
        {
            "code": 131050,
            "title": "Unable to deliver the message. This recipient has chosen to stop "
            "receiving marketing messages on WhatsApp from your business",
            "message": "Unable to deliver the message. This recipient has chosen to stop "
            "receiving marketing messages on WhatsApp from your business",
            "error_data": {
                "details": "Unable to deliver the message. This recipient has chosen to stop "
                "receiving marketing messages on WhatsApp from your business"
            },
            "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
        }
    ],
)

UNSUPPORTED = _from_user(
    {
        "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTZCNDFEOTUyRjIyMTVGRUQ2MwA=",
        "timestamp": "1750264021",
        "type": "unsupported",
        "errors": [
            {
                "code": 131051,
                "title": "Message type unknown",
                "message": "Message type unknown",
                "error_data": {"details": "Message type is currently not supported."},
            }
        ],
    }
)

EXAMPLES: dict[str, dict[str, Any]] = {
    "text": TEXT,
    "image": IMAGE,
    "button_reply": BUTTON_REPLY,
    "sent": SENT,
    "delivered": DELIVERED,
    "read": READ,
    "failed": FAILED,
    "unsupported": UNSUPPORTED,
}


def for_phone(example: dict[str, Any], phone_number_id: str, **text: str) -> dict[str, Any]:
    """`example` addressed to `phone_number_id` (and, with `body=...`, another text)."""
    event = copy.deepcopy(example)
    value = event["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = phone_number_id
    if "body" in text:
        value["messages"][0]["text"]["body"] = text["body"]
    return event


def change_of(event: dict[str, Any]) -> dict[str, Any]:
    """The one change of a one-change notification."""
    change: dict[str, Any] = event["entry"][0]["changes"][0]
    return change

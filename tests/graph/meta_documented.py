"""Meta's Graph API bodies as documented (or, where Meta's page shows none, as Graph returned
them in public reports), quoted with their sources. The stand-in's shapes are checked against
these, never against its own output.

Placeholders (`<...>`) are Meta's own; comments in Meta's JSON are turned into notes here.
"""

from __future__ import annotations

from typing import Any

# -- errors --------------------------------------------------------------------------------

# https://developers.facebook.com/docs/graph-api/guides/error-handling ("Error Responses")
ERROR_RESPONSE: dict[str, Any] = {
    "error": {
        "message": "Message describing the error",
        "type": "OAuthException",
        "code": 190,
        "error_subcode": 460,
        "error_user_title": "A title",
        "error_user_msg": "A message",
        "fbtrace_id": "EJplcsCHuLu",
    }
}
# Same page: error_subcode, error_user_title and error_user_msg appear only when relevant.
ERROR_OPTIONAL_KEYS = frozenset({"error_subcode", "error_user_title", "error_user_msg"})

# An expired token, as Graph answered it (quoted in https://github.com/blynkkk/blynk-server/issues/435
# and, without fbtrace_id, https://github.com/snarfed/bridgy/issues/59).
TOKEN_EXPIRED: dict[str, Any] = {
    "error": {
        "message": "Error validating access token: Session has expired on Sunday, "
        "25-Dec-16 04:45:57 PST. The current time is Thursday, 05-Jan-17 03:13:18 PST.",
        "type": "OAuthException",
        "code": 190,
        "error_subcode": 463,
        "fbtrace_id": "xxxx",
    }
}

# A wrong appsecret_proof, HTTP 400, as Graph answered it
# (https://github.com/facebook/facebook-python-business-sdk/issues/528).
INVALID_APPSECRET_PROOF: dict[str, Any] = {
    "error": {
        "message": "Invalid appsecret_proof provided in the API argument",
        "type": "GraphMethodException",
        "code": 100,
        "fbtrace_id": "E0JetexnRIn",
    }
}
INVALID_APPSECRET_PROOF_STATUS = 400

# No appsecret_proof where the app requires one
# (https://stape.io/blog/api-calls-from-the-server-require-appsecret-proof-argument).
APPSECRET_PROOF_REQUIRED: dict[str, Any] = {
    "error": {
        "message": "API calls from the server require an appsecret_proof argument",
        "type": "GraphMethodException",
        "code": 100,
        "fbtrace_id": "AYvBzLgkiUVGsr1NNTn7LSC",
    }
}

# An object the token cannot see: code 100 "Unsupported get request", GraphMethodException
# (http://www.bqtyf.cn/networking/common-facebook-graph-api-error-codes-them-1765889365.html);
# issue 11: "100 invalid parameter (subcode 33: the object does not exist or the token cannot
# see it)".
UNSUPPORTED_GET: dict[str, Any] = {
    "error": {
        "message": "Unsupported get request.",
        "type": "GraphMethodException",
        "code": 100,
        "fbtrace_id": "XYZ123",
    }
}

# https://dualhook.com/docs/whatsapp-error-100-webhook-override: "The exact message is:
# "(#100) Before override the current callback uri, your app must be subscribed to receive
# messages for WhatsApp Business Account." ... It is returned as Graph code 100
# (OAuthException)." ... "An immediate API error (HTTP 400)". Same page: "2200 — Callback/
# subscription verification failed: Meta's GET verification to your callback URL failed".
NOT_SUBSCRIBED_MESSAGE = (
    "(#100) Before override the current callback uri, your app must be subscribed to receive "
    "messages for WhatsApp Business Account."
)
CALLBACK_VERIFICATION_FAILED_CODE = 2200

# -- the phone number node -----------------------------------------------------------------

# GET /{phone_number_id} (Meta's example through a proxy that forwards it unchanged,
# https://docs.kapso.ai/api-reference/phone-numbers/get-phone-number-details).
PHONE_NUMBER: dict[str, Any] = {
    "id": "1906385232743451",
    "verified_name": "Jasper's Market",
    "display_phone_number": "+1 631-555-5555",
    "quality_rating": "GREEN",
}
# One number of GET /{waba_id}/phone_numbers, with the default fields
# (a v25.0 pass-through: https://partner-docs.splashifypro.com/api-reference/whatsapp/phone-numbers).
PHONE_NUMBER_DEFAULT_FIELDS: dict[str, Any] = {
    "id": "1234567890875",
    "verified_name": "Acme Corp",
    "display_phone_number": "+91 70215 12345",
    "code_verification_status": "VERIFIED",
    "quality_rating": "GREEN",
    "platform_type": "CLOUD_API",
    "throughput": {"level": "HIGH"},
    "last_onboarded_time": "2023-08-31T10:55:37+0000",
}
QUALITY_RATINGS = {"GREEN", "YELLOW", "RED", "NA", "UNKNOWN"}

# https://developers.facebook.com/docs/whatsapp/cloud-api/health-status ("Response"), for
# GET /<NODE_ID>?fields=health_status on a business phone number. Meta's comments: the
# PHONE_NUMBER entity is "Only included if targeting a business phone number"; MESSAGE_TEMPLATE
# "Only included if targeting a template" (so absent here); "WABA, business, and app always
# included".
HEALTH_STATUS: dict[str, Any] = {
    "health_status": {
        "can_send_message": "<OVERALL_MESSAGING_STATUS>",
        "entities": [
            {
                "entity_type": "PHONE_NUMBER",
                "id": "<BUSINESS_PHONE_NUMBER_ID>",
                "can_send_message": "<BUSINESS_PHONE_NUMBER_MESSAGING_STATUS>",
                "can_receive_call_sip": "<BUSINESS_PHONE_NUMBER_RECEIVE_CALL_SIP_STATUS>",
            },
            {
                "entity_type": "WABA",
                "id": "<WABA_ID>",
                "can_send_message": "<WABA_MESSAGING_STATUS>",
            },
            {
                "entity_type": "BUSINESS",
                "id": "<BUSINESS_PORTFOLIO_ID>",
                "can_send_message": "<BUSINESS_PORTFOLIO_MESSAGING_STATUS>",
            },
            {
                "entity_type": "APP",
                "id": "<APP_ID>",
                "can_send_message": "<APP_MESSAGING_STATUS>",
                "can_receive_call_sip": "<APP_RECEIVE_CALL_SIP_STATUS>",
            },
        ],
    },
    "id": "<NODE_ID>",
}
# Same rules, https://docs.360dialog.com/partner/integrations-and-api-development/messaging-health-status:
# "AVAILABLE: ... meets all messaging requirements. LIMITED: ... additional info will be
# included. BLOCKED: ... the errors property will be included which describes the error and a
# possible solution." Overall: "If one or more nodes is blocked, it will be set to BLOCKED. If
# no nodes are blocked, but one or more nodes is limited, it will be set to LIMITED. If all
# nodes are available, it will be set to AVAILABLE."
CAN_SEND_MESSAGE = ("AVAILABLE", "LIMITED", "BLOCKED")
# An entity's errors, as a v25.0 pass-through shows them
# (https://partner-docs.splashifypro.com/api-reference/whatsapp/health-status).
HEALTH_ENTITY_ERROR: dict[str, Any] = {
    "error_code": 130472,
    "error_description": "Quality rating is LOW",
    "possible_solution": "Improve message quality. Reduce marketing volume until quality "
    "returns to GREEN.",
}

# -- webhooks: subscribed apps and the phone-level override --------------------------------

# https://developers.facebook.com/documentation/business-messaging/whatsapp/solution-providers/manage-webhooks
SUBSCRIBE_RESPONSE: dict[str, Any] = {"success": True}
SUBSCRIBED_APPS: dict[str, Any] = {
    "data": [
        {
            "whatsapp_business_api_data": {
                "id": "67084...",
                "link": "https://www.facebook.com/games/?app_id=67084...",
                "name": "Jaspers Market",
            }
        },
        {
            "whatsapp_business_api_data": {
                "id": "52565...",
                "link": "https://www.facebook.com/games/?app_id=52565...",
                "name": "Jaspers Fresh Finds",
            }
        },
    ]
}
UNSUBSCRIBE_RESPONSE: dict[str, Any] = {"success": True}

# https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/override/
# (the phone number sections, read through a copy of that page:
# "Set Override POST /<BUSINESS_PHONE_NUMBER_ID>", "Get Configuration GET
# /<BUSINESS_PHONE_NUMBER_ID>?fields=webhook_configuration", "Delete Override"; "Max URL
# length: 200 characters"; "Endpoint must pass verification handshake"). The success answer
# of the override POST is the page's `{"success": true}`.
OVERRIDE_REQUEST: dict[str, Any] = {
    "webhook_configuration": {
        "override_callback_uri": "https://my-phone-callback.com/webhook",
        "verify_token": "my_verify_token",
    }
}
OVERRIDE_RESPONSE: dict[str, Any] = {"success": True}
WEBHOOK_CONFIGURATION: dict[str, Any] = {
    "webhook_configuration": {
        "phone_number": "https://my-phone-callback.com/webhook",
        "whatsapp_business_account": "https://my-waba-callback.com/webhook",
        "application": "https://my-app-default.com/webhook",
    },
    "id": "106540352242922",
}
# The page: phone_number is the number's override, whatsapp_business_account "WABA-level
# override (if set)", application "App's default callback URL".
WEBHOOK_CONFIGURATION_OPTIONAL_KEYS = frozenset({"phone_number", "whatsapp_business_account"})
OVERRIDE_CLEAR_REQUEST: dict[str, Any] = {"webhook_configuration": {"override_callback_uri": ""}}
MAX_CALLBACK_URI = 200

# -- debug_token: the accounts that granted the app a token's permissions -----------------

# https://developers.facebook.com/documentation/business-messaging/whatsapp/solution-providers/manage-accounts
# (Meta's comment on the first target id: "ID of newest WABA to grant app
# whatsapp_business_management"; "IDs for the most recently onboarded WABAs appear first").
DEBUG_TOKEN: dict[str, Any] = {
    "data": {
        "app_id": "670843887433847",
        "application": "JaspersMarket",
        "data_access_expires_at": 1672092840,
        "expires_at": 1665090000,
        "granular_scopes": [
            {
                "scope": "whatsapp_business_management",
                "target_ids": ["102289599326934", "101569239400667"],
            },
            {
                "scope": "whatsapp_business_messaging",
                "target_ids": ["102289599326934", "101569239400667"],
            },
        ],
        "is_valid": True,
        "scopes": ["whatsapp_business_management", "whatsapp_business_messaging", "public_profile"],
        "type": "USER",
        "user_id": "10222270944537964",
    }
}

# https://developers.facebook.com/docs/graph-api/reference/debug_token ("Permissions: An app
# access token or an app developer's user access token for the app associated with the
# input_token being inspected is required"); the refusal of a token asking about itself, as
# quoted in nyaruka/rapidpro PR 3734 ("(#100) You must provide an app access token ...").
DEBUG_TOKEN_NEEDS_APP_TOKEN = (
    "(#100) You must provide an app access token, or a user access token that is an owner "
    "or developer of the app"
)

# https://developers.facebook.com/documentation/business-messaging/whatsapp/messaging-limits:
# "The `messaging_limit_tier` field, which used to return a business phone number's messaging
# limit, has been deprecated. Request the `whatsapp_business_manager_messaging_limit` field
# instead." From v24.0 the old field returns no value (david-lev/pywa issue 221).
MESSAGING_LIMIT_DEPRECATED = ("messaging_limit_tier", "whatsapp_business_manager_messaging_limit")

# -- the token's app --------------------------------------------------------------------------

# https://developers.facebook.com/docs/graph-api/reference/application/ (fields "id: numeric
# string, The app ID", "name"); `/app` is the token's own app.
APP: dict[str, Any] = {"name": "JaspersMarket", "id": "670843887433847"}

# -- an account's numbers ---------------------------------------------------------------------

# Meta's OpenAPI description (../shared/meta, getWhatsAppBusinessAccountPhoneNumbers, example
# "multiple_phone_numbers"), the fields asked for; `paging.next` and `cursors.before` are the
# Graph API's cursor paging (https://developers.facebook.com/docs/graph-api/results).
PHONE_NUMBERS_PAGE: dict[str, Any] = {
    "data": [
        {
            "id": "1906385232743451",
            "display_phone_number": "+1 631-555-5555",
            "verified_name": "Jasper's Market",
            "status": "LINKED",
            "quality_rating": "GREEN",
        }
    ],
    "paging": {
        "cursors": {"before": "MTAxNTExOTQ1MjAwNzI5NDE=", "after": "MTAxNTExOTQ1MjAwNzI5NDE="},
        "next": "https://graph.facebook.com/v23.0/1234567890123456/phone_numbers?after=...",
    },
}

# -- what Meta delivers ---------------------------------------------------------------------

# The envelope of a `messages` webhook
# (https://developers.secure.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/errors),
# here with the errors of that example; a text message carries `contacts` and `messages`
# instead (the receiver's tests/receiver/payloads.py holds one).
MESSAGES_WEBHOOK_ENVELOPE: dict[str, Any] = {
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
                        "errors": [
                            {
                                "code": 130429,
                                "title": "Rate limit hit",
                                "message": "Rate limit hit",
                                "error_data": {
                                    "details": "Message failed to send because there were too "
                                    "many messages sent from this phone number in a short "
                                    "period of time"
                                },
                                "href": "/documentation/business-messaging/whatsapp/support/"
                                "error-codes",
                            }
                        ],
                    },
                    "field": "messages",
                }
            ],
        }
    ],
}


def assert_same_shape(
    actual: Any, documented: Any, *, optional: frozenset[str] = frozenset(), path: str = "$"
) -> None:
    """`actual` has the documented keys (those in `optional` may be missing), no others, and
    the same JSON types; lists are compared element by element against the first documented
    element."""
    if isinstance(documented, dict):
        assert isinstance(actual, dict), f"{path}: {actual!r} is not an object"
        missing = set(documented) - set(actual) - optional
        extra = set(actual) - set(documented)
        assert not missing, f"{path}: missing {missing}"
        assert not extra, f"{path}: undocumented {extra}"
        for key, value in actual.items():
            assert_same_shape(value, documented[key], optional=optional, path=f"{path}.{key}")
    elif isinstance(documented, list):
        assert isinstance(actual, list), f"{path}: {actual!r} is not a list"
        for index, item in enumerate(actual):
            assert_same_shape(item, documented[0], optional=optional, path=f"{path}[{index}]")
    else:
        assert type(actual) is type(documented), f"{path}: {actual!r} vs {documented!r}"


# --- Embedded Signup: exchanging the code (issue 20) ----------------------------------------
# Meta's Tech Provider onboarding guide, step 1
# (https://developers.facebook.com/documentation/business-messaging/whatsapp/embedded-signup/onboarding-customers-as-a-tech-provider):
# "Use the GET /oauth/access_token endpoint to exchange the token code ... for a business
# token", with client_id (the app id), client_secret (the app secret) and code; the answer
# holds the business token as `access_token`; the code lives 30 seconds.
SIGNUP_CODE_SECONDS = 30
EXCHANGE_PARAMETERS = frozenset({"client_id", "client_secret", "code"})
# A code used twice: laravel/socialite issue 385 quotes Meta's answer,
# {"error":{"message":"This authorization code has been used.","type":"OAuthException",
# "code":100,...}}; the expired one is listed beside it in SammyK/LaravelFacebookSdk issue 141.
CODE_USED = {"message": "This authorization code has been used.", "type": "OAuthException"}
CODE_EXPIRED = {"message": "This authorization code has expired.", "type": "OAuthException"}
CODE_ERROR_CODE = 100

# --- WhatsApp's error codes (issue 23: the stand-in's refusals as Meta gives them) ----------
# https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes:
# "build your app's error handling logic around `code` values and `details` payload
# properties ... Code titles ... are included as part of the `message` value. However, Meta
# recommends that you do not rely on titles". Its error response syntax:
WHATSAPP_ERROR_RESPONSE: dict[str, Any] = {
    "error": {
        "message": "<MESSAGE>",
        "type": "<TYPE>",
        "code": 0,
        "error_data": {"messaging_product": "whatsapp", "details": "<DETAILS>"},
        "error_subcode": 0,
        "error_user_title": "A title",  # Graph's error-handling guide, when relevant
        "error_user_msg": "A message",
        "fbtrace_id": "<FBTRACE_ID>",
    }
}
WHATSAPP_ERROR_OPTIONAL_KEYS = ERROR_OPTIONAL_KEYS | {"error_data"}
# The page's table, code -> (HTTP status, details), read through copies that keep its columns:
# https://help.botbee.io/knowledge-base/article/error-codes-reference (0, 3, 10, 190, 200-299,
# 368), https://docs.ycloud.com/en/api-reference/guides/whatsapp-platform/handle-whatsapp-errors
# (2, 100), https://niswey.com/knowledge-base/error-codes-meta (133016's details) and
# https://help.chakrahq.com/chat/faqs/whatsapp-api-error-code-troubleshooting/whatsapp-api-registration-migration-errors
# (133004). 131031's details and the statuses of 131031, 133005 and 133016 are the page's as
# read for issue 21 (no copy at hand shows them). Code 3 is HTTP 500 there, yet a refusal:
# Meta's code, not the status, says what an error means.
WHATSAPP_ERROR_CODES: dict[int, tuple[int, str | None]] = {
    0: (401, "We were unable to authenticate the app user."),
    2: (503, None),
    3: (500, "Capability or permissions issue."),
    10: (403, None),
    100: (400, None),
    190: (401, None),
    200: (403, None),
    368: (
        403,
        "The WhatsApp Business Account associated with the app has been restricted or "
        "disabled for violating a platform policy.",
    ),
    131031: (
        403,
        "The WhatsApp Business Account associated with the app has been restricted or "
        "disabled for violating a platform policy, or we were unable to verify data included "
        "in the request against data set on the WhatsApp Business Account.",
    ),
    133004: (503, None),
    133005: (400, None),
    133016: (
        400,
        "Registration or Deregistration failed because there were too many attempts for "
        "this phone number in a short period of time",
    ),
}

# -- usage headers ----------------------------------------------------------------------------
# https://developers.facebook.com/docs/graph-api/overview/rate-limiting: `X-App-Usage` holds
# call_count, total_cputime and total_time, each a percentage of the app's limit;
# `X-Business-Use-Case-Usage` maps each business
# object id to a list of entries with type, call_count, total_cputime, total_time and
# estimated_time_to_regain_access (in minutes).
APP_USAGE_KEYS = frozenset({"call_count", "total_cputime", "total_time"})
BUSINESS_USE_CASE_KEYS = APP_USAGE_KEYS | {"type", "estimated_time_to_regain_access"}
# A wrong platform app secret on the code exchange: Graph's answer quoted in
# facebookarchive/php-graph-sdk issue 538: {"error":{"message":"Error validating client
# secret.","type":"OAuthException","code":1,...}}.
CLIENT_SECRET_INVALID = {"type": "OAuthException", "code": 1}

# A text message sent to a business, from the messages webhook reference's example
# (https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages):
# its contact and its message, which take the place of `errors` in the envelope above.
TEXT_CONTACT: dict[str, Any] = {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}
TEXT_MESSAGE: dict[str, Any] = {
    "from": "16505551234",
    "id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
    "timestamp": "1749416383",
    "type": "text",
    "text": {"body": "Does it come in another color?"},
}

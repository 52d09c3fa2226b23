"""The Graph routes of the stand-in: what Meta answers under `/{version}/...`, by Meta's
rules (the reference pages quoted at each), with the state they share."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web
from yarl import URL

from . import errors
from .caller import MetaCaller
from .errors import GraphFailure
from .state import (
    SIGNUP_CODE_SECONDS,
    CallName,
    Fault,
    FaultKind,
    NumberSeed,
    PhoneNumber,
    Token,
    World,
)

VERSION = r"v[0-9]+\.[0-9]+"


# What `GET /{phone_number_id}` answers without `fields` (Meta's default field set).
DEFAULT_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "platform_type",
    "throughput",
    "id",
)


PHONE_FIELDS = frozenset(
    {
        *DEFAULT_FIELDS,
        "name_status",
        "status",
        "messaging_limit_tier",
        "whatsapp_business_manager_messaging_limit",
        "account_mode",
        "is_official_business_account",
        "webhook_configuration",
        "health_status",
    }
)


# "The `messaging_limit_tier` field ... has been deprecated. Request the
# `whatsapp_business_manager_messaging_limit` field instead"
# (https://developers.facebook.com/documentation/business-messaging/whatsapp/messaging-limits):
# the new field exists from v24.0, where the old one has no value (david-lev/pywa issue 221).
MESSAGING_LIMIT_SINCE = (24, 0)


def version_of(request: web.Request) -> tuple[int, int]:
    major, minor = request.match_info["version"].removeprefix("v").split(".")
    return int(major), int(minor)


def fields_of(version: tuple[int, int], fields: list[str], known: Collection[str]) -> None:
    """Meta's (#100) for a field the node or the version does not have."""
    for name in fields:
        if name not in known or (
            name == "whatsapp_business_manager_messaging_limit" and version < MESSAGING_LIMIT_SINCE
        ):
            raise errors.nonexisting_field(name)


# `GET /{WABA-ID}/phone_numbers` (Meta's OpenAPI description): the fields it lists, those
# answered without `fields` (the example's first ones), the page size's maximum.
PHONE_LIST_FIELDS = frozenset(
    {
        "id",
        "display_phone_number",
        "verified_name",
        "status",
        "quality_rating",
        "code_verification_status",
        "account_mode",
        "messaging_limit_tier",
        "is_official_business_account",
    }
)


PHONE_LIST_REQUIRED = ("display_phone_number", "status", "id")


PHONE_LIST_DEFAULT_FIELDS = (
    "verified_name",
    "code_verification_status",
    "display_phone_number",
    "quality_rating",
    "status",
    "id",
)


PHONE_NUMBERS_MAX_LIMIT = 100


# In the account's list, `status` is the number's link to the account (the description's
# WhatsAppPhoneNumberStatus: PENDING, LINKED, UNLINKED, DELETED, MIGRATED, BANNED,
# RESTRICTED), not the node's connection status (CONNECTED, ...).
LINK_STATUS = {
    "PENDING": "PENDING",
    "BANNED": "BANNED",
    "RESTRICTED": "RESTRICTED",
    "DISCONNECTED": "UNLINKED",
}


MAX_CALLBACK_URI = 200  # Meta: "Maximum 200 characters."


HEALTH_ORDER = {"AVAILABLE": 0, "LIMITED": 1, "BLOCKED": 2}


BLOCKED_ERROR = {
    "error_code": 141006,
    "error_description": "There is an error with the payment method.",
    "possible_solution": "There was an error with your payment method. Please add a new "
    "payment method to the account.",
}


LIMITED_INFO = (
    "Your display name has not been approved yet. Your message limit will be lifted after "
    "the display name is approved."
)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def appsecret_proof(app_secret: str, access_token: str) -> str:
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


class GraphRoutes:
    """Meta's Graph API as the stand-in plays it: the routes under `/{version}/...`, the
    rules each applies (tokens, proofs, ownership, budgets, faults) and the state they
    share. `AdminRoutes` adds the admin API, `GraphStandin` the server around both."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        challenge_timeout: float = 5.0,
        delivery_timeout: float = 10.0,
        account_call_limit: int | None = None,
        account_call_window: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        local_hosts: Collection[str] = (),
    ) -> None:
        """`account_call_limit`: Meta's budget of calls per app and business account in
        `account_call_window` seconds (about 200 an hour); past it, 80007. None: no limit.
        `local_hosts`: addresses of a test network of this machine (e.g. a local node's veth
        ends) the stand-in may listen on and call back besides loopback; nothing else."""
        self.caller = MetaCaller(local_hosts, challenge_timeout, delivery_timeout)
        if not self.caller.is_local(host):
            raise ValueError(f"the Graph stand-in listens on loopback only, not {host!r}")
        self.host = host
        self.port = port
        self.world = World()
        self.account_call_limit = account_call_limit
        self.account_call_window = account_call_window
        self._clock = clock
        self._account_calls: dict[tuple[str, str], deque[float]] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.app_callback_events: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    def seed(self, seed: NumberSeed) -> PhoneNumber:
        return self.world.seed(seed)

    def calls(self, object_id: str | None = None, call: str | None = None) -> int:
        """Graph calls answered so far, optionally for one object and/or one call name."""
        return sum(
            n
            for (obj, name), n in self.world.calls.items()
            if (object_id is None or obj == object_id) and (call is None or name == call)
        )

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def app_callback_url(self) -> str:
        """The app's own callback URL (Meta's `application` level): the stand-in records
        what it would deliver there."""
        return f"{self.url}/_standin/app-callback"

    @web.middleware
    async def _graph_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        graph = not request.path.startswith("/_standin/")
        if graph:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await handler(request)
        except GraphFailure as failure:
            return failure.response()
        except web.HTTPNotFound:
            if not graph:
                raise
            # Meta answers an unknown path with a Graph error, not a bare 404.
            return GraphFailure(400, f"Unknown path components: {request.path}", 2500).response()
        finally:
            if graph:
                self.in_flight -= 1

    async def _params(self, request: web.Request) -> dict[str, Any]:
        """Query parameters merged with a JSON or form body (Meta accepts either)."""
        params: dict[str, Any] = dict(request.query)
        if request.method in ("POST", "DELETE") and request.can_read_body:
            raw = await request.read()
            if raw:
                if request.content_type == "application/json":
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        raise errors.invalid_parameter("Invalid JSON body") from None
                    if not isinstance(body, dict):
                        raise errors.invalid_parameter("The body must be a JSON object")
                    params.update(body)
                else:
                    params.update((await request.post()).items())
        return params

    @staticmethod
    def _token_text(request: web.Request, params: dict[str, Any]) -> str:
        header = request.headers.get("Authorization", "")
        token_text = header[7:].strip() if header[:7].lower() == "bearer " else ""
        token_text = token_text or str(params.get("access_token", ""))
        if not token_text:
            raise errors.token_missing()
        return token_text

    def _authorize_app(self, request: web.Request, params: dict[str, Any]) -> str:
        """An app access token, `{app-id}|{app-secret}`
        (https://developers.facebook.com/docs/facebook-login/guides/access-tokens#apptokens):
        the app's id. A user token here is Meta's (#100) refusal."""
        token_text = self._token_text(request, params)
        app_id, bar, secret = token_text.partition("|")
        if not bar:
            if token_text in self.world.tokens:
                raise errors.app_token_required()
            raise errors.token_malformed(token_text)
        app = self.world.apps.get(app_id)
        if app is None or not hmac.compare_digest(secret.encode(), app.secret.encode()):
            raise errors.token_invalid()
        proof = str(params.get("appsecret_proof", ""))
        if proof and not hmac.compare_digest(
            proof.encode(), appsecret_proof(app.secret, token_text).encode()
        ):
            raise errors.proof_invalid()
        return app_id

    def _authorize(self, request: web.Request, params: dict[str, Any]) -> Token:
        token_text = self._token_text(request, params)
        token = self.world.tokens.get(token_text)
        if token is None:
            raise errors.token_malformed(token_text)
        if token.expired:
            raise errors.token_expired()
        proof = str(params.get("appsecret_proof", ""))
        if not proof:
            raise errors.proof_missing()
        expected = appsecret_proof(self.world.apps[token.app_id].secret, token_text)
        if not hmac.compare_digest(proof.encode(), expected.encode()):
            raise errors.proof_invalid()
        return token

    def _charge(self, token: Token, waba_id: str) -> None:
        """Counts a call against the app's budget on the account; 80007 past it."""
        if self.account_call_limit is None:
            return
        calls = self._account_calls.setdefault((token.app_id, waba_id), deque())
        now = self._clock()
        while calls and calls[0] <= now - self.account_call_window:
            calls.popleft()
        if len(calls) >= self.account_call_limit:
            regain = calls[0] + self.account_call_window - now
            raise errors.account_rate_limited(waba_id, math.ceil(regain / 60))
        calls.append(now)

    async def _fault(self, numbers: list[PhoneNumber], call: CallName, object_id: str) -> None:
        """Counts the call, then plays the first fault of `numbers` that applies to it."""
        self.world.calls[(object_id, call)] += 1
        for number in numbers:
            fault = number.take_fault(call)
            if fault is not None:
                await self._play(fault, number.waba_id)
                return

    async def _play(self, fault: Fault, waba_id: str) -> None:
        """`waba_id`: the business account the call counts against (named in 80007's usage
        header)."""
        match fault.kind:
            case FaultKind.TOKEN_INVALID:
                raise errors.token_invalid()
            case FaultKind.TOKEN_EXPIRED:
                raise errors.token_expired()
            case FaultKind.PERMISSION_DENIED:
                raise errors.permission_denied()
            case FaultKind.APP_RATE_LIMITED:
                raise errors.app_rate_limited()
            case FaultKind.ACCOUNT_RATE_LIMITED:
                # `seconds`: the window Meta states (in whole minutes); none by default.
                minutes = math.ceil((fault.seconds or 0) / 60)
                raise errors.account_rate_limited(waba_id, minutes)
            case FaultKind.UNKNOWN_ERROR:
                raise errors.unknown_error()
            case FaultKind.SERVICE_UNAVAILABLE:
                raise errors.service_unavailable()
            case FaultKind.SERVER_ERROR:
                raise web.HTTPBadGateway(
                    text="<html><body>502 Bad Gateway</body></html>"  # wording
                )
            case FaultKind.TIMEOUT:
                # Held until the stand-in stops (or `seconds` pass), then a 503.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), fault.seconds)
                raise errors.service_unavailable()
            case FaultKind.AUTH_EXCEPTION:
                raise errors.auth_exception()
            case FaultKind.CAPABILITY_MISSING:
                raise errors.capability_missing()
            case FaultKind.ASSET_ACCESS_MISSING:
                raise errors.asset_access_missing()
            case FaultKind.POLICY_BLOCKED:
                raise errors.policy_blocked()
            case FaultKind.ACCOUNT_LOCKED:
                raise errors.account_locked()
            case FaultKind.PIN_MISMATCH:
                raise errors.pin_mismatch()
            case FaultKind.REGISTRATION_LIMITED:
                raise errors.registration_limited()
            case FaultKind.REGISTRATION_UNAVAILABLE:
                raise errors.registration_unavailable()
            case FaultKind.SLOW:
                await asyncio.sleep(0.1 if fault.seconds is None else fault.seconds)

    async def _get_node(self, request: web.Request) -> web.Response:
        object_id = request.match_info["id"]
        params = await self._params(request)
        number = self.world.numbers.get(object_id)
        await self._fault([number] if number else [], "check", object_id)
        token = self._authorize(request, params)
        fields = [f.strip() for f in str(params.get("fields", "")).split(",") if f.strip()]
        if number is None and object_id in token.wabas and fields:
            # A business account's id where a number's belongs: its node has no such fields.
            phone_only = [f for f in fields if f != "id"] or ["display_phone_number"]
            raise errors.nonexisting_field(phone_only[0], "WhatsAppBusinessAccount")
        if number is None or object_id not in token.numbers:
            raise errors.object_not_found(object_id, "GET")  # wording
        self._charge(token, number.waba_id)
        version = version_of(request)
        fields_of(version, fields, PHONE_FIELDS)
        node = self._phone_node(number, fields or list(DEFAULT_FIELDS), version, token.app_id)
        return web.json_response(node)

    def _phone_node(
        self, number: PhoneNumber, fields: list[str], version: tuple[int, int], app_id: str
    ) -> dict[str, Any]:
        """`app_id`: the asking token's app (health_status's APP entity is the caller's)."""
        values: dict[str, Any] = {
            "verified_name": number.verified_name,
            "code_verification_status": number.code_verification_status,
            "display_phone_number": number.display_phone_number,
            "quality_rating": number.quality_rating,
            "platform_type": "CLOUD_API",
            "throughput": {"level": "STANDARD"},
            "name_status": number.name_status,
            "status": number.status,
            "messaging_limit_tier": number.messaging_limit_tier,
            "whatsapp_business_manager_messaging_limit": number.messaging_limit_tier,
            "account_mode": "LIVE",
            "is_official_business_account": False,
            "webhook_configuration": self._webhook_configuration(number),
            "health_status": self._health_status(number, app_id),
        }
        if version >= MESSAGING_LIMIT_SINCE:
            del values["messaging_limit_tier"]  # no value any more: Meta leaves it out
        node = {name: values[name] for name in fields if name != "id" and name in values}
        node["id"] = number.id  # Meta always adds the node's id, last
        return node

    def _webhook_configuration(self, number: PhoneNumber) -> dict[str, str]:
        config: dict[str, str] = {}
        if number.override_callback_uri:
            config["phone_number"] = number.override_callback_uri
        waba_override = self.world.wabas[number.waba_id].overrides.get(number.app_id)
        if waba_override:
            config["whatsapp_business_account"] = waba_override
        config["application"] = self._app_callback(number)
        return config

    def _app_callback(self, number: PhoneNumber) -> str:
        return self.world.apps[number.app_id].callback_url or self.app_callback_url

    def _health_status(self, number: PhoneNumber, app_id: str) -> dict[str, Any]:
        phone: dict[str, Any] = {
            "entity_type": "PHONE_NUMBER",
            "id": number.id,
            "can_send_message": number.health,
            "can_receive_call_sip": "AVAILABLE",
        }
        if number.health == "BLOCKED":
            phone["errors"] = [dict(BLOCKED_ERROR)]
        elif number.health == "LIMITED":
            phone["additional_info"] = [LIMITED_INFO]
        entities = [
            phone,
            {"entity_type": "WABA", "id": number.waba_id, "can_send_message": "AVAILABLE"},
            {"entity_type": "BUSINESS", "id": "506914307656634", "can_send_message": "AVAILABLE"},
            {
                "entity_type": "APP",
                "id": app_id,
                "can_send_message": "AVAILABLE",
                "can_receive_call_sip": "AVAILABLE",
            },
        ]
        overall = max((e["can_send_message"] for e in entities), key=HEALTH_ORDER.__getitem__)
        return {"can_send_message": overall, "entities": entities}

    async def _post_node(self, request: web.Request) -> web.Response:
        object_id = request.match_info["id"]
        params = await self._params(request)
        number = self.world.numbers.get(object_id)
        await self._fault([number] if number else [], "override", object_id)
        token = self._authorize(request, params)
        if number is None or object_id not in token.numbers:
            raise errors.object_not_found(object_id, "POST")  # wording
        self._charge(token, number.waba_id)
        config = params.get("webhook_configuration")
        if isinstance(config, str):  # form-encoded: a JSON string
            try:
                config = json.loads(config)
            except ValueError:
                config = None
        if not isinstance(config, dict) or "override_callback_uri" not in config:
            raise errors.invalid_parameter(
                "The parameter webhook_configuration[override_callback_uri] is required"  # wording
            )
        uri = config["override_callback_uri"]
        if not isinstance(uri, str):
            raise errors.invalid_parameter(
                "Param override_callback_uri must be a string"  # wording
            )
        if uri == "":
            number.override_callback_uri = number.override_verify_token = None
            return web.json_response({"success": True})
        verify_token = config.get("verify_token")
        if not isinstance(verify_token, str) or not verify_token:
            raise errors.invalid_parameter(
                "The parameter webhook_configuration[verify_token] is required"  # wording
            )
        if len(uri) > MAX_CALLBACK_URI:
            raise errors.invalid_parameter(
                f"Param override_callback_uri must be at most {MAX_CALLBACK_URI} chars"  # wording
            )
        if token.app_id not in self.world.wabas[number.waba_id].subscribed_apps:
            raise errors.not_subscribed()
        await self.caller.verify_callback(uri, verify_token)
        number.override_callback_uri = uri
        number.override_verify_token = verify_token
        return web.json_response({"success": True})

    async def _register(self, request: web.Request) -> web.Response:
        """`POST /{phone_number_id}/register` with `messaging_product: whatsapp` and a
        six-digit `pin` (two-step verification): the number is registered for the Cloud
        API (status CONNECTED). Once a PIN is set, another one is Meta's 133005; the
        eleventh call for a number is 133016 (Meta: 10 in 72 hours)."""
        object_id = request.match_info["id"]
        params = await self._params(request)
        number = self.world.numbers.get(object_id)
        await self._fault([number] if number else [], "register", object_id)
        token = self._authorize(request, params)
        if number is None or object_id not in token.numbers:
            raise errors.object_not_found(object_id, "POST")  # wording
        self._charge(token, number.waba_id)
        if params.get("messaging_product") != "whatsapp":
            raise errors.invalid_parameter("The parameter messaging_product is required")  # wording
        pin = params.get("pin")
        if not isinstance(pin, str) or not re.fullmatch(r"[0-9]{6}", pin):
            raise errors.invalid_parameter("Param pin must be a 6-digit number")  # wording
        if number.registrations >= errors.REGISTRATIONS_ALLOWED:
            raise errors.registration_limited()
        number.registrations += 1
        if number.pin is not None and not hmac.compare_digest(pin, number.pin):
            raise errors.pin_mismatch()
        number.pin = pin
        number.status = "CONNECTED"
        return web.json_response({"success": True})

    async def _waba_call(
        self, request: web.Request, call: CallName
    ) -> tuple[Token, str, dict[str, Any]]:
        """A call on a business account: the token, the account and the call's parameters
        (the body is read once, here)."""
        waba_id = request.match_info["id"]
        params = await self._params(request)
        await self._fault(self.world.waba_numbers(waba_id), call, waba_id)
        token = self._authorize(request, params)
        if waba_id not in self.world.wabas or waba_id not in token.wabas:
            raise errors.object_not_found(waba_id, request.method)  # wording
        self._charge(token, waba_id)
        return token, waba_id, params

    async def _subscribe(self, request: web.Request) -> web.Response:
        """Subscribes the app; with `override_callback_uri` and `verify_token`, sets the
        WABA-level alternate callback (Meta calls its challenge first); without them, removes
        it: "Subscribing without post body parameters removes the alternate callback URL from
        the WABA" (https://developers.facebook.com/docs/whatsapp/embedded-signup/webhooks/
        override)."""
        token, waba_id, params = await self._waba_call(request, "subscribe")
        waba = self.world.wabas[waba_id]
        uri = params.get("override_callback_uri")
        if uri is None:
            waba.overrides.pop(token.app_id, None)
        else:
            verify_token = params.get("verify_token")
            if not isinstance(uri, str) or not isinstance(verify_token, str) or not verify_token:
                raise errors.invalid_parameter(
                    "override_callback_uri needs verify_token (both strings)"
                )
            if len(uri) > MAX_CALLBACK_URI:
                raise errors.invalid_parameter(
                    f"Param override_callback_uri must be at most {MAX_CALLBACK_URI} chars long"
                )
            await self.caller.verify_callback(uri, verify_token)
            waba.overrides[token.app_id] = uri
        waba.subscribed_apps.add(token.app_id)
        return web.json_response({"success": True})

    async def _unsubscribe(self, request: web.Request) -> web.Response:
        token, waba_id, _ = await self._waba_call(request, "unsubscribe")
        waba = self.world.wabas[waba_id]
        waba.subscribed_apps.discard(token.app_id)
        waba.overrides.pop(token.app_id, None)
        return web.json_response({"success": True})

    async def _subscriptions(self, request: web.Request) -> web.Response:
        _, waba_id, _ = await self._waba_call(request, "subscriptions")
        data = []
        for app_id in sorted(self.world.wabas[waba_id].subscribed_apps):
            app = self.world.apps[app_id]
            link = f"https://www.facebook.com/games/?app_id={app_id}"
            item: dict[str, Any] = {
                "whatsapp_business_api_data": {"id": app_id, "link": link, "name": app.name}
            }
            override = self.world.wabas[waba_id].overrides.get(app_id)
            if override:
                item["override_callback_uri"] = override
            data.append(item)
        return web.json_response({"data": data})

    async def _debug_token(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        self.world.calls[("debug_token", "debug_token")] += 1
        app_id = self._authorize_app(request, params)
        input_token = str(params.get("input_token", ""))
        if not input_token:
            raise errors.invalid_parameter("The parameter input_token is required")
        token = self.world.tokens.get(input_token)
        if token is None or token.app_id != app_id:
            invalid = {"code": 190, "message": "Invalid OAuth access token."}
            return web.json_response({"data": {"error": invalid, "is_valid": False, "scopes": []}})
        newest_first = list(reversed(token.wabas))
        scopes = ["whatsapp_business_management", "whatsapp_business_messaging"]
        data = {
            "app_id": token.app_id,
            "application": self.world.apps[token.app_id].name,
            "data_access_expires_at": 0,
            # 0: never expires. System user tokens may be non-expiring ("Lifetime: Never
            # expires", https://developers.facebook.com/docs/business-management-apis/system-users/install-apps-and-generate-tokens),
            # and so are the business tokens an Embedded Signup code is exchanged for
            # (business integration system user tokens, docs/embedded-signup.md).
            "expires_at": token.expires_at,
            "granular_scopes": [{"scope": s, "target_ids": newest_first} for s in scopes],
            "is_valid": not token.expired,
            "scopes": [*scopes, "public_profile"],
            "type": "SYSTEM_USER",
            "user_id": "10222270944537964",
        }
        return web.json_response({"data": data})

    async def _exchange_code(self, request: web.Request) -> web.Response:
        """`GET /oauth/access_token?client_id&client_secret&code` (Meta's Tech Provider
        onboarding guide, step 1): the code, once and within 30 s of its issue, for a business
        token of the app, granted the customer's account and number. Asked with the app's
        own id and secret, no access token."""
        params = await self._params(request)
        self.world.calls[("oauth", "exchange")] += 1
        missing = [p for p in ("client_id", "client_secret", "code") if not params.get(p)]
        if missing:
            raise errors.invalid_parameter(f"Missing {missing[0]} parameter.")
        app = self.world.apps.get(str(params["client_id"]))
        if app is None or not hmac.compare_digest(
            str(params["client_secret"]).encode(), app.secret.encode()
        ):
            raise errors.client_secret_invalid()
        code = self.world.codes.get(str(params["code"]))
        if code is None or code.app_id != app.app_id:
            raise errors.code_invalid()
        if code.used:
            raise errors.code_used()
        if self._clock() - code.issued_at > SIGNUP_CODE_SECONDS:
            raise errors.code_expired()
        code.used = True
        token_text = "EAAB" + secrets.token_urlsafe(48)
        self.world.business_token(code, token_text)
        return web.json_response({"access_token": token_text})

    async def _app(self, request: web.Request) -> web.Response:
        """`GET /app`: the app a user or system user token belongs to."""
        params = await self._params(request)
        self.world.calls[("app", "app")] += 1
        token = self._authorize(request, params)
        app = self.world.apps[token.app_id]
        node = {"name": app.name, "id": app.app_id}
        fields = [f.strip() for f in str(params.get("fields", "")).split(",") if f.strip()]
        if fields:
            unknown = [f for f in fields if f not in node]
            if unknown:
                raise errors.nonexisting_field(unknown[0], "Application")
            node = {name: node[name] for name in fields if name != "id"} | {"id": app.app_id}
        return web.json_response(node)

    async def _phone_numbers(self, request: web.Request) -> web.Response:
        """`GET /{WABA-ID}/phone_numbers`: the account's numbers, `limit` (1-100, default 25)
        a page, cursor paging (`after`), as Meta's OpenAPI description gives it."""
        token, waba_id, _ = await self._waba_call(request, "phone_numbers")
        params = dict(request.query)
        try:
            limit = int(params.get("limit", "25"))
        except ValueError:
            raise errors.invalid_parameter("Param limit must be an integer") from None
        if not 1 <= limit <= PHONE_NUMBERS_MAX_LIMIT:
            raise errors.invalid_parameter(f"Param limit must be at most {PHONE_NUMBERS_MAX_LIMIT}")
        fields = [f.strip() for f in params.get("fields", "").split(",") if f.strip()]
        version = version_of(request)
        fields_of(version, fields, PHONE_LIST_FIELDS)
        numbers = self.world.waba_numbers(waba_id)
        start = _cursor_index(params.get("after"))
        page = numbers[start : start + limit]
        # The description requires id, display_phone_number and status on every item.
        asked = [*PHONE_LIST_REQUIRED, *(f for f in fields if f not in PHONE_LIST_REQUIRED)]
        data = [
            self._phone_node(
                n, asked if fields else list(PHONE_LIST_DEFAULT_FIELDS), version, token.app_id
            )
            for n in page
        ]
        for item in data:  # the list's status is the number's link to the account
            item["status"] = LINK_STATUS.get(item["status"], "LINKED")
        body: dict[str, Any] = {"data": data}
        if page:
            cursors = {"before": _cursor(start), "after": _cursor(start + len(page))}
            body["paging"] = {"cursors": cursors}
            if start + limit < len(numbers):
                following = URL(str(request.url)).update_query({"after": cursors["after"]})
                body["paging"]["next"] = str(following.without_query_params("access_token"))
        return web.json_response(body)


def _cursor(index: int) -> str:
    return base64.urlsafe_b64encode(f"cursor:{index}".encode()).decode()


def _cursor_index(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        return max(int(text.removeprefix("cursor:")), 0)
    except ValueError:
        raise errors.invalid_parameter("Invalid cursor") from None

"""The stand-in's admin API (`/_standin/...`): what a test or `make run` does to the Meta it
plays, and the JavaScript SDK of the onboarding page, played."""

from __future__ import annotations

import json
import secrets
from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError

from .account_webhooks import account_changes
from .caller import text_notification
from .routes import GraphRoutes
from .state import (
    AppSeed,
    Fault,
    NumberPatch,
    NumberSeed,
    PhoneNumber,
    PopupSession,
    SignupCode,
    SignupRequest,
    World,
)

M = TypeVar("M", NumberSeed, NumberPatch, Fault, AppSeed, SignupRequest)


class AdminRoutes(GraphRoutes):
    """The admin API under `/_standin/...`: tests and `make run` seed numbers and apps,
    play faults, change a number as Meta would, issue signup codes, and have Meta send a
    message; and the played JavaScript SDK of the onboarding page."""

    def _number(self, request: web.Request) -> PhoneNumber:
        number = self.world.numbers.get(request.match_info["id"])
        if number is None:
            raise web.HTTPNotFound(text="no such phone number at the stand-in")
        return number

    @staticmethod
    async def _model(request: web.Request, model: type[M]) -> M:
        try:
            return model.model_validate_json(await request.read())
        except ValidationError as exc:
            raise web.HTTPUnprocessableEntity(
                text=exc.json(include_url=False, include_input=False),
                content_type="application/json",
            ) from None

    def _summary(self, number: PhoneNumber) -> dict[str, Any]:
        """A number's state, without its credentials."""
        return {
            "phone_number_id": number.id,
            "waba_id": number.waba_id,
            "app_id": number.app_id,
            "health": number.health,
            "quality_rating": number.quality_rating,
            "status": number.status,
            "override_callback_uri": number.override_callback_uri,
            "app_subscribed": number.app_id in self.world.wabas[number.waba_id].subscribed_apps,
            "token_expired": self.world.tokens[number.access_token].expired,
            "faults": [fault.model_dump(mode="json") for fault in number.faults],
            "calls": {call: n for (obj, call), n in self.world.calls.items() if obj == number.id},
        }

    async def _admin_seed(self, request: web.Request) -> web.Response:
        number = self.seed(await self._model(request, NumberSeed))
        return web.json_response(self._summary(number), status=201)

    async def _admin_number(self, request: web.Request) -> web.Response:
        return web.json_response(self._summary(self._number(request)))

    async def _admin_patch(self, request: web.Request) -> web.Response:
        number = self._number(request)
        delivered = await self.patch_number(number, await self._model(request, NumberPatch))
        return web.json_response({**self._summary(number), "account_webhooks": delivered})

    async def patch_number(self, number: PhoneNumber, patch: NumberPatch) -> list[int]:
        """Meta changes the number; a change of its status or rating makes Meta send account
        webhooks to the app's own callback (never an override), if the app is subscribed to
        the account. The HTTP status of each delivery (502: not delivered)."""
        status, quality = number.status, number.quality_rating
        self.world.patch(number, patch)
        if number.app_id not in self.world.wabas[number.waba_id].subscribed_apps:
            return []
        url = self._app_callback(number)
        secret = self.world.apps[number.app_id].secret
        delivered = []
        for event in account_changes(number, status=status, quality=quality):
            try:
                delivered.append(await self.caller.deliver(url, secret, event))
            except web.HTTPException as exc:
                delivered.append(exc.status)
        return delivered

    async def _admin_delete(self, request: web.Request) -> web.Response:
        self.world.remove(self._number(request))
        return web.Response(status=204)

    async def _admin_add_fault(self, request: web.Request) -> web.Response:
        number = self._number(request)
        number.faults.append(await self._model(request, Fault))
        return web.json_response(self._summary(number), status=201)

    async def _admin_clear_faults(self, request: web.Request) -> web.Response:
        number = self._number(request)
        number.faults.clear()
        return web.json_response(self._summary(number))

    async def _admin_app(self, request: web.Request) -> web.Response:
        app = self.world.add_app(await self._model(request, AppSeed))
        return web.json_response({"app_id": app.app_id, "name": app.name}, status=201)

    async def _admin_signup(self, request: web.Request) -> web.Response:
        """The tenant finished Embedded Signup: a code for the app, and what the session's
        WA_EMBEDDED_SIGNUP message event carries (the number and its account)."""
        signup = await self._model(request, SignupRequest)
        number = self.world.numbers.get(signup.phone_number_id)
        if number is None:
            raise web.HTTPNotFound(text=f"no number {signup.phone_number_id} is seeded")
        if signup.app_id not in self.world.apps:
            raise web.HTTPNotFound(text=f"no app {signup.app_id} is seeded")
        popup = self.world.popups.get(signup.session or "")
        if signup.session is not None and (popup is None or popup.result is not None):
            raise web.HTTPNotFound(text=f"no open session {signup.session}")
        code = secrets.token_urlsafe(32)
        if popup is not None:
            popup.result = {"code": code, "phone_number_id": number.id, "waba_id": number.waba_id}
        self.world.codes[code] = SignupCode(
            app_id=signup.app_id,
            phone_number_id=number.id,
            waba_id=number.waba_id,
            issued_at=self._clock() - signup.issued_seconds_ago,
        )
        return web.json_response(
            {"code": code, "phone_number_id": number.id, "waba_id": number.waba_id}, status=201
        )

    async def _sdk(self, request: web.Request) -> web.Response:
        """A stand-in for connect.facebook.net's sdk.js: `FB.init`, and `FB.login` with an
        Embedded Signup configuration opening the "popup" as a frame of this origin, which
        posts the session's WA_EMBEDDED_SIGNUP message and the code back to the page."""
        return web.Response(
            text=SDK_SCRIPT.replace("{{origin}}", str(request.url.origin())),
            content_type="application/javascript",
            # The page loads it as Meta's is loaded, crossorigin="anonymous": a CORS fetch.
            headers={"Access-Control-Allow-Origin": "*"},
        )

    async def _signup_frame(self, request: web.Request) -> web.Response:
        return web.Response(text=SIGNUP_FRAME, content_type="text/html")

    async def _open_popup(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        app_id, config_id = str(params.get("app_id", "")), str(params.get("config_id", ""))
        if app_id not in self.world.apps or not config_id:
            raise web.HTTPBadRequest(text="an app the stand-in knows and a config_id")
        session = secrets.token_urlsafe(12)
        self.world.popups[session] = PopupSession(app_id, config_id)
        return web.json_response({"session": session}, status=201)

    async def _popups(self, request: web.Request) -> web.Response:
        """The popups waiting for the tenant (the admin call `POST /_standin/signup`)."""
        open_ = [
            {"session": key, "app_id": popup.app_id, "config_id": popup.config_id}
            for key, popup in self.world.popups.items()
            if popup.result is None
        ]
        return web.json_response({"sessions": open_})

    async def _popup(self, request: web.Request) -> web.Response:
        popup = self.world.popups.get(request.match_info["id"])
        if popup is None:
            raise web.HTTPNotFound(text="no such session")
        if popup.result is None:
            return web.json_response({"done": False})
        return web.json_response({"done": True, **popup.result})

    async def _admin_stats(self, request: web.Request) -> web.Response:
        total: dict[str, int] = {}
        for (_, call), n in self.world.calls.items():
            total[call] = total.get(call, 0) + n
        return web.json_response(
            {
                "calls": total,
                "max_in_flight": self.max_in_flight,
                "numbers": len(self.world.numbers),
            }
        )

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.world = World()
        self._account_calls.clear()
        self.app_callback_events.clear()
        self.max_in_flight = self.in_flight
        return web.Response(status=204)

    async def _admin_send_text(self, request: web.Request) -> web.Response:
        number = self._number(request)
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            raise web.HTTPBadRequest(text="the body must be JSON") from None
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            raise web.HTTPBadRequest(text='{"text": "..."} is required')
        sender = str(body.get("from", "16315551181"))
        name = str(body.get("name", "Stand-in Customer"))
        status, url = await self.deliver_text(number, text, sender=sender, name=name)
        return web.json_response({"callback_url": url, "status": status})

    async def deliver_text(
        self, number: PhoneNumber, text: str, *, sender: str, name: str
    ) -> tuple[int, str]:
        """Sends a signed `messages` notification for an inbound text to where Meta would:
        the number's override, else the app's callback. Returns (HTTP status, URL)."""
        if number.app_id not in self.world.wabas[number.waba_id].subscribed_apps:
            raise web.HTTPConflict(
                text="the app is not subscribed to the number's business account: "
                "Meta would deliver nothing"
            )
        url = (
            number.override_callback_uri
            or self.world.wabas[number.waba_id].overrides.get(number.app_id)
            or self._app_callback(number)
        )
        event = text_notification(number, text, sender=sender, name=name)
        return await self.caller.deliver(url, self.world.apps[number.app_id].secret, event), url

    async def _app_callback_challenge(self, request: web.Request) -> web.Response:
        return web.Response(text=request.query.get("hub.challenge", ""))

    async def _app_callback_event(self, request: web.Request) -> web.Response:
        self.app_callback_events.append(await request.json())
        return web.Response(text="EVENT_RECEIVED")


# The SDK stand-in. FB.login opens the "popup" (a frame of the stand-in's origin, as Meta's
# popup is of facebook.com); the frame posts the session message and the code to the page.
SDK_SCRIPT = """(function () {
  "use strict";
  var origin = "{{origin}}";
  var app = {};
  window.FB = {
    init: function (options) { app = options; },
    login: function (callback, options) {
      var frame = document.createElement("iframe");
      frame.style.display = "none";
      frame.src = origin + "/_standin/signup-frame?app_id=" + encodeURIComponent(app.appId) +
        "&config_id=" + encodeURIComponent(options.config_id);
      window.addEventListener("message", function listen(event) {
        if (event.origin !== origin || !event.data || event.data.type !== "STANDIN_AUTH") {
          return;
        }
        window.removeEventListener("message", listen);
        callback({status: "connected", authResponse: {code: event.data.code}});
      });
      document.body.appendChild(frame);
    }
  };
  if (typeof window.fbAsyncInit === "function") { window.fbAsyncInit(); }
})();
"""


SIGNUP_FRAME = """<!doctype html>
<html><head><meta charset="utf-8"><title>Embedded Signup (stand-in)</title></head>
<body><script>
"use strict";
(async function () {
  const query = new URLSearchParams(location.search);
  const opened = await fetch("/_standin/sessions", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({app_id: query.get("app_id"), config_id: query.get("config_id")}),
  });
  const session = (await opened.json()).session;
  for (;;) {
    const state = await (await fetch("/_standin/sessions/" + session)).json();
    if (state.done) {
      parent.postMessage(JSON.stringify({
        type: "WA_EMBEDDED_SIGNUP", event: "FINISH",
        data: {phone_number_id: state.phone_number_id, waba_id: state.waba_id},
      }), "*");
      parent.postMessage({type: "STANDIN_AUTH", code: state.code}, "*");
      return;
    }
    await new Promise((done) => setTimeout(done, 250));
  }
})();
</script></body></html>
"""

"""The opt-in onboarding page (issue 20, item 4; `WA_FACADE_ONBOARDING_PAGE`, the chart's
`facade.onboardingPage.enabled`).

The platform mints a short-lived link for one instance with its API key
(`POST .../onboarding-link`); the tenant opens it, the page loads Facebook's JavaScript SDK,
launches Embedded Signup with the platform app's configuration, listens for the session's
`WA_EMBEDDED_SIGNUP` message, and posts the code, number and account to this facade
with the link's token, never an API key. The link is `<expiry>.<HMAC-SHA256>` over the
instance and its expiry, keyed by a digest of the API keys file (every replica reads the
same file; rotating the keys ends every link).
"""

from __future__ import annotations

import base64
import hmac
import html
import json
import math
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from whatsapp_channel.model import ChannelSetup, ChannelView
from yarl import URL

from channel_api.facade.deps import ChannelsDep, InstanceId

LINK_HEADER = "X-Onboarding-Link"
# Where Embedded Signup's session message comes from at Meta (its popup's origins).
META_ORIGINS = ("https://www.facebook.com", "https://web.facebook.com")


class OnboardingLink(BaseModel):
    url: str = Field(description="The page's path for this instance, its token included.")
    expires_at: int = Field(description="Unix time after which the link is refused.")


class SignupSession(BaseModel):
    """What the page posts: Embedded Signup's code and the session event's ids."""

    signup_code: str = Field(min_length=1, max_length=2048, pattern=r"^[\x21-\x7e]+$")
    phone_number_id: str = Field(pattern=r"^[0-9]{5,32}$")
    waba_id: str | None = Field(default=None, pattern=r"^[0-9]{5,32}$")


class Links:
    """Mints and checks the page's links."""

    def __init__(self, api_keys_file: Path, lifetime: float) -> None:
        material = api_keys_file.read_bytes()
        self._key = hmac.digest(material, b"whatsapp-channels onboarding link", "sha256")
        self.lifetime = lifetime

    def _mac(self, instance_id: str, expires_at: int) -> str:
        digest = hmac.digest(self._key, f"{instance_id}|{expires_at}".encode(), "sha256")
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def mint(self, instance_id: str) -> OnboardingLink:
        expires_at = math.ceil(time.time() + self.lifetime)
        token = f"{expires_at}.{self._mac(instance_id, expires_at)}"
        return OnboardingLink(url=f"/onboarding/{instance_id}?link={token}", expires_at=expires_at)

    def check(self, instance_id: str, token: str | None) -> None:
        """403 unless `token` is a live link for `instance_id`."""
        expiry, _, mac = (token or "").partition(".")
        valid = (
            expiry.isdigit()
            and int(expiry) >= time.time()
            and hmac.compare_digest(mac, self._mac(instance_id, int(expiry)))
        )
        if not valid:
            raise HTTPException(403, "the onboarding link is invalid or expired; ask for a new one")


def _links(request: Request) -> Links:
    links: Links = request.app.state.onboarding_links
    return links


def _page(request: Request, instance_id: str, token: str) -> str:
    settings = request.app.state.onboarding
    sdk = str(settings["sdk_url"])
    origins = [*META_ORIGINS, str(URL(sdk).origin())]
    config = {
        "appId": settings["app_id"],
        "configId": settings["config_id"],
        "version": settings["version"],
        "origins": origins,
        "link": token,
        "channelUrl": f"/onboarding/{instance_id}/channel",
    }
    # `</` never appears in the JSON: the script element cannot be closed from inside it.
    data = json.dumps(config).replace("</", "<\\/")
    return PAGE.replace("{{config}}", data).replace("{{sdk}}", html.escape(sdk, quote=True))


Instance = Annotated[uuid.UUID, PathParam(title="Instance Id")]


async def linked_instance(
    instance_id: Instance,
    request: Request,
    token: Annotated[str | None, Header(alias=LINK_HEADER)] = None,
) -> str:
    """The instance of a page's call, when its link token is live for it."""
    name = str(instance_id)
    _links(request).check(name, token)
    return name


LinkedInstance = Annotated[str, Depends(linked_instance)]


def router() -> APIRouter:
    routes = APIRouter()

    @routes.post(
        "/v1/instances/{instance_id}/channels/whatsapp/onboarding-link",
        tags=["Whatsapp channel"],
        summary="Onboarding Link",
        response_model=OnboardingLink,
    )
    async def onboarding_link(instance_id: InstanceId, request: Request) -> OnboardingLink:
        """A short-lived link to the onboarding page for this instance (Embedded Signup)."""
        return _links(request).mint(instance_id)

    @routes.get("/onboarding/{instance_id}", include_in_schema=False)
    async def page(instance_id: Instance, request: Request, link: str = "") -> HTMLResponse:
        name = str(instance_id)
        _links(request).check(name, link)
        headers = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        return HTMLResponse(_page(request, name, link), headers=headers)

    @routes.post("/onboarding/{instance_id}/channel", include_in_schema=False)
    async def connect(
        instance: LinkedInstance, session: SignupSession, channels: ChannelsDep
    ) -> dict[str, Any]:
        setup = ChannelSetup.model_validate(session.model_dump(exclude_none=True))
        return _answer(await channels.set_up(instance, setup))

    @routes.get("/onboarding/{instance_id}/channel", include_in_schema=False)
    async def state(instance: LinkedInstance, channels: ChannelsDep) -> dict[str, Any]:
        return _answer(await channels.read(instance))

    return routes


def _answer(view: ChannelView) -> dict[str, Any]:
    """What the page shows: the status only (no webhook URL, no verify token)."""
    return {"status": view.status, "status_reason": view.status_reason}


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Connect WhatsApp</title>
</head>
<body data-status="loading">
<h1>Connect WhatsApp</h1>
<button id="connect" type="button" disabled>Connect WhatsApp</button>
<p id="state" role="status">Loading Facebook's SDK...</p>
<script id="config" type="application/json">{{config}}</script>
<script>
"use strict";
const config = JSON.parse(document.getElementById("config").textContent);
const session = {};
function show(status, text) {
  document.body.dataset.status = status;
  document.getElementById("state").textContent = text;
}
async function call(method, body) {
  const response = await fetch(config.channelUrl, {
    method: method,
    headers: {"Content-Type": "application/json", "X-Onboarding-Link": config.link},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return [response.ok, await response.json()];
}
async function follow() {
  for (let i = 0; i < 60; i++) {
    const [ok, channel] = await call("GET");
    if (!ok) { show("refused", "Refused: " + channel.detail); return; }
    show(channel.status, "WhatsApp channel: " + channel.status +
      (channel.status_reason ? " (" + channel.status_reason + ")" : ""));
    if (channel.status !== "pending") { return; }
    await new Promise((done) => setTimeout(done, 2000));
  }
}
async function connect() {
  if (!session.code || !session.phone_number_id || session.posted) { return; }
  session.posted = true;
  show("connecting", "Connecting your number...");
  const [ok, answer] = await call("POST", {
    signup_code: session.code,
    phone_number_id: session.phone_number_id,
    waba_id: session.waba_id,
  });
  if (!ok) { show("refused", "Refused: " + JSON.stringify(answer.detail)); return; }
  await follow();
}
window.addEventListener("message", (event) => {
  if (!config.origins.includes(event.origin)) { return; }
  let data;
  try { data = typeof event.data === "string" ? JSON.parse(event.data) : event.data; }
  catch (error) { return; }
  if (!data || data.type !== "WA_EMBEDDED_SIGNUP") { return; }
  if (data.event === "FINISH" && data.data) {
    session.phone_number_id = data.data.phone_number_id;
    session.waba_id = data.data.waba_id;
    connect();
  } else if (data.event === "CANCEL") {
    show("cancelled", "Embedded Signup was cancelled.");
  }
});
window.fbAsyncInit = function () {
  FB.init({appId: config.appId, autoLogAppEvents: true, xfbml: true, version: config.version});
  const button = document.getElementById("connect");
  button.disabled = false;
  button.addEventListener("click", () => {
    show("signing-up", "Finish the steps in Facebook's window...");
    FB.login((response) => {
      if (response.authResponse && response.authResponse.code) {
        session.code = response.authResponse.code;
        connect();
      } else {
        show("cancelled", "Embedded Signup did not finish.");
      }
    }, {
      config_id: config.configId,
      response_type: "code",
      override_default_response_type: true,
      extras: {sessionInfoVersion: "3"},
    });
  });
  show("ready", "Ready.");
};
</script>
<script async defer crossorigin="anonymous" src="{{sdk}}"></script>
</body>
</html>
"""

"""Issue 20 on the real control plane: the operator holds the platform's own Meta app (a
mounted Secret's directory, `WA_OPERATOR_PLATFORM_APP_DIR`) and a channel without a sealed
app secret is checked, subscribed and registered with the platform app's; without the
platform app, that channel is refused with PlatformAppMissing. Through the REST API alone, a
POST with an Embedded Signup code (the stand-in's admin call standing for the popup) ends
`active`: the code exchanged once, the business token kept sealed, the account subscribed,
the number registered with a generated PIN; a reused or expired code is `error` with
SignupCodeInvalid, settled. No token, code, PIN or app secret in any log, event, status or
answer."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
from channel_operator.platform_app import PlatformApp, write
from graph_standin import NumberSeed
from graph_standin.state import AppSeed, SignupRequest, derived_app_id
from localkube.services import Service
from playwright.async_api import async_playwright
from whatsapp_channel import reasons
from whatsapp_channel.kube import channels_path, core_path
from whatsapp_channel.model import (
    READY,
    ChannelSpec,
    SealedCredentials,
    channel_body,
    rest_status,
)
from whatsapp_channel.sealing import seal

from tests.operator import test_channel_at_meta_cluster as meta
from tests.operator.test_channel_at_meta_cluster import Operated, credentials, new_phone
from tests.support.facade_app import ApiKeys, write_keys_file
from tests.support.graph import StandinThread
from tests.support.processes import log_dir, run_facade
from tests.support.waiting import eventually

# The fixtures of the issue-11 suite: a receiver, and an operator on the test's namespace.
receiver = meta.receiver
operated = meta.operated


def platform_app(values: dict[str, str]) -> PlatformApp:
    """The app the stand-in knows for a number seeded with `values`' app secret."""
    secret = values["app_secret"]
    return PlatformApp(app_id=derived_app_id(secret), app_secret=secret)


def platform_app_dir(operated: Operated, app: PlatformApp) -> Path:
    """The directory the operator reads the platform app from (a mounted Secret's)."""
    directory = log_dir(operated.cluster) / f"platform-app-{uuid.uuid4().hex[:8]}"
    write(directory, app)
    return directory


async def create_without_app_secret(operated: Operated, phone: str, values: dict[str, str]) -> str:
    name = str(uuid.uuid4())
    operated.values.append(values)
    key = await operated.key()

    def one(field: str, value: str) -> str:
        return seal(key, namespace=operated.namespace, name=name, field=field, value=value)

    spec = ChannelSpec(
        instance_id=name,
        phone_number_id=phone,
        waba_id=operated.waba,
        sealed=SealedCredentials(
            access_token=one("accessToken", values["access_token"]),
            verify_token=one("verifyToken", values["verify_token"]),
        ),
    )
    body = channel_body(namespace=operated.namespace, name=name, spec=spec)
    await operated.kube.create(channels_path(operated.namespace), body)
    return name


async def test_a_channel_without_an_app_secret_uses_the_platform_app(
    operated: Operated,
) -> None:
    values = credentials()
    phone = new_phone()
    operated.seed(phone, values)
    directory = platform_app_dir(operated, platform_app(values))
    with operated.operator(platform_app_dir=directory):
        name = await create_without_app_secret(operated, phone, values)
        channel = await operated.condition(name, READY, "True", reasons.CHANNEL_READY)
        assert rest_status(channel) == "active"
        assert operated.standin.subscribed(phone)
    operated.assert_no_credential_logged()


async def test_without_a_platform_app_a_channel_needs_its_app_secret(operated: Operated) -> None:
    values = credentials()
    phone = new_phone()
    operated.seed(phone, values)
    with operated.operator():
        name = await create_without_app_secret(operated, phone, values)
        channel = await operated.condition(name, READY, "False", reasons.PLATFORM_APP_MISSING)
        assert rest_status(channel) == "error"
    operated.assert_no_credential_logged()


# --- Embedded Signup through the REST API ----------------------------------------------------


class Signup:
    """The platform app at the stand-in and in the operator, a facade beside it."""

    def __init__(
        self,
        operated: Operated,
        facade: Service,
        keys: ApiKeys,
        app: PlatformApp | None = None,
    ) -> None:
        self.operated = operated
        self.facade = facade
        self.keys = keys
        self.app = app or PlatformApp(
            app_id=str(10**15 + secrets.randbelow(10**14)),
            app_secret=f"platformsecret{uuid.uuid4().hex}",
        )
        if app is None:
            operated.standin.call(_add_app(operated.standin, self.app))
        self.secrets: list[str] = [self.app.app_secret]

    def customer(self) -> str:
        """A tenant's number at Meta, not yet registered (its own token is irrelevant)."""
        phone = new_phone()
        seed = NumberSeed(
            phone_number_id=phone,
            waba_id=self.operated.waba,
            access_token=f"EAAGcustomer{uuid.uuid4().hex}",
            app_secret=f"customer{uuid.uuid4().hex}",
            status="PENDING",
        )
        self.operated.standin.call(_seed(self.operated.standin, seed))
        return phone

    def code(self, phone: str, **extra: Any) -> dict[str, str]:
        """The tenant finished the popup: the code and the session event's ids."""
        request = SignupRequest(app_id=self.app.app_id, phone_number_id=phone, **extra)
        session = self.operated.standin.call(_signup(self.operated.standin, request))
        self.secrets.append(session["code"])
        return session

    async def post(self, instance: str, body: dict[str, Any]) -> httpx.Response:
        url = f"{self.facade.url}/v1/instances/{instance}/channels/whatsapp"
        async with httpx.AsyncClient(timeout=60) as http:
            return await http.post(url, json=body, headers={"X-Api-Key": self.keys.admin})

    def assert_nothing_secret_anywhere(self, *texts: str) -> None:
        number_secrets = [
            value
            for number in self.operated.standin.standin.world.numbers.values()
            for value in (number.pin,)
            if value is not None
        ]
        tokens = [
            token
            for token, held in self.operated.standin.standin.world.tokens.items()
            if held.app_id == self.app.app_id
        ]
        logs = [Path(s.log_path).read_text(errors="replace") for s in self.operated.services]
        logs.append(Path(self.facade.log_path).read_text(errors="replace"))
        logs.append(Path(self.operated.receiver.service.log_path).read_text(errors="replace"))
        cluster = self.operated.cluster
        events = cluster.kubectl("get", "events", "-n", self.operated.namespace, "-o", "json")
        channels = cluster.kubectl(
            "get", "whatsappchannels", "-n", self.operated.namespace, "-o", "json"
        )
        for secret in [*self.secrets, *number_secrets, *tokens]:
            for text in [*logs, events.stdout, channels.stdout, *texts]:
                assert secret not in text


async def _add_app(standin: StandinThread, app: PlatformApp) -> None:
    standin.standin.world.add_app(AppSeed(app_id=app.app_id, app_secret=app.app_secret))


async def _seed(standin: StandinThread, seed: NumberSeed) -> None:
    standin.standin.seed(seed)


async def _signup(standin: StandinThread, request: SignupRequest) -> dict[str, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{standin.url}/_standin/signup", json=request.model_dump(mode="json")
        ) as response,
    ):
        assert response.status == 201, await response.text()
        body: dict[str, str] = await response.json()
        return body


@pytest.fixture
def signup_facade(operated: Operated, api_keys_file: ApiKeys) -> Iterator[Service]:
    with run_facade(
        operated.cluster.kubeconfig,
        log_dir(operated.cluster),
        namespace=operated.namespace,
        api_keys_file=api_keys_file.file,
        ready_wait_seconds=20,
        platform_app=True,
    ) as running:
        yield running


@pytest.fixture
def api_keys_file(tmp_path: Path) -> ApiKeys:
    return write_keys_file(tmp_path / "api-keys")


async def test_a_signup_code_through_the_rest_api_ends_active(
    operated: Operated, signup_facade: Service, api_keys_file: ApiKeys
) -> None:
    signup = Signup(operated, signup_facade, api_keys_file)
    directory = platform_app_dir(operated, signup.app)
    with operated.operator(platform_app_dir=directory):
        phone = signup.customer()
        session = signup.code(phone)
        instance = str(uuid.uuid4())
        answer = await signup.post(
            instance,
            {
                "signup_code": session["code"],
                "phone_number_id": session["phone_number_id"],
                "waba_id": session["waba_id"],
            },
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] in ("pending", "active")
        channel = await operated.condition(instance, READY, "True", reasons.CHANNEL_READY)
        assert rest_status(channel) == "active"
        world = operated.standin.standin.world
        assert operated.standin.calls("oauth", "exchange") >= 1
        number = world.numbers[phone]
        assert (number.status, number.pin is not None) == ("CONNECTED", True)
        # The platform app is subscribed to the customer's account; the override is set.
        assert signup.app.app_id in world.wabas[number.waba_id].subscribed_apps
        assert operated.standin.override(phone) is not None
        signup_status = channel["status"]["signup"]
        assert signup_status["registered"] is True
        assert signup_status["accessToken"].startswith("wa1:")
        # The channel's Secret holds the business token and the platform app's secret.
        secret = await operated.kube.get(
            core_path("secrets", operated.namespace, f"whatsapp-{instance}")
        )
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data["app_secret"] == signup.app.app_secret
        assert world.tokens[data["access_token"]].app_id == signup.app.app_id
        # The same code again (a retried POST): used, refused, settled.
        again = str(uuid.uuid4())
        other = signup.customer()
        answer = await signup.post(
            again, {"signup_code": session["code"], "phone_number_id": other}
        )
        assert answer.status_code == 200, answer.text
        refused = await operated.condition(again, READY, "False", reasons.SIGNUP_CODE_INVALID)
        assert rest_status(refused) == "error"
        assert refused["status"]["observedGeneration"] == refused["metadata"]["generation"]
        get = await _get(signup, again)
        assert (get["status"], get["status_reason"]) == ("error", reasons.SIGNUP_CODE_INVALID)
        texts = [answer.text, json.dumps(get)]
    signup.assert_nothing_secret_anywhere(*texts)


async def test_an_expired_code_is_signup_code_invalid_never_retried(
    operated: Operated, signup_facade: Service, api_keys_file: ApiKeys
) -> None:
    signup = Signup(operated, signup_facade, api_keys_file)
    directory = platform_app_dir(operated, signup.app)
    with operated.operator(platform_app_dir=directory):
        phone = signup.customer()
        session = signup.code(phone, issued_seconds_ago=31)
        instance = str(uuid.uuid4())
        answer = await signup.post(
            instance, {"signup_code": session["code"], "phone_number_id": phone}
        )
        assert answer.status_code == 200, answer.text
        channel = await operated.condition(instance, READY, "False", reasons.SIGNUP_CODE_INVALID)
        assert channel["status"]["observedGeneration"] == channel["metadata"]["generation"]
        assert "signup" not in channel["status"]
        exchanges = operated.standin.calls("oauth", "exchange")
        # Never retried: a later change of another channel's makes the operator work, and
        # this code is not asked about again (the operator's own backoff would be 5 s).
        other = signup.customer()
        late = str(uuid.uuid4())
        await signup.post(
            late, {"signup_code": signup.code(other)["code"], "phone_number_id": other}
        )
        await operated.condition(late, READY, "True", reasons.CHANNEL_READY)
        assert operated.standin.calls("oauth", "exchange") == exchanges + 1
        assert operated.standin.standin.world.numbers[phone].status == "PENDING"
    signup.assert_nothing_secret_anywhere(answer.text)


async def _get(signup: Signup, instance: str) -> dict[str, Any]:
    url = f"{signup.facade.url}/v1/instances/{instance}/channels/whatsapp"
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.get(url, headers={"X-Api-Key": signup.keys.admin})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


# --- the onboarding page, in a real browser --------------------------------------------------

CHROMIUM = "/usr/bin/chromium"  # Debian's, driven by playwright


async def test_the_onboarding_page_in_a_browser_ends_active(
    operated: Operated, api_keys_file: ApiKeys, tmp_path: Path
) -> None:
    """The tenant opens the link the platform minted, clicks "Connect WhatsApp", finishes
    the (stand-in) popup; the page posts the code with the link's token and shows the
    channel `active`. The page never holds the API key."""
    standin = operated.standin
    app = PlatformApp(
        app_id=str(10**15 + secrets.randbelow(10**14)),
        app_secret=f"platformsecret{uuid.uuid4().hex}",
        config_id=str(10**12 + secrets.randbelow(10**11)),
    )
    standin.call(_add_app(standin, app))
    directory = platform_app_dir(operated, app)
    with (
        run_facade(
            operated.cluster.kubeconfig,
            log_dir(operated.cluster),
            namespace=operated.namespace,
            api_keys_file=api_keys_file.file,
            ready_wait_seconds=20,
            platform_app=True,
            onboarding_page=True,
            platform_app_id=app.app_id,
            signup_config_id=app.config_id,
            facebook_sdk_url=f"{standin.url}/_standin/sdk.js",
        ) as facade,
        operated.operator(platform_app_dir=directory),
    ):
        signup = Signup(operated, facade, api_keys_file, app)
        phone = signup.customer()
        instance = str(uuid.uuid4())
        async with httpx.AsyncClient(timeout=30) as http:
            minted = await http.post(
                f"{facade.url}/v1/instances/{instance}/channels/whatsapp/onboarding-link",
                headers={"X-Api-Key": api_keys_file.admin},
            )
            assert minted.status_code == 200, minted.text
            link = minted.json()["url"]
            # Another instance's page with this link's token: refused.
            forged = link.replace(instance, str(uuid.uuid4()))
            assert (await http.get(f"{facade.url}{forged}")).status_code == 403

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox"]
            )
            try:
                page = await browser.new_page()
                await page.goto(f"{facade.url}{link}")
                await page.wait_for_selector('body[data-status="ready"]')
                assert api_keys_file.admin not in await page.content()
                await page.click("#connect")

                async def popup() -> str | None:
                    sessions = await _sessions(standin)
                    mine = [s for s in sessions if s["app_id"] == app.app_id]
                    return mine[0]["session"] if mine else None

                session = await eventually(popup, "the popup opened")
                assert signup.code(phone, session=session)["phone_number_id"] == phone
                await page.wait_for_selector('body[data-status="active"]', timeout=90_000)
                shown = await page.text_content("#state")
            finally:
                await browser.close()
        assert shown is not None
        assert "active" in shown
        channel = await operated.condition(instance, READY, "True", reasons.CHANNEL_READY)
        assert channel["status"]["signup"]["registered"] is True
        assert standin.standin.world.numbers[phone].status == "CONNECTED"
    signup.assert_nothing_secret_anywhere(shown)


async def _sessions(standin: StandinThread) -> list[dict[str, str]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{standin.url}/_standin/sessions") as response,
    ):
        body: dict[str, list[dict[str, str]]] = await response.json()
        return body["sessions"]

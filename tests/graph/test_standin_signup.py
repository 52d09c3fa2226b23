"""The stand-in plays Embedded Signup (issue 20, item 2): an admin call stands for a tenant
finishing the popup and issues a code for a seeded number and its account; the code is
exchanged once, within 30 s, for a business token of the platform app that behaves as Meta's
(debug_token with the app token shows the granted account; it never expires). A reused or
expired code gets Meta's OAuth error (tests/graph/meta_documented.py)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from typing import Any

import aiohttp
import pytest
from channel_operator.graph import (
    GraphClient,
    GraphCredentials,
    GraphError,
    GraphErrorKind,
    RetryPolicy,
)
from graph_standin import GraphStandin, NumberSeed
from graph_standin.main import main

from tests.graph import meta_documented as documented
from tests.graph.conftest import admin

PLATFORM_APP_ID = "1234567890123456"
PLATFORM_SECRET = "platform-app-secret-0123456789"
CUSTOMER_PHONE = "106540352240001"
CUSTOMER_WABA = "102290129340001"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def exchange(standin: GraphStandin, **params: str) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{standin.url}/v25.0/oauth/access_token", params=params) as response,
    ):
        return response.status, await response.json()


async def signed_up(standin: GraphStandin, **extra: Any) -> dict[str, Any]:
    status, app = await admin(
        standin, "POST", "/apps", {"app_id": PLATFORM_APP_ID, "app_secret": PLATFORM_SECRET}
    )
    assert status == 201, app
    standin.seed(
        NumberSeed(
            phone_number_id=CUSTOMER_PHONE,
            waba_id=CUSTOMER_WABA,
            access_token="EAAGcustomersOwnToken",
            app_secret="customers-own-app-secret",
            status="PENDING",
        )
    )
    status, body = await admin(
        standin,
        "POST",
        "/signup",
        {"app_id": PLATFORM_APP_ID, "phone_number_id": CUSTOMER_PHONE, **extra},
    )
    assert status == 201, body
    assert isinstance(body, dict)
    return body


async def test_a_code_is_exchanged_once_for_a_business_token_of_the_platform_app() -> None:
    clock = Clock()
    standin = GraphStandin(clock=clock)
    await standin.start()
    try:
        session = await signed_up(standin)
        assert (session["phone_number_id"], session["waba_id"]) == (CUSTOMER_PHONE, CUSTOMER_WABA)
        code = session["code"]
        clock.now += documented.SIGNUP_CODE_SECONDS - 1  # within the window
        params = {"client_id": PLATFORM_APP_ID, "client_secret": PLATFORM_SECRET, "code": code}
        assert set(params) == documented.EXCHANGE_PARAMETERS
        status, answer = await exchange(standin, **params)
        assert status == 200, answer
        assert set(answer) == {"access_token"}
        token = answer["access_token"]

        # Used once: Meta's OAuth error.
        status, again = await exchange(standin, **params)
        assert status == 400
        assert again["error"]["code"] == documented.CODE_ERROR_CODE
        assert documented.CODE_USED.items() <= again["error"].items()

        # The business token is the platform app's, granted the customer's account only.
        async with GraphClient(standin.url) as graph:
            credentials = GraphCredentials(token, PLATFORM_SECRET)
            assert (await graph.token_app(credentials)).id == PLATFORM_APP_ID
            info = await graph.debug_token(credentials, PLATFORM_APP_ID)
            assert info.waba_ids == (CUSTOMER_WABA,)
            assert not info.missing_scopes
            assert await graph.phone_number_ids(CUSTOMER_WABA, credentials) == {CUSTOMER_PHONE}
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                f"{standin.url}/v25.0/debug_token",
                params={"input_token": token},
                headers={"Authorization": f"Bearer {PLATFORM_APP_ID}|{PLATFORM_SECRET}"},
            ) as response,
        ):
            data = (await response.json())["data"]
        assert (data["is_valid"], data["expires_at"]) == (True, 0)  # never expires
    finally:
        await standin.stop()


async def test_an_expired_or_foreign_code_is_refused_as_meta_does() -> None:
    clock = Clock()
    standin = GraphStandin(clock=clock)
    await standin.start()
    try:
        code = (await signed_up(standin))["code"]
        clock.now += documented.SIGNUP_CODE_SECONDS + 1
        good = {"client_id": PLATFORM_APP_ID, "client_secret": PLATFORM_SECRET}
        status, expired = await exchange(standin, **good, code=code)
        assert status == 400
        assert expired["error"]["code"] == documented.CODE_ERROR_CODE
        assert documented.CODE_EXPIRED.items() <= expired["error"].items()
        # An expired code was not used: still expired, never a token.
        assert (await exchange(standin, **good, code=code))[1]["error"]["message"] == (
            documented.CODE_EXPIRED["message"]
        )
        # Issued 31 s ago over the admin API (how a cluster test gets an expired code).
        old = (await signed_up(standin, issued_seconds_ago=31))["code"]
        assert (await exchange(standin, **good, code=old))[0] == 400
        # Another app's secret, or a code nobody issued: refused, no token.
        fresh = (await signed_up(standin))["code"]
        status, wrong = await exchange(
            standin, client_id=PLATFORM_APP_ID, client_secret="not-the-secret", code=fresh
        )
        assert status == 400
        assert "access_token" not in wrong
        status, unknown = await exchange(standin, **good, code="never-issued")
        assert (status, unknown["error"]["code"]) == (400, 100)
        # The fresh code survived the wrong secret: the right one still gets its token.
        status, answer = await exchange(standin, **good, code=fresh)
        assert status == 200, answer
    finally:
        await standin.stop()


async def test_the_console_script_issues_a_code(standin: GraphStandin) -> None:
    """`whatsapp-graph-standin signup`: the admin call from a shell (docs/embedded-signup.md)."""
    await signed_up(standin)
    out = io.StringIO()
    argv = ["signup", "--app-id", PLATFORM_APP_ID, "--phone-number-id", CUSTOMER_PHONE]
    with contextlib.redirect_stdout(out):
        assert await asyncio.to_thread(main, [*argv, "--url", standin.url]) == 0
    session = json.loads(out.getvalue())
    assert session["waba_id"] == CUSTOMER_WABA
    params = {"client_id": PLATFORM_APP_ID, "client_secret": PLATFORM_SECRET}
    assert (await exchange(standin, **params, code=session["code"]))[0] == 200


async def test_the_client_exchanges_once_and_registers_with_a_pin() -> None:
    """The operator's calls (GraphClient.exchange_code, register_number) against it: a
    refused code is SIGNUP_CODE_INVALID, and no code or token is in an error's text."""
    standin = GraphStandin()
    await standin.start()
    try:
        code = (await signed_up(standin))["code"]
        async with GraphClient(standin.url, retry=RetryPolicy(attempts=3)) as graph:
            token = await graph.exchange_code(PLATFORM_APP_ID, PLATFORM_SECRET, code)
            with pytest.raises(GraphError) as caught:
                await graph.exchange_code(PLATFORM_APP_ID, PLATFORM_SECRET, code)
            assert caught.value.kind is GraphErrorKind.SIGNUP_CODE_INVALID
            assert caught.value.attempts == 1  # never retried
            for text in (str(caught.value), repr(caught.value)):
                assert code not in text
                assert PLATFORM_SECRET not in text
            credentials = GraphCredentials(token, PLATFORM_SECRET)
            number = standin.world.numbers[CUSTOMER_PHONE]
            assert number.status == "PENDING"
            await graph.register_number(CUSTOMER_PHONE, credentials, "123456")
            assert (number.status, number.pin) == ("CONNECTED", "123456")
            await graph.register_number(CUSTOMER_PHONE, credentials, "123456")  # idempotent
            with pytest.raises(GraphError) as mismatch:
                await graph.register_number(CUSTOMER_PHONE, credentials, "654321")
            assert mismatch.value.code == 133005
            assert "654321" not in str(mismatch.value)
    finally:
        await standin.stop()

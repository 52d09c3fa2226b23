"""The stand-in's rules for who may call what (issue 23: the mutation gate over
`graph_standin/routes.py`): how a token is presented, what an app token may ask, the call
budget per app and business account, which faults a call meets, and what a number's
override and registration refuse, each as Meta does. Over real loopback HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from channel_operator.graph import GraphCredentials
from graph_standin import Fault, FaultKind, GraphStandin
from graph_standin.state import PhoneNumber

from tests.graph import meta_documented as doc
from tests.graph.conftest import (
    APP_SECRET,
    OTHER_PHONE,
    OTHER_TOKEN,
    OTHER_WABA,
    PHONE,
    TOKEN,
    VERIFY_TOKEN,
    WABA,
    Callback,
    graph_get,
)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def call(
    standin: GraphStandin,
    method: str,
    path: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    data: dict[str, str] | None = None,
    version: str = "v25.0",
    token: str | None = None,
) -> tuple[int, Any]:
    """One raw Graph call; with `token`, as the client makes it (Bearer header and proof)."""
    if token is not None:
        params = {**(params or {}), **proof(token)}
        headers = {**(headers or {}), **bearer(token)}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.request(
            method,
            f"{standin.url}/{version}/{path}",
            params=params or {},
            headers=headers or {},
            json=json_body,
            data=data,
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def proof(token: str = TOKEN) -> dict[str, str]:
    return {"appsecret_proof": GraphCredentials(token, APP_SECRET).appsecret_proof}


# -- how a token is presented ---------------------------------------------------------------


async def test_the_token_may_come_as_the_access_token_parameter(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    # Graph takes `access_token` as a parameter as well as the Bearer header
    # (tests/graph/test_meta_openapi.py: GRAPH_PARAMETERS); another scheme's header is no token.
    for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}):
        status, body = await call(
            standin, "GET", PHONE, params={"access_token": TOKEN, **proof()}, headers=headers
        )
        assert (status, body["id"]) == (200, PHONE)


async def test_an_app_token_is_checked_with_its_proof_and_may_come_as_a_parameter(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    app_token = f"{number.app_id}|{APP_SECRET}"
    good = {"input_token": TOKEN, "access_token": app_token}
    status, body = await call(standin, "GET", "debug_token", params=good)
    assert (status, body["data"]["is_valid"]) == (200, True)
    status, body = await call(
        standin, "GET", "debug_token", params={**good, "appsecret_proof": "0" * 64}
    )
    assert status == 400
    assert body["error"]["message"] == doc.INVALID_APPSECRET_PROOF["error"]["message"]
    # A text that is neither an app token nor a token Meta knows: 190, echoed.
    status, body = await call(
        standin, "GET", "debug_token", params={"input_token": TOKEN, "access_token": "garbage"}
    )
    assert (status, body["error"]["code"]) == (401, 190)
    assert "garbage" in body["error"]["message"]


# -- the call budget per app and business account --------------------------------------------


async def test_the_budget_is_per_account_and_a_rolling_window() -> None:
    clock = Clock()
    standin = GraphStandin(account_call_limit=2, account_call_window=3600.0, clock=clock)
    await standin.start()
    try:
        from graph_standin import NumberSeed

        for phone, waba, token in ((PHONE, WABA, TOKEN), (OTHER_PHONE, OTHER_WABA, OTHER_TOKEN)):
            standin.seed(
                NumberSeed(
                    phone_number_id=phone, waba_id=waba, access_token=token, app_secret=APP_SECRET
                )
            )
        assert (await graph_get(standin, PHONE, {}))[0] == 200  # t=0
        clock.now = 100.0
        assert (await graph_get(standin, PHONE, {}))[0] == 200  # t=100: the second
        # The other account has a budget of its own, for the same app.
        assert (await graph_get(standin, OTHER_PHONE, {}, token=OTHER_TOKEN))[0] == 200
        # The third call of the hour on the first account: 80007, naming the account, and the
        # wait until the call of t=0 leaves the window (61 s: 2 whole minutes).
        clock.now = 3539.0
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{standin.url}/v25.0/{PHONE}", params=proof(), headers=bearer()
            ) as response,
        ):
            assert response.status == 400
            assert (await response.json())["error"]["code"] == 80007
            usage = json.loads(response.headers["X-Business-Use-Case-Usage"])
        assert usage[WABA][0]["estimated_time_to_regain_access"] == 2
        # One hour after the first call, it no longer counts.
        clock.now = 3600.0
        assert (await graph_get(standin, PHONE, {}))[0] == 200
        # Changing the override and registering spend the same account's budget.
        clock.now = 3650.0
        status, body = await call(
            standin,
            "POST",
            f"{PHONE}/register",
            token=TOKEN,
            json_body={"messaging_product": "whatsapp", "pin": "123456"},
        )
        assert (status, body["error"]["code"]) == (400, 80007)
        status, body = await call(
            standin, "POST", PHONE, token=TOKEN, json_body=doc.OVERRIDE_REQUEST
        )
        assert (status, body["error"]["code"]) == (400, 80007)
    finally:
        await standin.stop()


# -- which faults a call meets ---------------------------------------------------------------


async def test_a_fault_for_one_call_meets_only_that_call(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    calls: tuple[tuple[str, Callable[[], Awaitable[tuple[int, Any]]]], ...] = (
        ("override", lambda: call_override(standin, callback.url)),
        ("register", lambda: call_register(standin, {"pin": "123456"})),
        ("subscribe", lambda: call(standin, "POST", f"{WABA}/subscribed_apps", token=TOKEN)),
        ("unsubscribe", lambda: call(standin, "DELETE", f"{WABA}/subscribed_apps", token=TOKEN)),
    )
    for name, fault_call in calls:
        number.faults.append(Fault(kind=FaultKind.PERMISSION_DENIED, call=name, times=1))
        assert (await graph_get(standin, PHONE, {}))[0] == 200, name  # a check: not this one
        status, body = await fault_call()
        assert (status, body["error"]["code"]) == (403, 10), name
        assert standin.calls(number.waba_id if "subscribe" in name else PHONE, name) >= 1


async def test_the_timeout_and_slow_faults_hold_the_call(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    number.faults.append(Fault(kind=FaultKind.TIMEOUT, times=1, seconds=0.05))
    status, body = await graph_get(standin, PHONE, {})
    assert (status, body["error"]["code"]) == (503, 2)  # held, then Meta's outage
    number.faults.append(Fault(kind=FaultKind.SLOW, times=1, seconds=0.3))
    started = time.monotonic()
    assert (await graph_get(standin, PHONE, {}))[0] == 200
    assert time.monotonic() - started >= 0.3  # a lower bound only: safe on a loaded machine
    number.faults.append(Fault(kind=FaultKind.SLOW, times=1))
    assert (await graph_get(standin, PHONE, {}))[0] == 200


async def test_an_account_rate_limit_without_a_stated_window_states_none(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    for seconds, minutes in ((None, 0), (61.0, 2)):
        number.faults.append(Fault(kind=FaultKind.ACCOUNT_RATE_LIMITED, times=1, seconds=seconds))
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{standin.url}/v25.0/{PHONE}", params=proof(), headers=bearer()
            ) as response,
        ):
            usage = json.loads(response.headers["X-Business-Use-Case-Usage"])
        assert usage[WABA][0]["estimated_time_to_regain_access"] == minutes


# -- objects the token names ----------------------------------------------------------------


async def test_a_business_account_asked_as_a_number_names_the_accounts_node(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    # Meta's "(#100) Tried accessing nonexisting field (<field>) on node type (<type>)": the
    # client tells a wrong object type from it (graph/errors.py NONEXISTING_FIELD).
    for fields, named in (
        ("id,verified_name", "verified_name"),
        ("id", "display_phone_number"),
    ):
        status, body = await graph_get(standin, WABA, {"fields": fields})
        assert status == 400
        assert body["error"]["message"] == (
            f"(#100) Tried accessing nonexisting field ({named}) on node type "
            "(WhatsAppBusinessAccount)"
        )
    # A number asked with its fields is answered as the number.
    status, body = await graph_get(standin, PHONE, {"fields": "id,verified_name"})
    assert (status, set(body)) == (200, {"id", "verified_name"})


async def test_an_unknown_object_is_100_33_for_every_call(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    unknown = "106540352249999"
    for status, body in (
        await call(standin, "POST", unknown, json_body=doc.OVERRIDE_REQUEST, token=TOKEN),
        await call(
            standin,
            "POST",
            f"{unknown}/register",
            json_body={"messaging_product": "whatsapp", "pin": "123456"},
            token=TOKEN,
        ),
    ):
        assert (status, body["error"]["code"], body["error"]["error_subcode"]) == (400, 100, 33)


async def test_the_new_messaging_limit_field_exists_from_v24(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    field = doc.MESSAGING_LIMIT_DEPRECATED[1]
    status, body = await call(
        standin,
        "GET",
        PHONE,
        params={"fields": field, **proof()},
        headers=bearer(),
        version="v24.0",
    )
    assert (status, body[field]) == (200, "TIER_1K")


# -- the override and the registration ------------------------------------------------------


async def test_the_override_takes_form_parameters_and_a_uri_of_200_characters(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    await call(standin, "POST", f"{WABA}/subscribed_apps", token=TOKEN)
    uri = callback.url + "?" + "x" * (doc.MAX_CALLBACK_URI - len(callback.url) - 1)
    assert len(uri) == doc.MAX_CALLBACK_URI  # Meta: "Max URL length: 200 characters"
    form = {
        "webhook_configuration": json.dumps(
            {"override_callback_uri": uri, "verify_token": VERIFY_TOKEN}
        )
    }
    status, body = await call(standin, "POST", PHONE, data=form, token=TOKEN)
    assert (status, body) == (200, doc.OVERRIDE_RESPONSE)
    assert number.override_callback_uri == uri


async def test_the_override_refuses_what_it_cannot_use(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    await call(standin, "POST", f"{WABA}/subscribed_apps", token=TOKEN)
    for config in (
        {"verify_token": VERIFY_TOKEN},  # no URI
        {"override_callback_uri": callback.url, "verify_token": ""},  # an empty verify token
        "not json",
    ):
        body = {"webhook_configuration": config}
        status, answer = await call(standin, "POST", PHONE, json_body=body, token=TOKEN)
        assert (status, answer["error"]["code"]) == (400, 100), config
    assert number.override_callback_uri is None
    assert callback.challenges == []


async def test_a_pin_is_six_digits_as_a_string(standin: GraphStandin, number: PhoneNumber) -> None:
    status, body = await call_register(standin, {"pin": 123456})
    assert (status, body["error"]["code"]) == (400, 100)
    assert number.pin is None


async def test_unsubscribing_drops_the_apps_account_override(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    # The account-level override in a JSON body (Graph reads body parameters as query ones).
    subscribe = {"override_callback_uri": callback.url, "verify_token": VERIFY_TOKEN}
    status, _ = await call(
        standin, "POST", f"{WABA}/subscribed_apps", json_body=subscribe, token=TOKEN
    )
    assert status == 200
    assert standin.world.wabas[WABA].overrides == {number.app_id: callback.url}
    assert (await call(standin, "DELETE", f"{WABA}/subscribed_apps", token=TOKEN))[0] == 200
    assert standin.world.wabas[WABA].overrides == {}
    assert standin.calls(WABA, "unsubscribe") == 1


async def call_override(standin: GraphStandin, url: str) -> tuple[int, Any]:
    config = {"webhook_configuration": {"override_callback_uri": url, "verify_token": "v"}}
    return await call(standin, "POST", PHONE, json_body=config, token=TOKEN)


async def call_register(standin: GraphStandin, body: dict[str, object]) -> tuple[int, Any]:
    return await call(
        standin,
        "POST",
        f"{PHONE}/register",
        json_body={"messaging_product": "whatsapp", **body},
        token=TOKEN,
    )

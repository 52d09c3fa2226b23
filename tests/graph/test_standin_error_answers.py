"""The stand-in's refusals carry what Meta promises in an error (issue 23: a first mutation run
of `graph_standin/errors.py` left 234 of 501 mutants alive). WhatsApp's error codes page: build
on `code` and `error_data.details`, never on the title inside `message`
(tests/graph/meta_documented.py). So each answer is held to Meta's code, HTTP status, type,
subcode, details and usage headers; a message only where Meta's text is quoted there or the
client has nothing else to go by. Every answer goes over real loopback HTTP."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from graph_standin import Fault, FaultKind, GraphStandin
from graph_standin.state import AppSeed, PhoneNumber

from tests.graph import meta_documented as doc
from tests.graph.conftest import APP_SECRET, PHONE, TOKEN, WABA, graph_get

# Each fault the stand-in plays as a Graph error, with Meta's code (and subcode) for it.
FAULT_CODES: dict[FaultKind, tuple[int, int | None]] = {
    FaultKind.TOKEN_INVALID: (190, None),
    FaultKind.TOKEN_EXPIRED: (190, 463),
    FaultKind.PERMISSION_DENIED: (10, None),
    FaultKind.SERVICE_UNAVAILABLE: (2, None),
    FaultKind.AUTH_EXCEPTION: (0, None),
    FaultKind.CAPABILITY_MISSING: (3, None),
    FaultKind.ASSET_ACCESS_MISSING: (200, None),
    FaultKind.POLICY_BLOCKED: (368, None),
    FaultKind.ACCOUNT_LOCKED: (131031, None),
    FaultKind.PIN_MISMATCH: (133005, None),
    FaultKind.REGISTRATION_LIMITED: (133016, None),
    FaultKind.REGISTRATION_UNAVAILABLE: (133004, None),
}


async def _faulted(
    standin: GraphStandin, kind: FaultKind, seconds: float | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The number's check answered with one injected fault: status, body, headers."""
    standin.world.numbers[PHONE].faults.append(Fault(kind=kind, times=1, seconds=seconds))
    params = {"appsecret_proof": _proof(TOKEN)}
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{standin.url}/v25.0/{PHONE}",
            params=params,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        return response.status, await response.json(), dict(response.headers)


def _proof(token: str) -> str:
    from channel_operator.graph import GraphCredentials

    return GraphCredentials(token, APP_SECRET).appsecret_proof


def _error(body: dict[str, Any]) -> dict[str, Any]:
    doc.assert_same_shape(
        body, doc.WHATSAPP_ERROR_RESPONSE, optional=doc.WHATSAPP_ERROR_OPTIONAL_KEYS
    )
    error: dict[str, Any] = body["error"]
    assert error["fbtrace_id"]
    return error


@pytest.mark.parametrize("kind", list(FAULT_CODES))
async def test_each_refusal_has_metas_code_status_and_details(
    standin: GraphStandin, number: PhoneNumber, kind: FaultKind
) -> None:
    status, body, _ = await _faulted(standin, kind)
    error = _error(body)
    code, subcode = FAULT_CODES[kind]
    assert (error["code"], error.get("error_subcode")) == (code, subcode)
    documented_status, details = doc.WHATSAPP_ERROR_CODES[code]
    assert status == documented_status
    if details is None:
        assert "error_data" not in error
    else:
        assert error["error_data"] == {"messaging_product": "whatsapp", "details": details}


async def test_token_refusals_are_oauth_exceptions(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    # doc.TOKEN_EXPIRED and doc.ERROR_RESPONSE: a refused token is an OAuthException.
    for kind in (FaultKind.TOKEN_INVALID, FaultKind.TOKEN_EXPIRED, FaultKind.AUTH_EXCEPTION):
        _, body, _ = await _faulted(standin, kind)
        assert _error(body)["type"] == doc.TOKEN_EXPIRED["error"]["type"], kind


async def test_a_user_facing_refusal_titles_itself_as_its_message_does(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    # Graph's error-handling guide: error_user_title and error_user_msg, when relevant; the
    # WhatsApp page: the code's title is inside `message`, after "(#<code>) ".
    _, body, _ = await _faulted(standin, FaultKind.ASSET_ACCESS_MISSING)
    error = _error(body)
    assert error["message"] == f"(#{error['code']}) {error['error_user_title']}"
    assert isinstance(error["error_user_msg"], str)
    assert error["error_user_msg"]


async def test_an_app_at_its_rate_limit_says_so_in_x_app_usage(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    status, body, headers = await _faulted(standin, FaultKind.APP_RATE_LIMITED)
    assert (status, _error(body)["code"]) == (400, 4)
    usage = json.loads(headers["X-App-Usage"])
    assert set(usage) == doc.APP_USAGE_KEYS
    assert usage["call_count"] == 100  # all of the app's calls are spent


async def test_an_account_at_its_rate_limit_names_itself_and_the_wait(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    status, body, headers = await _faulted(standin, FaultKind.ACCOUNT_RATE_LIMITED, 150.0)
    assert (status, _error(body)["code"]) == (400, 80007)
    usage = json.loads(headers["X-Business-Use-Case-Usage"])
    assert list(usage) == [WABA]  # the number's business account, the object Meta counts
    (entry,) = usage[WABA]
    assert set(entry) == doc.BUSINESS_USE_CASE_KEYS
    assert isinstance(entry["type"], str)
    assert entry["call_count"] == 100
    assert entry["estimated_time_to_regain_access"] == 3  # minutes, rounded up from 150 s


async def test_a_call_without_any_token_is_104(standin: GraphStandin, number: PhoneNumber) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{standin.url}/v25.0/{PHONE}") as response,
    ):
        status, body = response.status, await response.json()
    error = _error(body)
    assert (status, error["code"], error["type"]) == (400, 104, "OAuthException")


async def test_an_unknown_token_is_190_and_echoed(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    # Graph echoes a token it cannot parse, which is why the client scrubs its messages.
    stranger = "EAAGnotATokenTheStandinKnows0123456789"
    status, body = await graph_get(standin, PHONE, {}, token=stranger)
    error = _error(body)
    assert (status, error["code"], error["type"]) == (401, 190, "OAuthException")
    assert stranger in error["message"]


async def test_a_missing_proof_is_a_graph_method_exception_100(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{standin.url}/v25.0/{PHONE}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as response,
    ):
        status, body = response.status, await response.json()
    error = _error(body)
    documented = doc.APPSECRET_PROOF_REQUIRED["error"]
    assert (error["code"], error["type"]) == (documented["code"], documented["type"])
    assert status == doc.WHATSAPP_ERROR_CODES[100][0]


async def test_debug_token_asked_with_a_user_token_is_an_oauth_exception(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    status, body = await graph_get(standin, "debug_token", {"input_token": TOKEN})
    error = _error(body)
    assert (status, error["code"], error["type"]) == (400, 100, "OAuthException")


async def test_the_code_exchange_refuses_as_graph_does(standin: GraphStandin) -> None:
    app = standin.world.add_app(
        AppSeed(app_id="1234567890123456", app_secret="platform-secret-0123456789")
    )
    params = {"client_id": app.app_id, "code": "never-issued"}
    async with aiohttp.ClientSession() as session:
        for secret, expected in (
            ("not-the-secret", doc.CLIENT_SECRET_INVALID),
            (app.secret, {"type": "OAuthException", "code": doc.CODE_ERROR_CODE}),
        ):
            async with session.get(
                f"{standin.url}/v25.0/oauth/access_token",
                params={**params, "client_secret": secret},
            ) as response:
                status, body = response.status, await response.json()
            error = _error(body)
            assert status == 400
            assert expected.items() <= error.items()

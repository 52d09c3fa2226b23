"""The stand-in answers in the shapes Meta documents (tests/graph/meta_documented.py), over
real loopback HTTP. Each test compares against the quoted documentation, never against the
stand-in's own earlier output."""

from __future__ import annotations

import aiohttp
from graph_standin import Fault, FaultKind, GraphStandin
from graph_standin.state import PhoneNumber

from tests.graph import meta_documented as doc
from tests.graph.conftest import (
    APP_SECRET,
    PHONE,
    TOKEN,
    VERIFY_TOKEN,
    WABA,
    Callback,
    admin,
    graph_get,
)

PROOF_ERROR_KEYS = doc.ERROR_OPTIONAL_KEYS


def _assert_graph_error(body: object, code: int, type_: str | None = None) -> dict[str, object]:
    doc.assert_same_shape(body, doc.ERROR_RESPONSE, optional=doc.ERROR_OPTIONAL_KEYS)
    assert isinstance(body, dict)
    error = body["error"]
    assert error["code"] == code
    if type_ is not None:
        assert error["type"] == type_
    return dict(error)


async def test_the_phone_number_node_has_metas_default_fields(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    status, body = await graph_get(standin, PHONE, {})
    assert status == 200
    doc.assert_same_shape(
        body,
        doc.PHONE_NUMBER_DEFAULT_FIELDS,
        optional=frozenset({"last_onboarded_time"}),  # a field of the WABA's list only
    )
    assert body["quality_rating"] in doc.QUALITY_RATINGS
    assert body["id"] == PHONE


async def test_fields_select_what_is_answered(standin: GraphStandin, number: PhoneNumber) -> None:
    status, body = await graph_get(
        standin, PHONE, {"fields": "id,verified_name,display_phone_number,quality_rating"}
    )
    assert status == 200
    doc.assert_same_shape(body, doc.PHONE_NUMBER)
    assert body["verified_name"] == "Jasper's Market"


async def test_an_unknown_field_is_a_graph_error(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    status, body = await graph_get(standin, PHONE, {"fields": "id,not_a_field"})
    assert status == 400
    _assert_graph_error(body, 100)


async def test_health_status_has_metas_entities(standin: GraphStandin, number: PhoneNumber) -> None:
    status, body = await graph_get(standin, PHONE, {"fields": "health_status"})
    assert status == 200
    documented = doc.HEALTH_STATUS["health_status"]
    by_type = {entity["entity_type"]: entity for entity in documented["entities"]}
    entities = body["health_status"]["entities"]
    assert {entity["entity_type"] for entity in entities} == set(by_type)
    for entity in entities:
        doc.assert_same_shape(entity, by_type[entity["entity_type"]])
        assert entity["can_send_message"] in doc.CAN_SEND_MESSAGE
    assert set(body) == set(doc.HEALTH_STATUS)
    assert body["health_status"]["can_send_message"] == "AVAILABLE"
    phone = next(e for e in entities if e["entity_type"] == "PHONE_NUMBER")
    waba = next(e for e in entities if e["entity_type"] == "WABA")
    assert (phone["id"], waba["id"]) == (PHONE, WABA)


async def test_blocked_and_limited_health_follow_metas_rules(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    assert (await admin(standin, "PATCH", f"/numbers/{PHONE}", {"health": "BLOCKED"}))[0] == 200
    _, body = await graph_get(standin, PHONE, {"fields": "health_status"})
    health = body["health_status"]
    assert health["can_send_message"] == "BLOCKED"  # one node blocked: blocked overall
    phone = next(e for e in health["entities"] if e["entity_type"] == "PHONE_NUMBER")
    assert phone["can_send_message"] == "BLOCKED"
    assert phone["errors"]
    for error in phone["errors"]:
        doc.assert_same_shape(error, doc.HEALTH_ENTITY_ERROR)

    await admin(standin, "PATCH", f"/numbers/{PHONE}", {"health": "LIMITED"})
    _, body = await graph_get(standin, PHONE, {"fields": "health_status"})
    health = body["health_status"]
    assert health["can_send_message"] == "LIMITED"
    phone = next(e for e in health["entities"] if e["entity_type"] == "PHONE_NUMBER")
    assert "errors" not in phone
    assert phone["additional_info"]
    assert all(isinstance(i, str) for i in phone["additional_info"])


async def test_webhook_configuration_reads_back_in_metas_shape(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    _, body = await graph_get(standin, PHONE, {"fields": "webhook_configuration"})
    doc.assert_same_shape(
        body, doc.WEBHOOK_CONFIGURATION, optional=doc.WEBHOOK_CONFIGURATION_OPTIONAL_KEYS
    )
    assert "phone_number" not in body["webhook_configuration"]

    await _post(standin, f"{WABA}/subscribed_apps", None)
    request = {
        "webhook_configuration": {
            "override_callback_uri": callback.url,
            "verify_token": VERIFY_TOKEN,
        }
    }
    doc.assert_same_shape(request, doc.OVERRIDE_REQUEST)  # we send what Meta documents
    status, answer = await _post(standin, PHONE, request)
    assert status == 200
    assert answer == doc.OVERRIDE_RESPONSE
    _, body = await graph_get(standin, PHONE, {"fields": "webhook_configuration"})
    doc.assert_same_shape(
        body, doc.WEBHOOK_CONFIGURATION, optional=doc.WEBHOOK_CONFIGURATION_OPTIONAL_KEYS
    )
    assert body["webhook_configuration"]["phone_number"] == callback.url

    status, answer = await _post(standin, PHONE, doc.OVERRIDE_CLEAR_REQUEST)
    assert (status, answer) == (200, doc.OVERRIDE_RESPONSE)
    _, body = await graph_get(standin, PHONE, {"fields": "webhook_configuration"})
    assert "phone_number" not in body["webhook_configuration"]


async def test_the_override_verifies_the_callback_live(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    await _post(standin, f"{WABA}/subscribed_apps", None)
    callback.answer = "wrong"
    status, body = await _post(
        standin,
        PHONE,
        {
            "webhook_configuration": {
                "override_callback_uri": callback.url,
                "verify_token": VERIFY_TOKEN,
            }
        },
    )
    assert status == 400
    _assert_graph_error(body, doc.CALLBACK_VERIFICATION_FAILED_CODE)
    # Meta's challenge: a GET with hub.mode=subscribe, the verify token and a challenge.
    assert callback.challenges[-1]["hub.mode"] == "subscribe"
    assert callback.challenges[-1]["hub.verify_token"] == VERIFY_TOKEN
    assert callback.challenges[-1]["hub.challenge"]

    too_long = callback.url + "?" + "x" * doc.MAX_CALLBACK_URI
    status, body = await _post(
        standin,
        PHONE,
        {"webhook_configuration": {"override_callback_uri": too_long, "verify_token": "v"}},
    )
    assert status == 400
    _assert_graph_error(body, 100)


async def test_the_override_needs_the_app_subscribed(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    status, body = await _post(standin, PHONE, doc.OVERRIDE_REQUEST)
    assert status == 400
    error = _assert_graph_error(body, 100, "OAuthException")
    assert error["message"] == doc.NOT_SUBSCRIBED_MESSAGE
    assert callback.challenges == []  # refused before any challenge


async def test_subscribed_apps_post_get_delete(standin: GraphStandin, number: PhoneNumber) -> None:
    assert await _post(standin, f"{WABA}/subscribed_apps", None) == (200, doc.SUBSCRIBE_RESPONSE)
    status, body = await graph_get(standin, f"{WABA}/subscribed_apps", {})
    assert status == 200
    doc.assert_same_shape(body, doc.SUBSCRIBED_APPS)
    assert len(body["data"]) == 1
    app = body["data"][0]["whatsapp_business_api_data"]
    assert app["link"] == f"https://www.facebook.com/games/?app_id={app['id']}"
    assert await _delete(standin, f"{WABA}/subscribed_apps") == (200, doc.UNSUBSCRIBE_RESPONSE)
    assert (await graph_get(standin, f"{WABA}/subscribed_apps", {}))[1] == {"data": []}


async def test_credential_errors_have_metas_bodies(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    # A wrong proof: the documented body, HTTP 400.
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{standin.url}/v25.0/{PHONE}",
            params={"appsecret_proof": "0" * 64},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        assert response.status == doc.INVALID_APPSECRET_PROOF_STATUS
        body = await response.json()
    doc.assert_same_shape(body, doc.INVALID_APPSECRET_PROOF)
    assert body["error"]["message"] == doc.INVALID_APPSECRET_PROOF["error"]["message"]
    assert body["error"]["type"] == doc.INVALID_APPSECRET_PROOF["error"]["type"]

    # No proof at all.
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{standin.url}/v25.0/{PHONE}", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as response,
    ):
        body = await response.json()
    doc.assert_same_shape(body, doc.APPSECRET_PROOF_REQUIRED)
    assert body["error"]["message"] == doc.APPSECRET_PROOF_REQUIRED["error"]["message"]

    # An expired token: 190/463 with Meta's message.
    await admin(standin, "PATCH", f"/numbers/{PHONE}", {"token_expired": True})
    _status, body = await graph_get(standin, PHONE, {})
    doc.assert_same_shape(body, doc.TOKEN_EXPIRED)
    assert (body["error"]["code"], body["error"]["error_subcode"]) == (190, 463)
    assert body["error"]["message"].startswith("Error validating access token: Session has expired")


async def test_an_object_the_token_cannot_see_is_100_33(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    for path in ("999999999", f"{WABA}9/subscribed_apps"):
        status, body = await graph_get(standin, path, {})
        assert status == 400
        error = _assert_graph_error(body, 100, doc.UNSUPPORTED_GET["error"]["type"])
        assert error["error_subcode"] == 33
        assert str(error["message"]).startswith(doc.UNSUPPORTED_GET["error"]["message"][:-1])


async def test_injected_faults_have_graph_error_bodies(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    expected = {
        FaultKind.TOKEN_INVALID: (401, 190),
        FaultKind.PERMISSION_DENIED: (403, 10),
        FaultKind.APP_RATE_LIMITED: (400, 4),
        FaultKind.ACCOUNT_RATE_LIMITED: (400, 80007),
        FaultKind.UNKNOWN_ERROR: (500, 1),
        FaultKind.SERVICE_UNAVAILABLE: (503, 2),
    }
    for kind, (http_status, code) in expected.items():
        status, _ = await admin(
            standin, "POST", f"/numbers/{PHONE}/faults", Fault(kind=kind, times=1).model_dump()
        )
        assert status == 201
        status, body = await graph_get(standin, PHONE, {})
        assert status == http_status, kind
        _assert_graph_error(body, code)
    assert (await graph_get(standin, PHONE, {}))[0] == 200  # each fault was used up


async def test_the_delivered_message_is_a_signed_messages_webhook(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    from channel_api.receiver.webhook_rules import parse_event, signature_valid

    await _post(standin, f"{WABA}/subscribed_apps", None)
    await _post(
        standin,
        PHONE,
        {
            "webhook_configuration": {
                "override_callback_uri": callback.url,
                "verify_token": VERIFY_TOKEN,
            }
        },
    )
    status, result = await admin(standin, "POST", f"/numbers/{PHONE}/messages", {"text": "hello"})
    assert (status, result) == (200, {"callback_url": callback.url, "status": 200})
    (event,) = await callback.wait_for(1)
    signature = event.headers["X-Hub-Signature-256"].encode()
    assert signature_valid(APP_SECRET.encode(), event.body, signature)  # the receiver's check
    body = parse_event(event.body)
    envelope = doc.MESSAGES_WEBHOOK_ENVELOPE
    assert set(body) == set(envelope)
    assert body["object"] == envelope["object"]
    change = body["entry"][0]["changes"][0]
    assert set(change) == set(envelope["entry"][0]["changes"][0])
    assert change["field"] == "messages"
    value = change["value"]
    documented_value = envelope["entry"][0]["changes"][0]["value"]
    doc.assert_same_shape(value["metadata"], documented_value["metadata"])
    assert value["metadata"] == {"display_phone_number": "61400111222", "phone_number_id": PHONE}
    assert value["messages"][0]["text"] == {"body": "hello"}
    assert body["entry"][0]["id"] == WABA


async def _post(standin: GraphStandin, path: str, body: object) -> tuple[int, object]:
    return await _send(standin, "POST", path, body)


async def _delete(standin: GraphStandin, path: str) -> tuple[int, object]:
    return await _send(standin, "DELETE", path, None)


async def _send(standin: GraphStandin, method: str, path: str, body: object) -> tuple[int, object]:
    from channel_operator.graph import GraphCredentials

    proof = GraphCredentials(TOKEN, APP_SECRET).appsecret_proof
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method,
            f"{standin.url}/v25.0/{path}",
            params={"appsecret_proof": proof},
            headers={"Authorization": f"Bearer {TOKEN}"},
            json=body,
        ) as response,
    ):
        return response.status, await response.json()


async def test_debug_token_lists_the_accounts_newest_first(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    from graph_standin import NumberSeed

    standin.seed(
        NumberSeed(
            phone_number_id="106540352243333",
            waba_id="102290129343333",
            access_token=TOKEN,
            app_secret=APP_SECRET,
        )
    )
    app_token = f"{number.app_id}|{APP_SECRET}"
    status, body = await graph_get(standin, "debug_token", {"input_token": TOKEN}, app_token)
    assert status == 200
    doc.assert_same_shape(body, doc.DEBUG_TOKEN)
    management = body["data"]["granular_scopes"][0]
    assert management["scope"] == "whatsapp_business_management"
    assert management["target_ids"] == ["102290129343333", WABA]
    assert body["data"]["is_valid"] is True


async def test_debug_token_refuses_a_token_asking_about_itself(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    status, body = await graph_get(standin, "debug_token", {"input_token": TOKEN})
    assert status == 400
    error = _assert_graph_error(body, 100)
    assert error["message"] == doc.DEBUG_TOKEN_NEEDS_APP_TOKEN


async def test_app_names_the_tokens_app(standin: GraphStandin, number: PhoneNumber) -> None:
    status, body = await graph_get(standin, "app", {"fields": "id,name"})
    assert status == 200
    doc.assert_same_shape(body, doc.APP)
    assert body["id"] == number.app_id


async def test_an_accounts_numbers_come_in_pages(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    from graph_standin import NumberSeed

    for index in range(2):
        standin.seed(
            NumberSeed(
                phone_number_id=f"10654035224{index:04d}",
                waba_id=WABA,
                access_token=TOKEN,
                app_secret=APP_SECRET,
            )
        )
    seen: list[str] = []
    params = {"fields": "id,display_phone_number,verified_name,status,quality_rating"}
    params["limit"] = "2"
    status, body = await graph_get(standin, f"{WABA}/phone_numbers", params)
    assert status == 200
    doc.assert_same_shape(body, doc.PHONE_NUMBERS_PAGE, optional=frozenset({"before", "next"}))
    seen += [item["id"] for item in body["data"]]
    assert "next" in body["paging"]
    params["after"] = body["paging"]["cursors"]["after"]
    status, body = await graph_get(standin, f"{WABA}/phone_numbers", params)
    assert status == 200
    assert "next" not in body["paging"]
    seen += [item["id"] for item in body["data"]]
    assert sorted(seen) == sorted({PHONE, "106540352240000", "106540352240001"})


async def test_the_messaging_limit_field_by_version(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    # doc.MESSAGING_LIMIT_DEPRECATED: the old field has no value from v24.0, the new one has.
    fields = {"fields": "messaging_limit_tier,whatsapp_business_manager_messaging_limit"}
    status, body = await graph_get(standin, PHONE, fields)
    assert status == 200
    assert "messaging_limit_tier" not in body
    assert body["whatsapp_business_manager_messaging_limit"] == "TIER_1K"
    async with aiohttp.ClientSession() as session:
        from channel_operator.graph import GraphCredentials

        proof = GraphCredentials(TOKEN, APP_SECRET).appsecret_proof
        async with session.get(
            f"{standin.url}/v23.0/{PHONE}",
            params={**fields, "appsecret_proof": proof},
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 400
            error = _assert_graph_error(await response.json(), 100)
    assert "whatsapp_business_manager_messaging_limit" in str(error["message"])

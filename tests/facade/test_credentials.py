"""Two credentials, one verdict (issue 13, item 14): every credential a request presents
must be valid and name the same key; either alone is enough, and the OpenAPI document
says so with two alternative security requirements."""

from __future__ import annotations

import httpx

from tests.facade.conftest import OTHER_INSTANCE, OWN_INSTANCE, ApiKeys, AppFactory, serving

URL = f"/v1/instances/{OWN_INSTANCE}/channels/whatsapp"
SETUP = {
    "access_token": "EAAG-access-token-0123456789abcdef",
    "app_secret": "0123456789abcdef0123456789abcdef",
    "phone_number_id": "106540352242922",
}
UNAUTHENTICATED = {"detail": "missing or invalid API key"}


def _bad_pairs(keys: ApiKeys) -> list[list[tuple[str, str]]]:
    wrong = "wrong-key-" * 4
    return [
        [("Authorization", f"Bearer {wrong}"), ("X-Api-Key", keys.admin)],
        [("Authorization", f"Bearer {keys.admin}"), ("X-Api-Key", wrong)],
        [("Authorization", f"Basic {keys.admin}"), ("X-Api-Key", keys.admin)],
        [("Authorization", "Bearer"), ("X-Api-Key", keys.admin)],
        [("Authorization", f"Bearer {keys.admin}"), ("X-Api-Key", "")],
        # Two valid keys that disagree: which one is calling?
        [("Authorization", f"Bearer {keys.tenant}"), ("X-Api-Key", keys.admin)],
        [("Authorization", f"Bearer {keys.admin}"), ("X-Api-Key", keys.tenant)],
        # A header given twice counts every time.
        [("X-Api-Key", keys.admin), ("X-Api-Key", wrong)],
        [("Authorization", f"Bearer {keys.admin}"), ("Authorization", f"Bearer {wrong}")],
    ]


async def test_an_invalid_credential_beside_a_valid_one_is_401(
    make_app: AppFactory, api_keys: ApiKeys
) -> None:
    async with serving(make_app()) as http:
        for headers in _bad_pairs(api_keys):
            for method in ("GET", "POST", "DELETE"):
                response = await http.request(method, URL, json=SETUP, headers=headers)
                assert response.status_code == 401, (method, headers)
                assert response.json() == UNAUTHENTICATED
                assert response.headers["WWW-Authenticate"] == "Bearer"
            # Also where the answer is decided before the body is understood.
            for response in (
                await http.post(URL, json={}, headers=headers),
                await http.post(
                    URL, content=b"{", headers=[*headers, ("Content-Type", "application/json")]
                ),
                await http.post(
                    URL, content=b"\x80", headers=[*headers, ("Content-Type", "application/json")]
                ),
            ):
                assert response.status_code == 401, headers
                assert response.json() == UNAUTHENTICATED


async def test_either_credential_alone_or_both_agreeing_is_enough(
    make_app: AppFactory, api_keys: ApiKeys
) -> None:
    async with serving(make_app()) as http:
        for headers in (
            [("Authorization", f"Bearer {api_keys.admin}")],
            [("X-Api-Key", api_keys.admin)],
            [("Authorization", f"Bearer {api_keys.admin}"), ("X-Api-Key", api_keys.admin)],
        ):
            assert (await http.get(URL, headers=headers)).status_code == 404, headers
        # The agreed key is the one authorized: a limited key stays limited.
        both_tenant = [
            ("Authorization", f"Bearer {api_keys.tenant}"),
            ("X-Api-Key", api_keys.tenant),
        ]
        other = f"/v1/instances/{OTHER_INSTANCE}/channels/whatsapp"
        assert (await http.get(other, headers=both_tenant)).status_code == 403
        assert (await http.get(URL, headers=both_tenant)).status_code == 404


async def test_openapi_declares_bearer_and_api_key_as_alternatives(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key as a Bearer token.",
    }
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Api-Key",
        "description": "An API key in the X-Api-Key header.",
    }
    for operation in document["paths"]["/v1/instances/{instance_id}/channels/whatsapp"].values():
        # Two requirement objects: either one satisfies the operation.
        assert operation["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}]


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.request("PUT", URL, json=SETUP)
    assert response.status_code == 405
    assert response.headers["Allow"] == "DELETE, GET, POST"

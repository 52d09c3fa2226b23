"""A key limited to some instances is refused (403) for any other before its body is looked
at: an unparseable body must not tell it that the request reached validation (issue 14)."""

from __future__ import annotations

import pytest

from tests.facade.conftest import OTHER_INSTANCE, OWN_INSTANCE, ApiKeys, AppFactory, serving
from tests.support.fake_kube import OperatedKube

URL = "/v1/instances/{}/channels/whatsapp"
NOT_YOURS = {"detail": "this API key may not manage this instance"}
UNREADABLE = [b"{", b"\x80", b"[1,", b'{"access_token": ', b"null"]


@pytest.mark.parametrize("body", UNREADABLE)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
async def test_a_limited_key_gets_403_for_another_instance_whatever_the_body(
    make_app: AppFactory,
    api_keys: ApiKeys,
    fake_kube: OperatedKube,
    body: bytes,
    content_type: str,
) -> None:
    headers = {"Content-Type": content_type}
    async with serving(make_app(), api_keys.tenant) as tenant:
        refused = await tenant.post(URL.format(OTHER_INSTANCE), content=body, headers=headers)
        assert refused.status_code == 403
        assert refused.json() == NOT_YOURS
        # The same body to its own instance does reach validation.
        own = await tenant.post(URL.format(OWN_INSTANCE), content=body, headers=headers)
        assert own.status_code in {400, 422}
    assert [call for call in fake_kube.calls if OTHER_INSTANCE in call[1]] == []


@pytest.mark.parametrize("body", UNREADABLE)
async def test_a_stranger_gets_401_whatever_the_body(make_app: AppFactory, body: bytes) -> None:
    async with serving(make_app()) as stranger:
        for key_header in ({}, {"X-Api-Key": "wrong" * 8}, {"Authorization": "Bearer " + "x" * 40}):
            refused = await stranger.post(
                URL.format(OTHER_INSTANCE),
                content=body,
                headers={"Content-Type": "application/json", **key_header},
            )
            assert refused.status_code == 401
            assert refused.headers["WWW-Authenticate"] == "Bearer"


async def test_an_invalid_instance_id_is_422_for_a_limited_key_too(
    make_app: AppFactory, api_keys: ApiKeys
) -> None:
    async with serving(make_app(), api_keys.tenant) as tenant:
        answer = await tenant.post(
            URL.format("not-a-uuid"), content=b"{", headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 422  # no instance is named, so there is nothing to refuse


async def test_the_admin_key_reaches_validation(make_app: AppFactory, api_keys: ApiKeys) -> None:
    async with serving(make_app(), api_keys.admin) as admin:
        answer = await admin.post(
            URL.format(OTHER_INSTANCE), content=b"{", headers={"Content-Type": "application/json"}
        )
    assert answer.status_code == 422


@pytest.mark.parametrize("body", [b"{", b"\x80"])
async def test_a_limited_bearer_key_gets_403_too(
    make_app: AppFactory, api_keys: ApiKeys, body: bytes
) -> None:
    async with serving(make_app()) as client:
        refused = await client.post(
            URL.format(OTHER_INSTANCE),
            content=body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {api_keys.tenant}",
            },
        )
    assert refused.status_code == 403
    assert refused.json() == NOT_YOURS


async def test_other_methods_are_405_before_any_key_is_asked_for(
    make_app: AppFactory, api_keys: ApiKeys
) -> None:
    async with serving(make_app()) as stranger, serving(make_app(), api_keys.tenant) as tenant:
        for client in (stranger, tenant):
            for method in ("PUT", "PATCH"):
                answer = await client.request(method, URL.format(OTHER_INSTANCE), content=b"{")
                assert answer.status_code == 405, (method, answer.text)

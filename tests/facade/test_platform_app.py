"""The platform's own Meta app (issue 20, item 1): with it (`WA_FACADE_PLATFORM_APP`, set by
the chart with `operator.platformApp.existingSecret`) a POST may leave out `app_secret` and
the channel holds no sealed app secret (the operator uses the platform app's); without it
nothing changes, and the OpenAPI document says which."""

from __future__ import annotations

import asyncio
import time

from whatsapp_channel.model import ChannelSpec

from tests.facade.conftest import (
    NAMESPACE,
    OTHER_INSTANCE,
    OWN_INSTANCE,
    ApiKeys,
    AppFactory,
    serving,
)
from tests.support.fake_kube import OperatedKube

URL = f"/v1/instances/{OWN_INSTANCE}/channels/whatsapp"
WITHOUT_SECRET = {
    "access_token": "EAAG-access-token-0123456789abcdef",
    "phone_number_id": "106540352242922",
}


async def test_without_a_platform_app_the_app_secret_is_required(
    make_app: AppFactory, api_keys: ApiKeys, fake_kube: OperatedKube
) -> None:
    app = make_app()
    setup = app.openapi()["components"]["schemas"]["ChannelSetup"]
    assert setup["required"] == ["app_secret", "phone_number_id"]
    async with serving(app, api_keys.admin) as http:
        response = await http.post(URL, json=WITHOUT_SECRET)
    assert response.status_code == 422
    assert response.json() == {
        "detail": [{"loc": ["body", "app_secret"], "msg": "Field required", "type": "missing"}]
    }
    assert fake_kube.channel(NAMESPACE, OWN_INSTANCE) is None


async def test_with_a_platform_app_the_app_secret_may_be_left_out(
    make_app: AppFactory, api_keys: ApiKeys, fake_kube: OperatedKube
) -> None:
    app = make_app(platform_app=True)
    setup = app.openapi()["components"]["schemas"]["ChannelSetup"]
    assert setup["required"] == ["phone_number_id"]
    async with serving(app, api_keys.admin) as http:
        response = await http.post(URL, json=WITHOUT_SECRET)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "active"
        channel = fake_kube.channel(NAMESPACE, OWN_INSTANCE)
        assert channel is not None
        sealed = ChannelSpec.model_validate(channel["spec"]).sealed
        assert sealed is not None
        assert sealed.app_secret is None
        assert "appSecret" not in channel["spec"]["sealed"]
        # A secret given is sealed as ever.
        response = await http.post(URL, json={**WITHOUT_SECRET, "app_secret": "s" * 32})
        assert response.status_code == 200, response.text
        channel = fake_kube.channel(NAMESPACE, OWN_INSTANCE)
        assert channel is not None
        assert channel["spec"]["sealed"]["appSecret"].startswith("wa1:")


async def test_a_signup_code_is_sealed_instead_of_an_access_token(
    make_app: AppFactory, api_keys: ApiKeys, fake_kube: OperatedKube
) -> None:
    """Issue 20, item 3: `signup_code` instead of `access_token`, sealed like any
    credential; both, or a null one, is the client's mistake; the document says oneOf."""
    app = make_app(platform_app=True)
    setup = app.openapi()["components"]["schemas"]["ChannelSetup"]
    assert setup["oneOf"] == [{"required": ["access_token"]}, {"required": ["signup_code"]}]
    assert setup["properties"]["signup_code"]["type"] == "string"
    code = "AQD-embedded-signup-code-0123456789"
    body = {"signup_code": code, "phone_number_id": "106540352242922", "waba_id": "102290129"}
    async with serving(app, api_keys.admin) as http:
        response = await http.post(URL, json=body)
        assert response.status_code == 200, response.text
        assert code not in response.text
        channel = fake_kube.channel(NAMESPACE, OWN_INSTANCE)
        assert channel is not None
        sealed = channel["spec"]["sealed"]
        assert set(sealed) == {"signupCode", "verifyToken"}
        assert sealed["signupCode"].startswith("wa1:")
        assert code not in str(channel)
        both = await http.post(URL, json={**body, "access_token": "EAAG-token-0123"})
        assert both.status_code == 422
        assert both.json() == {
            "detail": [
                {
                    "loc": ["body"],
                    "msg": "give access_token or signup_code, not both",
                    "type": "credentials_conflict",
                }
            ]
        }
        null = await http.post(URL, json={**body, "signup_code": None})
        assert null.status_code == 422
        assert null.json()["detail"][0]["loc"] == ["body", "signup_code"]
        assert code not in both.text + null.text


async def test_onboarding_links_are_minted_per_instance_and_expire(
    make_app: AppFactory, api_keys: ApiKeys
) -> None:
    """Issue 20, item 4: the page is off by default; on, a link is minted with an API key
    that may manage the instance, opens only that instance's page, and dies with its time."""
    mint = f"{URL}/onboarding-link"
    async with serving(make_app(), api_keys.admin) as http:
        assert (await http.post(mint)).status_code == 404
        assert (await http.get(f"/onboarding/{OWN_INSTANCE}")).status_code == 404
    app = make_app(
        platform_app=True,
        onboarding_page=True,
        platform_app_id="1234567890123456",
        signup_config_id="987654321",
        onboarding_link_seconds=0.5,
    )
    async with serving(app, api_keys.tenant) as http:
        assert (await http.post(mint.replace(OWN_INSTANCE, OTHER_INSTANCE))).status_code == 403
        minted = await http.post(mint)
        assert minted.status_code == 200, minted.text
        link = minted.json()["url"]
        page = await http.get(link, headers={"X-Api-Key": ""})
        assert page.status_code == 200
        assert "987654321" in page.text
        assert api_keys.tenant not in page.text
        assert (await http.get(link.replace(OWN_INSTANCE, OTHER_INSTANCE))).status_code == 403
        token = link.split("link=", 1)[1]
        body = {"signup_code": "code-1", "phone_number_id": "106540352242922"}
        wrong = await http.post(
            f"/onboarding/{OWN_INSTANCE}/channel", json=body, headers={"X-Onboarding-Link": "1.x"}
        )
        assert wrong.status_code == 403
        expiry = int(token.split(".")[0])
        # The link's own (wall) clock is what is tested: past its expiry, three seconds at most.
        await asyncio.sleep(max(0.0, expiry + 0.05 - time.time()))
        assert (await http.get(link)).status_code == 403

"""Issue 19, item 5: the POST asks for the number's registration with optional new fields
(`register_number`, `registration_pin`); the PIN is sealed like every credential, never
echoed, and a PIN that is not six digits is the client's 422."""

from __future__ import annotations

from tests.facade.conftest import NAMESPACE, OWN_INSTANCE, ApiKeys, AppFactory, serving
from tests.support.fake_kube import OperatedKube

URL = f"/v1/instances/{OWN_INSTANCE}/channels/whatsapp"
SETUP = {
    "access_token": "EAAG-access-token-0123456789abcdef",
    "app_secret": "0123456789abcdef0123456789abcdef",
    "phone_number_id": "106540352242922",
}
PIN = "482916"


async def test_registration_is_opt_in_and_its_pin_is_sealed(
    make_app: AppFactory, api_keys: ApiKeys, fake_kube: OperatedKube
) -> None:
    app = make_app()
    properties = app.openapi()["components"]["schemas"]["ChannelSetup"]["properties"]
    assert properties["register_number"]["default"] is False
    assert "registration_pin" not in app.openapi()["components"]["schemas"]["ChannelSetup"].get(
        "required", []
    )
    async with serving(app, api_keys.admin) as http:
        plain = await http.post(URL, json=SETUP)
        assert plain.status_code == 200, plain.text
        channel = fake_kube.channel(NAMESPACE, OWN_INSTANCE)
        assert channel is not None
        assert "registration" not in channel["spec"]  # not asked: never registered

        generated = await http.post(URL, json={**SETUP, "register_number": True})
        assert generated.status_code == 200, generated.text
        channel = fake_kube.channel(NAMESPACE, OWN_INSTANCE)
        assert channel is not None
        assert channel["spec"]["registration"] == {}  # the operator generates the PIN

        given = await http.post(URL, json={**SETUP, "registration_pin": PIN})
        assert given.status_code == 200, given.text
        assert PIN not in given.text
        channel = fake_kube.channel(NAMESPACE, OWN_INSTANCE)
        assert channel is not None
        assert channel["spec"]["registration"]["pin"].startswith("wa1:")
        assert PIN not in str(channel)

        loose = await http.post(URL, json={**SETUP, "register_number": 1})
        assert loose.status_code == 422  # a boolean, not anything truthy

        for bad in ("12345", "1234567", "12a456"):
            refused = await http.post(URL, json={**SETUP, "registration_pin": bad})
            assert refused.status_code == 422
            assert refused.json()["detail"][0]["loc"] == ["body", "registration_pin"]
            assert bad not in refused.text

"""Issue 20 on the real control plane: the operator holds the platform's own Meta app (a
mounted Secret's directory, `WA_OPERATOR_PLATFORM_APP_DIR`) and a channel without a sealed
app secret is checked, subscribed and registered with the platform app's; without the
platform app, that channel is refused with PlatformAppMissing. No secret in any log."""

from __future__ import annotations

import uuid

from channel_operator.platform_app import PlatformApp, write
from graph_standin.state import derived_app_id
from whatsapp_channel import reasons
from whatsapp_channel.kube import channels_path
from whatsapp_channel.model import (
    READY,
    ChannelSpec,
    SealedCredentials,
    channel_body,
    rest_status,
)
from whatsapp_channel.sealing import seal

from tests.operator import test_operator_meta_cluster as meta
from tests.operator.test_operator_meta_cluster import Operated, credentials, new_phone
from tests.support.processes import log_dir

# The fixtures of the issue-11 suite: a receiver, and an operator on the test's namespace.
receiver = meta.receiver
operated = meta.operated


def platform_app(values: dict[str, str]) -> PlatformApp:
    """The app the stand-in knows for a number seeded with `values`' app secret."""
    secret = values["app_secret"]
    return PlatformApp(app_id=derived_app_id(secret), app_secret=secret)


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
    directory = log_dir(operated.cluster) / f"platform-app-{uuid.uuid4().hex[:8]}"
    write(directory, platform_app(values))
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

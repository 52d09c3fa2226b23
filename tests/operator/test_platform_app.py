"""The platform's own Meta app (issue 20, item 1), without a cluster: the operator reads it
from a directory of one file per key (a mounted Secret); a channel without a sealed app
secret gets the platform app's, and without a platform app it fails with its own reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from channel_operator import platform_app
from channel_operator.desired import ChannelFailure, Credentials, open_seals
from channel_operator.platform_app import PlatformApp, PlatformAppError
from whatsapp_channel.model import SealedCredentials
from whatsapp_channel.reasons import PLATFORM_APP_MISSING
from whatsapp_channel.sealing import new_private_key, public_key_of, seal

from tests.operator.test_desired import make_ref

APP = PlatformApp(app_id="1234567890123", app_secret="platform-secret-0123456789", config_id="42")


def test_the_app_is_read_from_a_mounted_secret_and_never_printed(tmp_path: Path) -> None:
    platform_app.write(tmp_path, APP)
    assert {p.name for p in tmp_path.iterdir()} == {"app_id", "app_secret", "config_id"}
    assert platform_app.load(tmp_path) == APP
    assert APP.app_secret not in repr(APP)
    (tmp_path / "config_id").unlink()
    assert platform_app.load(tmp_path).config_id is None


@pytest.mark.parametrize(
    ("key", "value"),
    [("app_id", "not-a-number"), ("app_secret", "has space"), ("config_id", "x1")],
)
def test_a_broken_app_is_refused_by_key_never_by_value(
    tmp_path: Path, key: str, value: str
) -> None:
    platform_app.write(tmp_path, APP)
    (tmp_path / key).write_text(value)
    with pytest.raises(PlatformAppError) as caught:
        platform_app.load(tmp_path)
    assert key in str(caught.value)
    assert APP.app_secret not in str(caught.value)
    with pytest.raises(PlatformAppError):
        platform_app.load(tmp_path / "missing")


def test_a_channel_without_a_sealed_app_secret_uses_the_platform_apps() -> None:
    key_id, private = new_private_key()
    ref = make_ref()

    def sealed(field: str, value: str) -> str:
        return seal(
            public_key_of(private), namespace=ref.namespace, name=ref.name, field=field, value=value
        )

    without = SealedCredentials(
        access_token=sealed("accessToken", "EAAG-token"),
        verify_token=sealed("verifyToken", "verify-token-1"),
    )
    keys = {key_id: private}
    assert open_seals(keys, ref, without, APP.app_secret) == Credentials(
        "EAAG-token", APP.app_secret, "verify-token-1"
    )
    with pytest.raises(ChannelFailure) as caught:
        open_seals(keys, ref, without)
    assert caught.value.reason == PLATFORM_APP_MISSING
    # A sealed app secret wins over the platform app's.
    given = without.model_copy(update={"app_secret": sealed("appSecret", "own-secret")})
    assert open_seals(keys, ref, given, APP.app_secret).app_secret == "own-secret"

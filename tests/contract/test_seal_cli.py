"""`whatsapp-seal`: credentials from files, the environment or stdin, never argv; output a
channel (or its sealed block) that opens for exactly that channel."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest
import yaml
from whatsapp_channel import seal_cli
from whatsapp_channel.model import (
    ACTIVE_KEY_ID_FIELD,
    API_VERSION,
    KIND,
    PUBLIC_KEYS_FIELD,
    SEALING_PUBLIC_CONFIGMAP,
)
from whatsapp_channel.reasons import SEAL_SCOPE_MISMATCH
from whatsapp_channel.sealing import (
    PublicSealingKey,
    SealError,
    new_private_key,
    public_key_of,
    unseal,
)

VALUES = {"access_token": "EAAG-token", "app_secret": "app-secret", "verify_token": "verify-tok"}
ENV = {
    "WA_ACCESS_TOKEN": VALUES["access_token"],
    "WA_APP_SECRET": VALUES["app_secret"],
    "WA_VERIFY_TOKEN": VALUES["verify_token"],
}


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


@pytest.fixture
def keys() -> tuple[str, bytes]:
    return new_private_key()


def run(argv: list[str], *, stdin: str = "", environ: dict[str, str] | None = None) -> str:
    out = io.StringIO()
    seal_cli.run(argv, Pipe(stdin), out, environ or {})
    return out.getvalue()


def opened(
    private: dict[str, bytes], namespace: str, name: str, sealed: dict[str, str]
) -> dict[str, str]:
    return {
        secret_key: unseal(
            private, namespace=namespace, name=name, field=field, sealed=sealed[field]
        )
        for field, secret_key in (
            ("accessToken", "access_token"),
            ("appSecret", "app_secret"),
            ("verifyToken", "verify_token"),
        )
    }


def test_prints_a_channel_that_opens_for_itself_only(keys: tuple[str, bytes]) -> None:
    key_id, private = keys
    name = str(uuid.uuid4())
    argv = [
        "--public-key", public_key_of(private).b64,
        "--namespace", "tenants",
        "--instance-id", name,
        "--phone-number-id", "106540352242922",
        "--display-phone", "+61400111222",
    ]  # fmt: skip
    text = run(argv, environ=ENV)
    assert all(v not in text for v in VALUES.values())
    channel = yaml.safe_load(text)
    assert channel["apiVersion"] == API_VERSION
    assert channel["kind"] == KIND
    assert channel["metadata"] == {"name": name, "namespace": "tenants"}
    spec = channel["spec"]
    assert spec["instanceId"] == name
    assert spec["phoneNumberId"] == "106540352242922"
    assert spec["enabled"] is True
    assert opened({key_id: private}, "tenants", name, spec["sealed"]) == VALUES
    with pytest.raises(SealError) as caught:
        opened({key_id: private}, "tenants", str(uuid.uuid4()), spec["sealed"])
    assert caught.value.reason == SEAL_SCOPE_MISMATCH


def test_credentials_from_stdin_files_and_environment(
    tmp_path: Path, keys: tuple[str, bytes]
) -> None:
    key_id, private = keys
    name = str(uuid.uuid4())
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    base = ["--public-key", public_key_of(private).b64, "--instance-id", name, "--sealed-only"]
    text = run(
        [*base, "--from-file", f"access_token={token_file}", "-o", "json"],
        stdin="appSecret=from-stdin\n# comment\nverify_token=also-stdin\n",
        environ={"WA_APP_SECRET": "from-env"},
    )
    sealed = json.loads(text)["sealed"]
    assert opened({key_id: private}, "whatsapp-channels", name, sealed) == {
        "access_token": "from-a-file",
        "app_secret": "from-env",
        "verify_token": "also-stdin",
    }
    as_json = run(base, stdin=json.dumps(VALUES))
    assert (
        opened({key_id: private}, "whatsapp-channels", name, yaml.safe_load(as_json)["sealed"])
        == VALUES
    )


def test_missing_credentials_are_named(keys: tuple[str, bytes]) -> None:
    argv = ["--public-key", public_key_of(keys[1]).b64, "--instance-id", str(uuid.uuid4())]
    with pytest.raises(seal_cli.SealCliError, match="verify_token"):
        run([*argv, "--phone-number-id", "12345"], stdin="access_token=a\napp_secret=b\n")


def test_a_bad_channel_is_refused_before_it_is_printed(keys: tuple[str, bytes]) -> None:
    argv = ["--public-key", public_key_of(keys[1]).b64, "--instance-id", "Not-A-UUID"]
    with pytest.raises(seal_cli.SealCliError, match="instance_id"):
        run([*argv, "--phone-number-id", "12345"], environ=ENV)


def test_public_key_from_a_configmap_file(tmp_path: Path, keys: tuple[str, bytes]) -> None:
    key_id, private = keys
    public = public_key_of(private)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": SEALING_PUBLIC_CONFIGMAP},
        "data": {
            ACTIVE_KEY_ID_FIELD: key_id,
            PUBLIC_KEYS_FIELD: json.dumps({key_id: public.b64, "old": "AAAA"}),
        },
    }
    path = tmp_path / "cm.yaml"
    path.write_text(yaml.safe_dump(configmap))
    assert run(["--public-key", str(path), "--fetch-public-key"]).strip() == public.b64
    bare = tmp_path / "key.txt"
    bare.write_text(public.b64 + "\n")
    assert seal_cli.key_from_argument(str(bare)) == public
    with pytest.raises(seal_cli.SealCliError):
        seal_cli.key_from_argument("not base64 at all!")


def test_the_public_key_is_read_from_the_operators_keys_namespace(
    monkeypatch: pytest.MonkeyPatch, keys: tuple[str, bytes]
) -> None:
    """--keys-namespace, else $WA_KEYS_NAMESPACE, else the channel's --namespace (an
    operator whose keys share the channel namespace); --controller-namespace still works."""
    asked: list[str] = []

    async def fetch(namespace: str, kubeconfig: str | None) -> PublicSealingKey:
        asked.append(namespace)
        return public_key_of(keys[1])

    monkeypatch.setattr(seal_cli, "fetch_key", fetch)
    argv = ["--fetch-public-key", "--namespace", "tenants"]
    run(argv)
    run(argv, environ={"WA_KEYS_NAMESPACE": "wa-system"})
    run([*argv, "--keys-namespace", "ops"], environ={"WA_KEYS_NAMESPACE": "wa-system"})
    run([*argv, "--controller-namespace", "old"], environ={"WA_KEYS_NAMESPACE": "wa-system"})
    assert asked == ["tenants", "wa-system", "ops", "old"]


def test_the_channels_namespace_is_the_flag_else_the_shared_variable(
    monkeypatch: pytest.MonkeyPatch, keys: tuple[str, bytes]
) -> None:
    """--namespace, else $WA_CHANNELS_NAMESPACE (what every process reads), else the default;
    it is also where the public key is looked for without a keys namespace."""
    asked: list[str] = []

    async def fetch(namespace: str, kubeconfig: str | None) -> PublicSealingKey:
        asked.append(namespace)
        return public_key_of(keys[1])

    monkeypatch.setattr(seal_cli, "fetch_key", fetch)
    shared = {"WA_CHANNELS_NAMESPACE": "tenants"}
    run(["--fetch-public-key"])
    run(["--fetch-public-key"], environ=shared)
    run(["--fetch-public-key", "--namespace", "flagged"], environ=shared)
    assert asked == ["whatsapp-channels", "tenants", "flagged"]

"""How every process starts: one settings loader, one refusal style, one log-level type, one
variable for the channels' namespace and one for the keys namespace (older spellings still
read, with a warning)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import get_args

import pytest
from channel_api.facade.settings import FacadeSettings
from channel_api.receiver import main as receiver_main
from channel_api.receiver.settings import ReceiverSettings
from channel_operator import main as operator_main
from channel_operator.settings import KeysSettings, OperatorSettings
from localkube.cluster import write_kubeconfig
from pydantic import TypeAdapter, ValidationError
from whatsapp_channel.kube import Kube, KubeConfigError
from whatsapp_channel.settings import (
    BAD_SETTINGS,
    DEPRECATED_VARIABLES,
    LogLevel,
    load_settings,
    variable_names,
)

SETTINGS = (OperatorSettings, FacadeSettings, ReceiverSettings)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for settings_class in SETTINGS:
        for variable in variable_names(settings_class).values():
            monkeypatch.delenv(variable, raising=False)
    for old in DEPRECATED_VARIABLES:
        monkeypatch.delenv(old, raising=False)


def test_log_levels_are_one_type_in_any_case() -> None:
    level = TypeAdapter(LogLevel)
    assert level.validate_python("debug") == "DEBUG"
    assert level.validate_python("Warning") == "WARNING"
    with pytest.raises(ValidationError):
        level.validate_python("verbose")
    literal, *validators = get_args(LogLevel)
    for settings_class in SETTINGS:
        field = settings_class.model_fields["log_level"]
        assert (field.annotation, field.metadata) == (literal, validators)


def test_the_keys_namespace_is_one_variable_for_every_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WA_OPERATOR_WEBHOOK_BASE_URL", "https://hooks.example.com")
    monkeypatch.setenv("WA_FACADE_API_KEYS_FILE", str(tmp_path / "keys"))
    monkeypatch.setenv("WA_KEYS_NAMESPACE", "wa-system")
    assert OperatorSettings().sealing_namespace == "wa-system"
    assert KeysSettings().sealing_namespace == "wa-system"
    assert FacadeSettings().sealing_namespace == "wa-system"
    assert variable_names(OperatorSettings)["keys_namespace"] == "WA_KEYS_NAMESPACE"
    assert variable_names(FacadeSettings)["keys_namespace"] == "WA_KEYS_NAMESPACE"


def test_the_channels_namespace_is_one_variable_for_every_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _required_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("WA_CHANNELS_NAMESPACE", "tenants")
    for settings_class in (*SETTINGS, KeysSettings):
        assert settings_class().namespace == "tenants"
        assert variable_names(settings_class)["namespace"] == "WA_CHANNELS_NAMESPACE"
    assert KeysSettings().sealing_namespace == "tenants"  # no keys namespace: the same


def _required_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WA_OPERATOR_WEBHOOK_BASE_URL", "https://hooks.example.com")
    monkeypatch.setenv("WA_FACADE_API_KEYS_FILE", str(tmp_path / "keys"))
    monkeypatch.setenv("WA_RECEIVER_FORWARD_URL_TEMPLATE", "http://agents/{instance_id}")
    monkeypatch.setenv("WA_RECEIVER_FORWARD_SECRET_FILE", str(tmp_path / "secret"))


@pytest.mark.parametrize(
    ("settings_class", "old", "field"),
    [
        (KeysSettings, "WA_OPERATOR_KEYS_NAMESPACE", "sealing_namespace"),
        (FacadeSettings, "WA_FACADE_SEALING_KEY_NAMESPACE", "sealing_namespace"),
        (KeysSettings, "WA_OPERATOR_NAMESPACE", "namespace"),
        (FacadeSettings, "WA_FACADE_NAMESPACE", "namespace"),
        (ReceiverSettings, "WA_RECEIVER_NAMESPACE", "namespace"),
    ],
)
def test_an_old_spelling_still_works_and_says_it_is_deprecated(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    settings_class: type[KeysSettings | FacadeSettings | ReceiverSettings],
    old: str,
    field: str,
) -> None:
    _required_settings(monkeypatch, tmp_path)
    new = DEPRECATED_VARIABLES[old]
    monkeypatch.setenv(old, "old-home")
    with caplog.at_level(logging.WARNING):
        settings = load_settings(settings_class, "prog")
    assert getattr(settings, field) == "old-home"
    assert f"{old} is deprecated; set {new} instead" in caplog.text

    monkeypatch.setenv(new, "new-home")  # the new spelling wins
    assert getattr(load_settings(settings_class, "prog"), field) == "new-home"


def test_an_old_spelling_is_read_only_by_the_process_it_was_made_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _required_settings(monkeypatch, tmp_path)
    monkeypatch.setenv("WA_FACADE_NAMESPACE", "facade-only")
    with caplog.at_level(logging.WARNING):
        assert load_settings(ReceiverSettings, "prog").namespace == "whatsapp-channels"
    assert "deprecated" not in caplog.text


def test_no_warning_without_an_old_spelling(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WA_KEYS_NAMESPACE", "wa-system")
    with caplog.at_level(logging.WARNING):
        load_settings(KeysSettings, "prog")
    assert "deprecated" not in caplog.text


def test_the_operator_refuses_bad_settings_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WA_OPERATOR_LOG_LEVEL", "chatty")
    monkeypatch.setenv("WA_KEYS_NAMESPACE", "Not_A_Namespace")
    with pytest.raises(SystemExit) as stopped:
        operator_main.main([])
    assert stopped.value.code == BAD_SETTINGS
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("whatsapp-operator: bad configuration: ")
    for variable in ("WA_OPERATOR_WEBHOOK_BASE_URL", "WA_OPERATOR_LOG_LEVEL", "WA_KEYS_NAMESPACE"):
        assert variable in err


def test_the_receiver_refuses_bad_settings_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WA_RECEIVER_FORWARD_URL_TEMPLATE", "ftp://nowhere")
    monkeypatch.setenv("WA_RECEIVER_FORWARD_SECRET_FILE", str(tmp_path / "secret"))
    with pytest.raises(SystemExit) as stopped:
        receiver_main.main()
    assert stopped.value.code == BAD_SETTINGS
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("whatsapp-receiver: bad configuration: WA_RECEIVER_FORWARD_URL_TEMPLATE")

    # Valid settings, but the forward secret file does not exist: the same style.
    monkeypatch.setenv("WA_RECEIVER_FORWARD_URL_TEMPLATE", "http://agent/{instance_id}")
    with pytest.raises(SystemExit) as stopped:
        receiver_main.main()
    assert stopped.value.code == BAD_SETTINGS
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("whatsapp-receiver: cannot start: ")


def test_rotate_key_finds_the_keys_through_the_settings_class(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its default is the operator's own keys namespace; a bad one is refused like the
    operator refuses it, before any cluster access."""
    monkeypatch.setenv("WA_KEYS_NAMESPACE", "Not_A_Namespace")
    with pytest.raises(SystemExit) as stopped:
        operator_main.main(["rotate-key"])
    assert stopped.value.code == BAD_SETTINGS
    err = capsys.readouterr().err
    assert err.startswith("whatsapp-operator rotate-key: bad configuration: WA_KEYS_NAMESPACE")


def test_rotate_key_takes_the_old_namespace_flag_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    rotated: list[str] = []

    async def rotate(kube: object, namespace: str) -> str:
        rotated.append(namespace)
        return "key-id"

    monkeypatch.setattr(operator_main, "connect", lambda: None)
    monkeypatch.setattr(operator_main, "_rotate", rotate)
    monkeypatch.setenv("WA_KEYS_NAMESPACE", "wa-system")
    with caplog.at_level(logging.WARNING):
        operator_main.main(["rotate-key"])
        operator_main.main(["rotate-key", "--keys-namespace", "ops"])
        assert "deprecated" not in caplog.text
        operator_main.main(["rotate-key", "--namespace", "old"])
    assert rotated == ["wa-system", "ops", "old"]
    assert "--namespace is deprecated; use --keys-namespace" in caplog.text
    assert capsys.readouterr().out.split() == ["key-id"] * 3


def test_kube_connect_is_the_one_way_to_a_client(tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(
        tmp_path / "kubeconfig",
        server="https://127.0.0.1:6443",
        ca=None,
        user="someone",
        credentials={"token": "a-token-for-tests"},
    )
    kube = Kube.connect(str(kubeconfig), user_agent="tests", timeout=3)
    assert kube.config.server == "https://127.0.0.1:6443"
    assert kube.config.token == "a-token-for-tests"
    with pytest.raises(KubeConfigError) as refused:
        Kube.connect(str(tmp_path / "missing"), user_agent="tests")
    assert str(refused.value).startswith("no cluster credentials: ")

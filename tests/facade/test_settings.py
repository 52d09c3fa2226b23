"""Configuration: WA_FACADE_* environment variables, and a start that refuses bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest
from channel_api.facade.main import main
from channel_api.facade.settings import FacadeSettings


def test_environment_and_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WA_FACADE_API_KEYS_FILE", str(tmp_path / "keys"))
    monkeypatch.setenv("WA_FACADE_READY_WAIT_SECONDS", "2.5")
    settings = FacadeSettings()
    assert settings.api_keys_file == tmp_path / "keys"
    assert settings.ready_wait_seconds == 2.5
    assert settings.namespace == "whatsapp-channels"
    assert settings.sealing_namespace == "whatsapp-channels"
    assert settings.max_body_bytes == 65536
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    monkeypatch.setenv("WA_KEYS_NAMESPACE", "operator-home")
    assert FacadeSettings().sealing_namespace == "operator-home"


def test_start_refuses_missing_or_broken_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WA_FACADE_API_KEYS_FILE", raising=False)
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "whatsapp-facade: bad configuration: WA_FACADE_API_KEYS_FILE: Field required" in err

    keys = tmp_path / "keys"
    keys.write_text("admin tooshort\n")
    monkeypatch.setenv("WA_FACADE_API_KEYS_FILE", str(keys))
    with pytest.raises(SystemExit) as stopped:
        main()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "line 1 (admin): a key is at least 32 printable characters" in err
    assert "tooshort" not in err

    monkeypatch.setenv("WA_CHANNELS_NAMESPACE", "Not_A_Namespace")
    with pytest.raises(SystemExit):
        main()
    assert "WA_CHANNELS_NAMESPACE" in capsys.readouterr().err


def test_trusted_proxies_are_addresses_or_networks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WA_FACADE_API_KEYS_FILE", str(tmp_path / "keys"))
    assert FacadeSettings().trusted_proxies == []
    monkeypatch.setenv("WA_FACADE_TRUSTED_PROXIES", "10.0.0.0/8, 2001:db8::1")
    assert FacadeSettings().trusted_proxies == ["10.0.0.0/8", "2001:db8::1"]
    monkeypatch.setenv("WA_FACADE_TRUSTED_PROXIES", "ingress.example")
    with pytest.raises(ValueError, match=r"ingress\.example"):
        FacadeSettings()

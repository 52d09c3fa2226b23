"""Reloads of the API keys file at its edges (no cluster): a refused line does not hide the
unchanged keys listed after it, and a file emptied of keys refuses every key without
failing the request that notices it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from channel_api.facade import api_keys
from channel_api.facade.api_keys import ApiKeyFile, read_api_keys

KEY_A = "a" * 32
KEY_B = "B-" + "b" * 40


def test_a_refused_line_hides_no_key_listed_after_it() -> None:
    keys, refused = read_api_keys(f"x {KEY_A} not-a-uuid\ny {KEY_B}\n")
    assert [key.name for key in keys] == ["y"]
    assert len(refused) == 1


def test_an_unchanged_key_after_a_refused_line_is_kept_on_reload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_keys, "RECHECK_SECONDS", 0.0)
    path = tmp_path / "keys"
    path.write_text(f"y {KEY_B}\n")
    keys = ApiKeyFile(path)
    path.write_text(f"x {KEY_A} not-a-uuid\ny {KEY_B}\n")
    os.utime(path, ns=(1, 1))
    kept = keys.identify(KEY_B)
    assert kept is not None
    assert kept.name == "y"
    assert keys.identify(KEY_A) is None


def test_a_file_emptied_of_keys_refuses_every_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_keys, "RECHECK_SECONDS", 0.0)
    path = tmp_path / "keys"
    path.write_text(f"x {KEY_A}\n")
    keys = ApiKeyFile(path)
    assert keys.identify(KEY_A) is not None
    path.write_text("# every key revoked\n")
    os.utime(path, ns=(2, 2))
    assert keys.identify(KEY_A) is None

"""The API keys file: its format, its refusals, and its reload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from channel_api.facade import api_keys
from channel_api.facade.api_keys import ApiKeyFile, ApiKeysError, parse_api_keys

KEY_A = "a" * 32
KEY_B = "B-" + "b" * 40
INSTANCE = "497f6eca-6276-4993-bfeb-53cbbbba6f08"


def test_format_names_keys_and_optional_instances() -> None:
    keys = parse_api_keys(
        f"# comment\n\nplatform {KEY_A}\n  tenant-a   {KEY_B} {INSTANCE.upper()}  \n"
    )
    assert [k.name for k in keys] == ["platform", "tenant-a"]
    assert keys[0].instances is None
    assert keys[0].may_manage(INSTANCE)
    assert keys[1].instances == frozenset({INSTANCE})
    assert not keys[1].may_manage("5d0e4c6a-1b2c-4d3e-8f90-a1b2c3d4e5f6")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("", "no API keys"),
        ("# only a comment\n", "no API keys"),
        ("lonely\n", "line 1: expected"),
        (f"bad/name {KEY_A}\n", "line 1: the name"),
        ("short " + "s" * 31 + "\n", "line 1 (short): a key is at least 32"),
        (f"x {KEY_A}\ny {KEY_B} not-a-uuid\n", "line 2 (y): 'not-a-uuid' is not an instance"),
        (f"x {KEY_A}\nx {KEY_B}\n", "line 2 (x): duplicate"),
        (f"x {KEY_A}\ny {KEY_A}\n", "line 2 (y): duplicate"),
    ],
)
def test_refusals_name_the_line_never_the_key(text: str, complaint: str) -> None:
    with pytest.raises(ApiKeysError) as refused:
        parse_api_keys(text)
    assert complaint in str(refused.value)
    assert KEY_A not in str(refused.value)
    assert KEY_B not in str(refused.value)


def test_identify(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"x {KEY_A}\ny {KEY_B}\n")
    keys = ApiKeyFile(path)
    found = keys.identify(KEY_B)
    assert found is not None
    assert found.name == "y"
    assert keys.identify(KEY_A[:-1]) is None
    assert keys.identify(KEY_A + "a") is None
    assert keys.identify("") is None


def test_a_changed_file_is_read_again_and_a_broken_one_adds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api_keys, "RECHECK_SECONDS", 0.0)
    path = tmp_path / "keys"
    path.write_text(f"x {KEY_A}\n")
    keys = ApiKeyFile(path)
    assert keys.identify(KEY_A) is not None

    path.write_text(f"y {KEY_B}\n")
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse clocks
    assert keys.identify(KEY_B) is not None
    assert keys.identify(KEY_A) is None

    path.write_text("broken\n")
    os.utime(path, ns=(2, 2))
    assert keys.identify(KEY_B) is None  # the new file lists no key: none stays


def test_a_revocation_applies_even_when_another_line_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 21 item 9; fails on the code before it, which kept the whole old file (the
    revoked key included) when one line of the new one was refused."""
    monkeypatch.setattr(api_keys, "RECHECK_SECONDS", 0.0)
    key_c = "c" * 33
    path = tmp_path / "keys"
    path.write_text(f"x {KEY_A}\ny {KEY_B} {INSTANCE}\nz {key_c}\n")
    keys = ApiKeyFile(path)
    assert keys.identify(KEY_A) is not None

    # x revoked, y's scope widened by mistake, a new key with a typo in its instance id.
    new_key = "n" * 40
    path.write_text(f"y {KEY_B}\nz {key_c}\nnew {new_key} not-a-uuid\n")
    os.utime(path, ns=(3, 3))
    assert keys.identify(KEY_A) is None  # the removal applies
    assert keys.identify(KEY_B) is None  # changed: not kept in its old, narrower form either
    assert keys.identify(new_key) is None  # nothing new from a refused file
    kept = keys.identify(key_c)
    assert kept is not None
    assert kept.name == "z"

    path.write_text(f"y {KEY_B}\nz {key_c}\nnew {new_key} {INSTANCE}\n")
    os.utime(path, ns=(4, 4))
    assert keys.identify(new_key) is not None  # the corrected file counts in full
    assert keys.identify(KEY_B) is not None


def test_a_broken_file_stops_the_start(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text("nothing usable\n")
    with pytest.raises(ApiKeysError):
        ApiKeyFile(path)
    with pytest.raises(FileNotFoundError):
        ApiKeyFile(tmp_path / "missing")

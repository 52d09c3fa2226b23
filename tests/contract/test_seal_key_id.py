"""A seal's key id is read only when it is one whatsapp-seal makes (16 lowercase hex digits):
anything else is MalformedSeal, quoted escaped and cut, and never looked up."""

from __future__ import annotations

import pytest
from whatsapp_channel.sealing import SealError, new_private_key, seal_key_id


def test_a_key_id_made_by_whatsapp_seal_is_read() -> None:
    key_id, _ = new_private_key()
    assert seal_key_id(f"wa1:{key_id}:Ym94") == key_id
    assert seal_key_id("wa1:0123456789abcdef:") == "0123456789abcdef"


@pytest.mark.parametrize(
    ("key_id", "quoted"),
    [
        ("0123456789abcde", "0123456789abcde"),  # 15 digits
        ("0123456789abcdef0", "0123456789abcdef0"),  # 17 digits
        ("0123456789ABCDEF", "0123456789ABCDEF"),  # upper case
        ("0123456789abcdeg", "0123456789abcdeg"),
        ("", ""),
        ("0123456789abcdef\n", "0123456789abcdef\\x0a"),
        ("a" * 100, "a" * 64 + "...(36 more characters)"),
    ],
)
def test_any_other_key_id_is_malformed_and_quoted_escaped(key_id: str, quoted: str) -> None:
    with pytest.raises(SealError) as refused:
        seal_key_id(f"wa1:{key_id}:Ym94")
    assert refused.value.reason == "MalformedSeal"
    assert refused.value.message == f"the seal's key id {quoted} is not one whatsapp-seal makes"

"""`whatsapp_channel.untrusted.shown`: text from a resource, safe in any message."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from whatsapp_channel.reasons import INVALID_SPEC, ReasonedFailure
from whatsapp_channel.untrusted import MESSAGE_LIMIT, VALUE_LIMIT, shown


def test_newlines_and_escapes_become_visible_and_long_text_is_cut() -> None:
    assert shown("a\nb\x1b[31m\u202e") == "a\\x0ab\\x1b[31m\\u202e"
    cut = shown("k" * 8192)
    assert cut == "k" * VALUE_LIMIT + f"...({8192 - VALUE_LIMIT} more characters)"
    assert shown("printable, ünïcode too") == "printable, ünïcode too"


@given(st.text(max_size=3000), st.integers(min_value=1, max_value=200))
def test_anything_is_printable_and_bounded(text: str, limit: int) -> None:
    out = shown(text, limit)
    assert out.isprintable()
    assert len(out) <= limit + len(f"...({len(text)} more characters)")
    assert shown(out, len(out)) == out  # printable text within the limit passes unchanged


def test_every_failure_message_is_escaped_and_capped() -> None:
    failure = ReasonedFailure(INVALID_SPEC, "x\n" * 5000)
    assert "\n" not in failure.message
    assert "\n" not in str(failure)
    assert len(failure.message) < MESSAGE_LIMIT + 40

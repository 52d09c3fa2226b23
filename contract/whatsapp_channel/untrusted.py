"""Text taken from a resource, made safe to write anywhere: a status message, an Event, a
log line, an exception.

Anyone allowed to write a WhatsAppChannel or a Secret chooses such text (a seal's key id can
be 8 KiB with newlines and terminal escapes). `shown` is the one way it leaves the process:
every character that is not printable (newlines, controls, bidi overrides, ...) becomes a
visible escape, and the result is cut to a length, saying how much was left out. Text that
is already printable and short enough passes unchanged, so a message built from shown
values may be shown again (as `ReasonedFailure` does with every message).
"""

from __future__ import annotations

# A value quoted inside a message (a key id, a name, a field path).
VALUE_LIMIT = 64
# A whole message (a condition's message, an Event's, a log line's text).
MESSAGE_LIMIT = 1024


def _escaped(ch: str) -> str:
    if ch.isprintable():
        return ch
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def shown(value: object, limit: int = VALUE_LIMIT) -> str:
    """`value` as printable text of at most `limit` characters plus a short note of what was
    cut; never a newline or a control character."""
    text = value if isinstance(value, str) else str(value)
    out: list[str] = []
    used = 0
    for index, ch in enumerate(text):
        piece = _escaped(ch)
        if used + len(piece) > limit:
            return "".join(out) + f"...({len(text) - index} more characters)"
        out.append(piece)
        used += len(piece)
    return "".join(out)

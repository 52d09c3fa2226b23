"""The condition reasons: one stable CamelCase word each, and what the REST status makes of
them."""

from __future__ import annotations

import re

from whatsapp_channel import reasons
from whatsapp_channel.model import READY, rest_status, set_condition

REASONS = {name: value for name, value in vars(reasons).items() if name.isupper()}
SUCCESSES = {reasons.CHANNEL_READY, reasons.CHANNEL_DISABLED}


def test_every_reason_is_one_distinct_camel_case_word() -> None:
    assert len(set(REASONS.values())) == len(REASONS)
    assert all(re.fullmatch(r"(?:[A-Z][a-z]+)+", value) for value in REASONS.values())


def test_a_ready_false_channel_is_an_error_whatever_the_reason() -> None:
    for reason in set(REASONS.values()) - SUCCESSES:
        conditions = set_condition([], READY, ok=False, reason=reason, message="m", generation=1)
        channel = {"metadata": {"generation": 1}, "status": {"conditions": conditions}}
        assert rest_status(channel) == "error", reason

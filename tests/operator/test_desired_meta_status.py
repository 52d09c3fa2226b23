"""What `build_status` makes of Meta's answers, word for word (issue 11, no cluster): which
condition names the refusal, the Unknown states before an answer, the facts Meta filled,
and observedGeneration held back while a channel is retried."""

from __future__ import annotations

import dataclasses
from typing import Any

from channel_operator.desired import ChannelFailure, ChannelRef, MetaReport, build_status
from whatsapp_channel.model import (
    CAN_SEND_MESSAGE,
    CREDENTIALS_VALID,
    READY,
    WEBHOOK_REGISTERED,
    find_condition,
)
from whatsapp_channel.reasons import (
    CHANNEL_READY,
    CREDENTIALS_ACCEPTED,
    MESSAGING_AVAILABLE,
    MESSAGING_BLOCKED,
    META_UNAVAILABLE,
    NOT_CHECKED,
    NUMBER_REGISTERING,
    OVERRIDE_REFUSED,
    OVERRIDE_REGISTERED,
    SECRET_REF_NOT_FOUND,
    TOKEN_EXPIRED,
)

BASE = "https://hooks.example.test"
REF = ChannelRef("ns", "chan-1", "uid-1", 4)
URL = f"{BASE}/hooks/whatsapp/chan-1"


def build(current: dict[str, Any], meta: MetaReport | None, **options: Any) -> dict[str, Any]:
    options.setdefault("failure", None)
    return build_status(
        current, REF, webhook_base_url=BASE, enabled=True, meta=meta, now="t", **options
    )


def state(status: dict[str, Any], type_: str) -> tuple[str, str, str]:
    c = find_condition(status["conditions"], type_)
    assert c is not None, type_
    assert c["observedGeneration"] == REF.generation
    return (c["status"], c["reason"], c["message"])


def test_both_accepted_is_ready_with_the_url_in_its_message() -> None:
    meta = MetaReport(
        credentials=(True, CREDENTIALS_ACCEPTED, "token ok"),
        webhook=(True, OVERRIDE_REGISTERED, "override ok"),
        can_send=(True, MESSAGING_AVAILABLE, "may send"),
        facts={"verifiedName": "Acme", "checkedAt": "2026-01-01T00:00:00Z"},
    )
    status = build({}, meta)
    assert state(status, CREDENTIALS_VALID) == ("True", CREDENTIALS_ACCEPTED, "token ok")
    assert state(status, WEBHOOK_REGISTERED) == ("True", OVERRIDE_REGISTERED, "override ok")
    assert state(status, CAN_SEND_MESSAGE) == ("True", MESSAGING_AVAILABLE, "may send")
    assert state(status, READY) == (
        "True",
        CHANNEL_READY,
        f"Meta accepts the credentials and delivers events to {URL}",
    )
    assert status["verifiedName"] == "Acme"
    assert status["checkedAt"] == "2026-01-01T00:00:00Z"
    assert status["observedGeneration"] == REF.generation
    assert status["webhookUrl"] == URL


def test_the_first_refusal_names_ready_whichever_condition_it_is() -> None:
    refused_webhook = MetaReport(
        credentials=(True, CREDENTIALS_ACCEPTED, "token ok"),
        webhook=(False, OVERRIDE_REFUSED, "Meta refused the override"),
    )
    status = build({}, refused_webhook)
    assert state(status, READY) == ("False", OVERRIDE_REFUSED, "Meta refused the override")
    both = MetaReport(
        credentials=(False, TOKEN_EXPIRED, "the token expired"),
        webhook=(False, OVERRIDE_REFUSED, "Meta refused the override"),
    )
    assert state(build({}, both), READY) == ("False", TOKEN_EXPIRED, "the token expired")


def test_a_refusal_without_a_message_reads_as_an_empty_message() -> None:
    current = {
        "conditions": [
            {"type": CREDENTIALS_VALID, "status": "False", "reason": TOKEN_EXPIRED},
            {"type": WEBHOOK_REGISTERED, "status": "True", "reason": OVERRIDE_REGISTERED},
        ]
    }
    assert state(build(current, None), READY) == ("False", TOKEN_EXPIRED, "")


def test_before_any_answer_both_are_unknown_and_ready_waits() -> None:
    status = build({}, None)
    unknown = ("Unknown", NOT_CHECKED, "not asked at Meta yet")
    assert state(status, CREDENTIALS_VALID) == unknown
    assert state(status, WEBHOOK_REGISTERED) == unknown
    assert state(status, READY) == unknown
    assert find_condition(status["conditions"], CAN_SEND_MESSAGE) is None


def test_unknown_names_the_first_condition_not_true() -> None:
    meta = MetaReport(
        credentials=(True, CREDENTIALS_ACCEPTED, "token ok"),
        webhook=(None, META_UNAVAILABLE, "Graph check failed: 503"),
    )
    status = build({}, meta)
    assert state(status, READY) == ("Unknown", META_UNAVAILABLE, "Graph check failed: 503")


def test_a_condition_without_status_or_message_reads_as_not_checked() -> None:
    current = {
        "conditions": [
            {"type": CREDENTIALS_VALID, "reason": "Odd"},
            {"type": WEBHOOK_REGISTERED, "status": "True", "reason": OVERRIDE_REGISTERED},
        ]
    }
    assert state(build(current, None), READY) == ("Unknown", "Odd", "not asked at Meta yet")
    no_reason = {
        "conditions": [
            {"type": CREDENTIALS_VALID, "status": "Unknown"},
            {"type": WEBHOOK_REGISTERED, "status": "True", "reason": OVERRIDE_REGISTERED},
        ]
    }
    assert state(build(no_reason, None), READY)[:2] == ("Unknown", NOT_CHECKED)


def test_a_ready_channel_stays_ready_only_for_its_own_generation() -> None:
    accepted = MetaReport(
        credentials=(True, CREDENTIALS_ACCEPTED, "token ok"),
        webhook=(True, OVERRIDE_REGISTERED, "override ok"),
    )
    ready = build({}, accepted)
    flap = MetaReport(credentials=(None, META_UNAVAILABLE, "Graph check failed: 503"))
    flapped = build(ready, flap)
    assert state(flapped, READY) == (
        "True",
        CHANNEL_READY,
        "the channel was ready; Meta's last answer: Graph check failed: 503",
    )
    # Meta's conditions not in the report stay as they were.
    assert state(flapped, WEBHOOK_REGISTERED) == ("True", OVERRIDE_REGISTERED, "override ok")
    old = {
        **ready,
        "conditions": [
            {**c, "observedGeneration": REF.generation - 1} if c["type"] == READY else c
            for c in ready["conditions"]
        ],
    }
    assert state(build(old, flap), READY)[0] == "Unknown"
    unknown_ready = {
        **ready,
        "conditions": [
            {**c, "status": "Unknown"} if c["type"] == READY else c for c in ready["conditions"]
        ],
    }
    assert state(build(unknown_ready, flap), READY)[0] == "Unknown"


def test_a_retried_channel_keeps_observed_generation_behind() -> None:
    status = build({}, None, settled=False)
    assert "observedGeneration" not in status
    assert status["secretName"] == f"whatsapp-{REF.name}"


def test_without_a_graph_client_meta_is_left_out_of_ready() -> None:
    status = build({}, None, ask_meta=False)
    assert state(status, READY) == ("True", CHANNEL_READY, "the channel is ready")
    assert find_condition(status["conditions"], CREDENTIALS_VALID) is None
    assert find_condition(status["conditions"], WEBHOOK_REGISTERED) is None


def test_a_failed_secret_leaves_meta_unasked() -> None:
    failure = ChannelFailure(SECRET_REF_NOT_FOUND, "Secret mine does not exist")
    status = build({}, None, failure=failure)
    waits = ("Unknown", NOT_CHECKED, f"not asked at Meta: Secret whatsapp-{REF.name} waits")
    assert state(status, CREDENTIALS_VALID) == waits
    assert state(status, WEBHOOK_REGISTERED) == waits
    assert state(status, READY) == ("False", SECRET_REF_NOT_FOUND, "Secret mine does not exist")


# --- Ready means the number can send (issue 19) --------------------------------------------

ACCEPTED_BOTH = MetaReport(
    credentials=(True, CREDENTIALS_ACCEPTED, "token ok"),
    webhook=(True, OVERRIDE_REGISTERED, "override ok"),
)


def test_a_number_that_cannot_send_takes_ready_to_false_with_its_own_words() -> None:
    meta = dataclasses.replace(
        ACCEPTED_BOTH, can_send=(False, MESSAGING_BLOCKED, "Meta: BLOCKED (code 131031)")
    )
    status = build({}, meta)
    assert state(status, READY) == ("False", MESSAGING_BLOCKED, "Meta: BLOCKED (code 131031)")


def test_a_number_being_registered_keeps_ready_unknown_with_metas_words() -> None:
    meta = dataclasses.replace(
        ACCEPTED_BOTH, can_send=(None, NUMBER_REGISTERING, "Meta: status PENDING")
    )
    status = build({}, meta)
    assert state(status, READY) == ("Unknown", NUMBER_REGISTERING, "Meta: status PENDING")


def test_a_can_send_condition_without_reason_or_message_reads_as_empty() -> None:
    accepted = [
        {"type": CREDENTIALS_VALID, "status": "True", "reason": CREDENTIALS_ACCEPTED},
        {"type": WEBHOOK_REGISTERED, "status": "True", "reason": OVERRIDE_REGISTERED},
    ]
    refused = {"conditions": [*accepted, {"type": CAN_SEND_MESSAGE, "status": "False"}]}
    assert state(build(refused, None), READY) == ("False", "", "")
    registering = {
        "conditions": [
            *accepted,
            {"type": CAN_SEND_MESSAGE, "status": "Unknown", "reason": NUMBER_REGISTERING},
        ]
    }
    assert state(build(registering, None), READY) == ("Unknown", NUMBER_REGISTERING, "")

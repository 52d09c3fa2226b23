"""What the receiver may write on a channel's status (lastChallengeAt, lastEventAt: the one
thing the chart's admission policy lets it change, tests/install/test_admission.py) decides
nothing: not the status the operator writes, not whether Kopf sees a generation as handled,
not the REST status the facade answers."""

from __future__ import annotations

import uuid
from typing import Any, cast

import kopf
from channel_operator.desired import ChannelFailure, ChannelRef, build_status, status_changes
from channel_operator.startup import ObservedGeneration
from hypothesis import given
from hypothesis import strategies as st
from whatsapp_channel.model import rest_status

BASE_URL = "https://hooks.example.test"
RECEIVER_FIELDS = ("lastChallengeAt", "lastEventAt", "lastAccountEventAt")
REF = ChannelRef(namespace="ns", name=str(uuid.uuid4()), uid=str(uuid.uuid4()), generation=3)
NOW = "2026-01-01T00:00:00Z"


def statuses() -> list[dict[str, Any]]:
    """Statuses the operator leaves: none, failing at generation 3, reconciled at 2 and 3."""
    failed = build_status(
        {}, REF, webhook_base_url=BASE_URL, enabled=True,
        failure=ChannelFailure("SecretRefNotFound", "no Secret creds"), now=NOW,
    )  # fmt: skip
    done = build_status({}, REF, webhook_base_url=BASE_URL, enabled=True, failure=None, now=NOW)
    older = {**done, "observedGeneration": 2}
    return [{}, failed, done, older]


timestamps = st.one_of(st.none(), st.text(max_size=40), st.integers())


@given(challenge=timestamps, event=timestamps)
def test_the_receivers_fields_change_no_decision(challenge: object, event: object) -> None:
    for status in statuses():
        written = {**status, "lastChallengeAt": challenge, "lastEventAt": event}
        for enabled in (True, False):
            kwargs: dict[str, Any] = {"webhook_base_url": BASE_URL, "enabled": enabled, "now": NOW}
            desired = build_status(status, REF, failure=None, **kwargs)
            assert build_status(written, REF, failure=None, **kwargs) == desired
            assert not set(desired) & set(RECEIVER_FIELDS)  # never written by the operator
            assert status_changes(written, desired) == status_changes(status, desired)
        channel = {"metadata": {"generation": 3}, "spec": {"enabled": True}}
        assert rest_status({**channel, "status": written}) == rest_status(
            {**channel, "status": status}
        )
        storage = ObservedGeneration()
        assert storage.fetch(body=_body({**channel, "status": written})) == storage.fetch(
            body=_body({**channel, "status": status})
        )


def _body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))

"""What `meta.ask` and `meta.release` report when Meta only fails, or refuses (issue 23): an
outage is Unknown with Meta's text and tried again with that same reason; a refusal says the
webhook was not asked and stamps when Meta answered; a release Meta could not answer is tried
again with the outage's reason."""

from __future__ import annotations

import pytest
from channel_operator.channel_at_meta import Asked, Meta, MetaRetry, release
from channel_operator.graph import GraphClient, RetryPolicy
from graph_standin import Fault, FaultKind, GraphStandin
from graph_standin.state import PhoneNumber
from whatsapp_channel import reasons

from tests.graph.conftest import APP_SECRET, TOKEN, WABA, Callback
from tests.graph.test_channel_at_meta_asks import CREDENTIALS, asked, channel

ONCE = RetryPolicy(attempts=1, base_delay=0.001, max_delay=0.001)


@pytest.fixture
async def meta(standin: GraphStandin) -> Meta:
    return Meta(graph=GraphClient(standin.url, retry=ONCE), callback_retries=())


async def asked_once_failing(
    meta: Meta, callback: Callback, number: PhoneNumber, fault: FaultKind
) -> Asked:
    number.faults.append(Fault(kind=fault, times=1))
    ref, spec = channel(waba_id=WABA)
    return await asked(meta, callback, spec, ref)


async def test_an_outage_is_unknown_and_retried_with_metas_text(
    meta: Meta, callback: Callback, number: PhoneNumber
) -> None:
    answer = await asked_once_failing(meta, callback, number, FaultKind.SERVICE_UNAVAILABLE)
    assert answer.report.credentials is not None
    state, reason, message = answer.report.credentials
    assert (state, reason) == (None, reasons.META_UNAVAILABLE)
    assert message.startswith("Graph check failed: unavailable (code 2, HTTP 503, fbtrace_id ")
    assert message.endswith("): Service temporarily unavailable")
    assert isinstance(answer.retry, MetaRetry)
    assert (answer.retry.reason, answer.retry.message) == (reason, message)
    assert not answer.refused
    await meta.graph.close()


async def test_a_refusal_leaves_the_webhook_unasked_and_stamps_the_answer(
    meta: Meta, callback: Callback, number: PhoneNumber
) -> None:
    answer = await asked_once_failing(meta, callback, number, FaultKind.TOKEN_INVALID)
    assert answer.report.webhook == (
        None,
        reasons.NOT_CHECKED,
        "not registered: Meta refused the credentials",
    )
    assert set(answer.report.facts or {}) == {"checkedAt"}
    await meta.graph.close()


async def test_a_release_meta_could_not_answer_is_tried_again(
    meta: Meta, callback: Callback, number: PhoneNumber
) -> None:
    ref, spec = channel(waba_id=WABA)
    first = await asked(meta, callback, spec, ref)
    status = {**(first.report.facts or {}), "conditions": []}
    number.faults.append(Fault(kind=FaultKind.SERVICE_UNAVAILABLE))
    with pytest.raises(MetaRetry) as caught:
        await release(meta, ref, spec, CREDENTIALS, status)
    assert caught.value.reason == reasons.META_UNAVAILABLE
    assert caught.value.message.startswith("Graph unsubscribe failed: unavailable")
    assert TOKEN not in caught.value.message
    assert APP_SECRET not in caught.value.message
    await meta.graph.close()

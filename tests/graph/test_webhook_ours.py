"""Issue 23, two behaviours of the managed webhook that no test held (a break in either passed
every test): a lost subscription heals (Meta unsubscribed the app from the account: the
operator subscribes it again and sets the override), and only the number's own override at
our URL counts as ours (the same URL as the app's or the account's callback is not the
channel's registration: the override is set)."""

from __future__ import annotations

import pytest
from channel_operator.channel_at_meta import Meta
from channel_operator.graph import GraphClient
from graph_standin import GraphStandin
from graph_standin.state import PhoneNumber
from whatsapp_channel import reasons

from tests.graph.conftest import PHONE, WABA, Callback
from tests.graph.test_channel_at_meta_asks import asked, channel, override, subscribed


@pytest.fixture
def meta(graph: GraphClient) -> Meta:
    return Meta(graph=graph, callback_retries=())


async def test_a_lost_subscription_heals(
    meta: Meta, standin: GraphStandin, callback: Callback, number: PhoneNumber
) -> None:
    ref, spec = channel(waba_id=WABA)
    first = await asked(meta, callback, spec, ref)
    assert first.report.webhook is not None
    assert first.report.webhook[:2] == (True, reasons.OVERRIDE_REGISTERED)
    # Meta drops the app's subscription and, with it, the number's override.
    standin.world.wabas[WABA].subscribed_apps.clear()
    number.override_callback_uri = number.override_verify_token = None
    asks = [
        await asked(meta, callback, spec, ref, dict(first.report.facts or {})) for _ in range(2)
    ]
    assert subscribed(standin, WABA, number.app_id)
    assert override(standin, PHONE) == callback.url
    last = asks[-1].report.webhook
    assert last is not None
    assert last[:2] == (True, reasons.OVERRIDE_REGISTERED)


@pytest.mark.parametrize("level", ["app", "account"])
async def test_only_the_numbers_own_override_counts_as_ours(
    meta: Meta, standin: GraphStandin, callback: Callback, number: PhoneNumber, level: str
) -> None:
    ref, spec = channel(waba_id=WABA)
    # Our URL, but at the app's or the account's level: Meta delivers other numbers there
    # too, which is not this channel's registration.
    if level == "app":
        standin.world.apps[number.app_id].callback_url = callback.url
    else:
        standin.world.wabas[WABA].subscribed_apps.add(number.app_id)
        standin.world.wabas[WABA].overrides[number.app_id] = callback.url
    answer = await asked(meta, callback, spec, ref)
    assert override(standin, PHONE) == callback.url  # set at the number
    assert answer.report.webhook is not None
    assert answer.report.webhook[:2] == (True, reasons.OVERRIDE_REGISTERED)
    challenges = len(callback.challenges)
    # Once ours at the number, the next check finds it and sets nothing again.
    again = await asked(meta, callback, spec, ref, dict(answer.report.facts or {}))
    assert again.report.webhook is not None
    assert again.report.webhook[:2] == (True, reasons.OVERRIDE_REGISTERED)
    assert len(callback.challenges) == challenges

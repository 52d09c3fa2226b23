"""The stand-in refuses what Meta refuses (issue 23: a break letting a token use another
tenant's business account passed every test, and every Meta test trusts the stand-in). A
token reaches only the numbers and accounts that granted it; anything else is Meta's
"object does not exist, cannot be loaded due to missing permissions" (100/33), and nothing of
the other tenant changes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest
from channel_operator.graph import GraphClient, GraphError, GraphErrorKind
from graph_standin import GraphStandin
from graph_standin.state import PhoneNumber

from tests.graph.conftest import CREDENTIALS, OTHER_PHONE, OTHER_WABA, VERIFY_TOKEN, Callback


async def refused(call: Awaitable[object]) -> GraphError:
    assert asyncio.iscoroutine(call)
    with pytest.raises(GraphError) as caught:
        await call
    return caught.value


async def test_a_token_cannot_use_another_tenants_business_account(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber
) -> None:
    for call in (
        graph.subscribe_app(OTHER_WABA, CREDENTIALS),
        graph.unsubscribe_app(OTHER_WABA, CREDENTIALS),
        graph.subscribed_apps(OTHER_WABA, CREDENTIALS),
        graph.phone_number_ids(OTHER_WABA, CREDENTIALS),
    ):
        error = await refused(call)
        assert (error.kind, error.code, error.subcode) == (
            GraphErrorKind.ACCOUNT_NOT_FOUND,
            100,
            33,
        )
    assert standin.world.wabas[OTHER_WABA].subscribed_apps == set()


async def test_a_token_cannot_touch_another_tenants_number(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    await graph.subscribe_app(number.waba_id, CREDENTIALS)
    other = standin.world.numbers[OTHER_PHONE]
    for call in (
        graph.check_phone_number(OTHER_PHONE, CREDENTIALS),
        graph.set_webhook_override(OTHER_PHONE, CREDENTIALS, callback.url, VERIFY_TOKEN),
        graph.clear_webhook_override(OTHER_PHONE, CREDENTIALS),
        graph.register_number(OTHER_PHONE, CREDENTIALS, "123456"),
    ):
        error = await refused(call)
        assert (error.kind, error.code, error.subcode) == (
            GraphErrorKind.PHONE_NUMBER_NOT_FOUND,
            100,
            33,
        )
    assert other.override_callback_uri is None
    assert (other.registrations, other.pin) == (0, None)
    assert callback.challenges == []  # Meta never called anyone for it

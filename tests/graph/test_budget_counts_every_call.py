"""The per-account call budget counts every call made for the account (issue 23: a break
that stopped charging one kind of call passed every test): each of the client's calls about
an account's objects spends one call of it, whichever the call, and the operator's own asking
of Meta about a channel, with a budget set as the operator sets it, spends exactly the calls
Meta saw for that account."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

import pytest
from channel_operator.channel_at_meta import subscription
from channel_operator.graph import CallBudget, GraphClient, RetryPolicy, regain_seconds
from graph_standin import GraphStandin
from graph_standin.state import PhoneNumber

from tests.graph.conftest import (
    CREDENTIALS,
    FAST,
    PHONE,
    VERIFY_TOKEN,
    WABA,
    Callback,
    ask_once,
)

Step = Callable[[GraphClient, str], Awaitable[object]]

# Each call the client makes about an account's objects; `url`: the callback's URL. The
# account-level calls charge the business account by default, the number's calls the
# account the caller names (the operator always names it).
STEPS: list[tuple[str, Step]] = [
    ("subscribe", lambda g, url: g.subscribe_app(WABA, CREDENTIALS)),
    ("subscriptions", lambda g, url: g.subscribed_apps(WABA, CREDENTIALS)),
    ("check", lambda g, url: g.check_phone_number(PHONE, CREDENTIALS, account=WABA)),
    ("read-back", lambda g, url: g.webhook_configuration(PHONE, CREDENTIALS, account=WABA)),
    (
        "override",
        lambda g, url: g.set_webhook_override(PHONE, CREDENTIALS, url, VERIFY_TOKEN, account=WABA),
    ),
    ("clear", lambda g, url: g.clear_webhook_override(PHONE, CREDENTIALS, account=WABA)),
    ("numbers", lambda g, url: g.phone_number_ids(WABA, CREDENTIALS)),
    ("unsubscribe", lambda g, url: g.unsubscribe_app(WABA, CREDENTIALS)),
]


async def test_every_call_about_an_account_spends_one_call_of_its_budget(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    budget = CallBudget(limit=100)
    async with GraphClient(standin.url, retry=FAST, budget=budget) as graph:
        for what, step in STEPS:
            before, seen = budget.used(WABA), standin.calls()
            await step(graph, callback.url)
            assert standin.calls() - seen == 1, what
            assert budget.used(WABA) - before == 1, what


@pytest.mark.parametrize(("what", "step"), STEPS, ids=[what for what, _ in STEPS])
async def test_no_call_about_an_account_reaches_meta_once_its_budget_is_spent(
    standin: GraphStandin, number: PhoneNumber, callback: Callback, what: str, step: Step
) -> None:
    budget = CallBudget(limit=1)
    assert budget.try_acquire(WABA)  # the hour's only call, spent
    async with GraphClient(standin.url, retry=FAST, budget=budget) as graph:
        with pytest.raises(Exception, match="budget is used up"):
            await step(graph, callback.url)
    assert standin.calls() == 0


async def test_asking_meta_about_a_channel_spends_the_calls_meta_saw_for_its_account(
    standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    budget = CallBudget(limit=100)
    await ask_once(standin, callback.url, budget)
    account_calls = standin.calls(PHONE) + standin.calls(WABA)
    assert account_calls >= 3  # the check, the subscription, the override at least
    # Meta budgets per app and account: once the app is known, calls go to that key; the
    # first check of a channel, before its app is known, to the account alone.
    spent = budget.used(WABA) + budget.used(subscription(number.app_id, WABA))
    assert spent == account_calls


def test_the_budget_is_metas_first_tier_by_default_and_refuses_nonsense() -> None:
    budget = CallBudget()
    assert (budget.limit, budget.window) == (200, 3600.0)  # calls an hour per app and account
    for limit, window in ((0, 60.0), (1, 0.0), (1, -1.0)):
        with pytest.raises(ValueError, match=r"^a call budget needs a positive limit and window$"):
            CallBudget(limit=limit, window_seconds=window)
    assert CallBudget(limit=1, window_seconds=0.5).window == 0.5


def test_a_call_one_window_old_no_longer_counts_and_forgetting_an_account_resets_it() -> None:
    now = [0.0]
    budget = CallBudget(limit=2, window_seconds=60, active_limit=5, clock=lambda: now[0])
    budget.mark_active(WABA, True)
    assert budget.try_acquire(WABA)
    now[0] = 60.0  # exactly one window later
    assert budget.used(WABA) == 0
    assert budget.try_acquire(WABA)
    budget.forget(WABA)  # the account's channels are gone
    assert budget.used(WABA) == 0
    assert budget.limit_of(WABA) == 2  # its tier forgotten too
    budget.forget("never-seen")  # harmless


def test_retries_wait_a_random_part_of_their_ceiling() -> None:
    rng = random.Random(5)
    policy = RetryPolicy(base_delay=0.5, max_delay=30.0)
    waits = [policy.delay(0, rng) for _ in range(500)]
    assert all(0 <= w <= 0.5 for w in waits)
    assert min(waits) < 0.05  # full jitter: from zero up
    assert len(set(waits)) > 1
    assert RetryPolicy(jitter=False, base_delay=0.5).delay(3, rng) == 4.0
    assert RetryPolicy(base_delay=0, max_delay=0).delay(2, rng) == 0
    for wrong in ({"attempts": 0}, {"base_delay": -1.0}, {"max_delay": -1.0}):
        with pytest.raises(
            ValueError, match=r"^a retry policy needs at least one attempt and delays >= 0$"
        ):
            RetryPolicy(**wrong)


@pytest.mark.parametrize(
    ("usage", "seconds"),
    [
        ('{"102290129340398": [{"estimated_time_to_regain_access": 0}]}', 0.0),
        ('{"1": [{"estimated_time_to_regain_access": 2}], "2": [{"type": "x"}]}', 120.0),
        ('{"1": [{"call_count": 95}]}', None),  # percentages only: no stated time
        ("[1, 2]", None),
        ('{"1": 5}', None),
        ('{"1": [{"estimated_time_to_regain_access": "5"}]}', None),
        ('{"1": [{"estimated_time_to_regain_access": -1}]}', None),
        ("not json", None),
    ],
)
def test_metas_stated_throttle_time_is_read_and_anything_malformed_states_none(
    usage: str, seconds: float | None
) -> None:
    assert regain_seconds({"X-Business-Use-Case-Usage": usage}) == seconds

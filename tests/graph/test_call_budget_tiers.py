"""Issue 19 item 8: the per-account call budget follows Meta's tiers
(https://developers.facebook.com/docs/graph-api/overview/rate-limiting, WhatsApp Business
Management API: 200 calls an hour per app and account, 5,000 per app and active account, one
with at least one registered phone number). The operator learns which tier an account is in
from each check of one of its numbers."""

from __future__ import annotations

import pytest
from channel_operator.graph import CallBudget
from graph_standin import GraphStandin
from graph_standin.state import PhoneNumber

from tests.graph.conftest import WABA, Callback, ask_once


def test_an_active_account_gets_the_larger_budget_and_loses_it_again() -> None:
    now = [0.0]
    budget = CallBudget(limit=2, window_seconds=60, active_limit=4, clock=lambda: now[0])
    assert [budget.try_acquire("a") for _ in range(3)] == [True, True, False]
    budget.mark_active("a", True)
    assert budget.remaining("a") == 2
    assert [budget.try_acquire("a") for _ in range(3)] == [True, True, False]
    assert budget.remaining("b") == 2  # per account
    budget.mark_active("a", False)
    assert not budget.try_acquire("a")
    now[0] += 61
    assert budget.remaining("a") == 2
    # Never below the plain budget; without an active limit, one tier.
    assert CallBudget(limit=5, active_limit=3).active_limit == 5
    assert CallBudget(limit=5).active_limit == 5


@pytest.mark.parametrize(
    ("phone_status", "limit"),
    [("CONNECTED", 50), ("FLAGGED", 50), ("PENDING", 3), ("BANNED", 3)],
)
async def test_a_check_puts_the_account_in_its_tier(
    standin: GraphStandin,
    callback: Callback,
    number: PhoneNumber,
    phone_status: str,
    limit: int,
) -> None:
    number.status = phone_status
    budget = CallBudget(limit=3, active_limit=50)
    budget.mark_active(WABA, phone_status == "BANNED")  # a tier from before is corrected
    await ask_once(standin, callback.url, budget)
    assert budget.limit_of(WABA) == limit

"""Issue 19, step 1: the number's business account found the way Meta allows it (the token's
app, debug_token asked with the app token, each granted account asked for its numbers), a
given account checked the same way, and what was learned kept per token."""

from __future__ import annotations

import pytest
from channel_operator.discovery import Discovery, DiscoveryRefused
from channel_operator.graph import GraphClient, GraphCredentials, TokenInfo
from graph_standin import GraphStandin, NumberSeed
from graph_standin.state import PhoneNumber
from whatsapp_channel import reasons

from tests.graph.conftest import APP_SECRET, CREDENTIALS, PHONE, TOKEN, WABA

NEWER_WABA = "102290129345555"
NEWER_PHONE = "106540352245555"


@pytest.fixture
def two_accounts(standin: GraphStandin, number: PhoneNumber) -> PhoneNumber:
    """The token was granted a second, newer account: debug_token lists it first, and the
    channel's number is not in it."""
    standin.seed(
        NumberSeed(
            phone_number_id=NEWER_PHONE,
            waba_id=NEWER_WABA,
            access_token=TOKEN,
            app_secret=APP_SECRET,
        )
    )
    return number


async def test_the_numbers_own_account_is_found_not_the_newest(
    graph: GraphClient, standin: GraphStandin, two_accounts: PhoneNumber
) -> None:
    discovery = Discovery()
    assert await discovery.account_of(graph, CREDENTIALS, PHONE, None) == WABA
    assert standin.calls(call="app") == 1
    assert standin.calls(call="debug_token") == 1
    assert standin.calls(NEWER_WABA, "phone_numbers") == 1
    assert standin.calls(WABA, "phone_numbers") == 1
    # Per token, not per request: the same token's other number costs no Graph call.
    before = standin.calls()
    assert await discovery.account_of(graph, CREDENTIALS, NEWER_PHONE, None) == NEWER_WABA
    assert await discovery.account_of(graph, CREDENTIALS, PHONE, WABA) == WABA
    assert standin.calls() == before


async def test_a_given_account_must_hold_the_number(
    graph: GraphClient, standin: GraphStandin, two_accounts: PhoneNumber
) -> None:
    discovery = Discovery()
    assert await discovery.account_of(graph, CREDENTIALS, PHONE, WABA) == WABA
    assert standin.calls(call="debug_token") == 0  # a given account needs only its numbers
    with pytest.raises(DiscoveryRefused) as refused:
        await discovery.account_of(graph, CREDENTIALS, PHONE, NEWER_WABA)
    assert refused.value.reason == reasons.PHONE_NUMBER_NOT_IN_ACCOUNT
    assert NEWER_WABA in refused.value.message


async def test_a_number_in_no_granted_account_is_refused_and_asked_again_next_time(
    graph: GraphClient, standin: GraphStandin, two_accounts: PhoneNumber
) -> None:
    discovery = Discovery()
    missing = "106540352249999"
    with pytest.raises(DiscoveryRefused) as refused:
        await discovery.account_of(graph, CREDENTIALS, missing, None)
    assert refused.value.reason == reasons.ACCOUNT_NOT_FOUND
    # The number joins the account (say, added in WhatsApp Manager): the refusal was not kept.
    standin.seed(
        NumberSeed(phone_number_id=missing, waba_id=WABA, access_token=TOKEN, app_secret=APP_SECRET)
    )
    assert await discovery.account_of(graph, CREDENTIALS, missing, None) == WABA
    assert standin.calls(call="debug_token") == 3  # the refusal asked afresh once


async def test_a_tokens_number_added_after_the_first_lookup_is_found(
    graph: GraphClient, standin: GraphStandin, two_accounts: PhoneNumber
) -> None:
    discovery = Discovery()
    assert await discovery.account_of(graph, CREDENTIALS, PHONE, None) == WABA
    later = "106540352247777"
    standin.seed(
        NumberSeed(phone_number_id=later, waba_id=WABA, access_token=TOKEN, app_secret=APP_SECRET)
    )
    # The kept listing of the account predates the number: a miss asks Meta afresh.
    assert await discovery.account_of(graph, CREDENTIALS, later, None) == WABA
    assert await discovery.account_of(graph, CREDENTIALS, later, WABA) == WABA


async def test_a_token_without_the_whatsapp_scopes_is_permission_denied(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def management_only(credentials: object, app_id: str) -> TokenInfo:
        return TokenInfo(is_valid=True, app_id=app_id, scopes=("whatsapp_business_management",))

    monkeypatch.setattr(graph, "debug_token", management_only)
    with pytest.raises(DiscoveryRefused) as refused:
        await Discovery().token(graph, CREDENTIALS, number.app_id)
    assert refused.value.reason == reasons.PERMISSION_DENIED
    assert refused.value.message == "the token lacks the permission(s) whatsapp_business_messaging"


# --- issue 23: the rest of what the operator relies on, each against a break that passed ----


async def test_what_was_learned_is_kept_a_day_and_then_asked_again(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber
) -> None:
    now = [1000.0]
    discovery = Discovery(ttl=100.0, clock=lambda: now[0])
    assert await discovery.account_of(graph, CREDENTIALS, PHONE, None) == WABA
    asked = standin.calls()
    now[0] = 1100.0  # exactly its age limit: still kept
    assert await discovery.account_of(graph, CREDENTIALS, PHONE, None) == WABA
    assert await discovery.app_id(graph, CREDENTIALS) == number.app_id
    assert standin.calls() == asked
    now[0] = 1100.5  # older than that: Meta is asked again
    assert await discovery.account_of(graph, CREDENTIALS, PHONE, None) == WABA
    assert standin.calls(call="debug_token") == 2
    assert standin.calls(call="app") == 2


async def test_the_tokens_app_is_asked_once(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber
) -> None:
    discovery = Discovery()
    assert await discovery.app_id(graph, CREDENTIALS) == number.app_id
    assert await discovery.app_id(graph, CREDENTIALS) == number.app_id
    assert standin.calls(call="app") == 1


async def test_every_missing_scope_is_named(
    graph: GraphClient, number: PhoneNumber, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_scopes(credentials: object, app_id: str) -> TokenInfo:
        return TokenInfo(is_valid=True, app_id=app_id)

    monkeypatch.setattr(graph, "debug_token", no_scopes)
    with pytest.raises(DiscoveryRefused) as refused:
        await Discovery().token(graph, CREDENTIALS, number.app_id)
    assert refused.value.message == (
        "the token lacks the permission(s) whatsapp_business_management, "
        "whatsapp_business_messaging"
    )


async def test_an_invalid_token_is_refused_and_nothing_kept_of_it(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def invalid(credentials: object, app_id: str) -> TokenInfo:
        return TokenInfo(is_valid=False, app_id=app_id)

    discovery = Discovery()
    monkeypatch.setattr(graph, "debug_token", invalid)
    with pytest.raises(DiscoveryRefused) as refused:
        await discovery.token(graph, CREDENTIALS)
    assert refused.value.reason == reasons.TOKEN_INVALID
    assert refused.value.message == "debug_token: the token is not valid"
    assert standin.calls(call="app") == 1
    with pytest.raises(DiscoveryRefused):
        await discovery.token(graph, CREDENTIALS)
    assert standin.calls(call="app") == 2  # the app it named was forgotten with it


async def test_forgetting_one_token_keeps_what_another_taught(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber
) -> None:
    discovery = Discovery()
    assert await discovery.account_of(graph, CREDENTIALS, PHONE, None) == WABA
    asked = standin.calls()
    discovery.forget(GraphCredentials(TOKEN, "another app secret"))  # another key
    discovery.forget(GraphCredentials("EAAGanotherToken", APP_SECRET))
    assert await discovery.account_of(graph, CREDENTIALS, PHONE, None) == WABA
    assert standin.calls() == asked
    discovery.forget(CREDENTIALS)
    assert await discovery.account_of(graph, CREDENTIALS, PHONE, None) == WABA
    assert standin.calls() > asked


async def test_the_refusals_say_which_account_and_number(
    graph: GraphClient, standin: GraphStandin, two_accounts: PhoneNumber
) -> None:
    discovery = Discovery()
    with pytest.raises(DiscoveryRefused) as refused:
        await discovery.account_of(graph, CREDENTIALS, PHONE, NEWER_WABA)
    assert refused.value.message == (
        f"phone number {PHONE} is not one of business account {NEWER_WABA}'s numbers "
        "(GET /{waba_id}/phone_numbers)"
    )
    missing = "106540352249999"
    with pytest.raises(DiscoveryRefused) as refused:
        await discovery.account_of(graph, CREDENTIALS, missing, None)
    assert refused.value.message == (
        "none of the 2 business account(s) that granted the token "
        f"whatsapp_business_management holds phone number {missing}"
    )

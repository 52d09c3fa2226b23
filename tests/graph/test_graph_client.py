"""The operator's Graph client against the stand-in over real loopback HTTP: every error
class, retries and backoff with injected faults, the 2200 path with a real challenge
responder, and no secret in any log line or exception text."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import traceback

import pytest
from channel_operator.graph import (
    CHECK_FIELDS,
    CallBudget,
    CanSendMessage,
    GraphClient,
    GraphCredentials,
    GraphError,
    GraphErrorKind,
    PhoneNumberCheck,
    RetryPolicy,
    check_fields,
    classify,
    regain_seconds,
    scrub,
)
from graph_standin import Fault, FaultKind, GraphStandin, NumberSeed
from graph_standin.state import PhoneNumber

from tests.graph.conftest import (
    APP_SECRET,
    CREDENTIALS,
    FAST,
    OTHER_PHONE,
    OTHER_WABA,
    PHONE,
    TOKEN,
    VERIFY_TOKEN,
    WABA,
    Callback,
    admin,
)


async def _fails(call: object) -> GraphError:
    assert asyncio.iscoroutine(call)
    with pytest.raises(GraphError) as caught:
        await call
    return caught.value


# -- results ----------------------------------------------------------------------------


async def test_the_check_returns_typed_results(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber
) -> None:
    check = await graph.check_phone_number(PHONE, CREDENTIALS)
    assert check.id == PHONE
    assert check.verified_name == "Jasper's Market"
    assert check.display_phone_number == "+61 400 111 222"
    assert check.quality_rating == "GREEN"
    assert check.status == "CONNECTED"
    assert check.messaging_limit == "TIER_1K"  # v25.0: whatsapp_business_manager_messaging_limit
    assert check.name_status == "APPROVED"
    assert check.platform_type == "CLOUD_API"
    assert check.throughput is not None
    assert check.throughput.level == "STANDARD"
    assert check.health_status is not None
    assert check.health_status.can_send_message is CanSendMessage.AVAILABLE
    assert {e.entity_type for e in check.health_status.entities} >= {"PHONE_NUMBER", "WABA"}
    assert check.webhook_configuration is not None
    assert check.webhook_configuration.phone_number is None
    assert check.webhook_configuration.effective == standin.app_callback_url
    assert standin.calls(PHONE, "check") == 1  # one call proves token, number and secret


async def test_blocked_health_carries_metas_errors(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber
) -> None:
    await admin(standin, "PATCH", f"/numbers/{PHONE}", {"health": "BLOCKED"})
    check = await graph.check_phone_number(PHONE, CREDENTIALS)
    assert check.health_status is not None
    assert check.health_status.can_send_message is CanSendMessage.BLOCKED
    (error,) = check.health_status.errors
    assert error.error_code > 0
    assert error.error_description
    assert error.possible_solution


# -- the error classes -------------------------------------------------------------------


async def test_each_refusal_is_classified_and_never_retried(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber
) -> None:
    cases: list[tuple[str, GraphCredentials, str, GraphErrorKind]] = [
        (
            "unknown token",
            GraphCredentials("EAAGnotAtokenWeKnow000000000000", APP_SECRET),
            PHONE,
            GraphErrorKind.TOKEN_INVALID,
        ),
        (
            "wrong app secret",
            GraphCredentials(TOKEN, "another-app-secret"),
            PHONE,
            GraphErrorKind.APP_SECRET_MISMATCH,
        ),
        ("unknown number", CREDENTIALS, "999999999999", GraphErrorKind.PHONE_NUMBER_NOT_FOUND),
        (
            "another tenant's number",
            CREDENTIALS,
            OTHER_PHONE,
            GraphErrorKind.PHONE_NUMBER_NOT_FOUND,
        ),
    ]
    for what, credentials, phone, kind in cases:
        before = standin.calls()
        error = await _fails(graph.check_phone_number(phone, credentials))
        assert error.kind is kind, what
        assert error.kind.credentials_refused, what
        assert not error.transient, what
        assert (error.attempts, standin.calls() - before) == (1, 1), what

    # A field Meta does not have is a 100 that blames nothing; the check leaves it out.
    check = await graph.check_phone_number(PHONE, CREDENTIALS, fields=("id", "not_a_field"))
    assert check.id == PHONE

    await admin(standin, "PATCH", f"/numbers/{PHONE}", {"token_expired": True})
    error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS))
    assert (error.kind, error.code, error.subcode, error.http_status) == (
        GraphErrorKind.TOKEN_EXPIRED,
        190,
        463,
        401,
    )
    # A new token heals it (what re-posting only a new access_token does).
    await admin(standin, "PATCH", f"/numbers/{PHONE}", {"access_token": TOKEN + "2"})
    assert (await graph.check_phone_number(PHONE, GraphCredentials(TOKEN + "2", APP_SECRET))).id


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (FaultKind.TOKEN_INVALID, GraphErrorKind.TOKEN_INVALID),
        (FaultKind.TOKEN_EXPIRED, GraphErrorKind.TOKEN_EXPIRED),
        (FaultKind.PERMISSION_DENIED, GraphErrorKind.PERMISSION_DENIED),
    ],
)
async def test_injected_refusals_are_not_retried(
    graph: GraphClient,
    standin: GraphStandin,
    number: PhoneNumber,
    fault: FaultKind,
    kind: GraphErrorKind,
) -> None:
    number.faults.append(Fault(kind=fault))
    error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS))
    assert error.kind is kind
    assert standin.calls(PHONE, "check") == 1


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (FaultKind.UNKNOWN_ERROR, GraphErrorKind.UNAVAILABLE),
        (FaultKind.SERVICE_UNAVAILABLE, GraphErrorKind.UNAVAILABLE),
        (FaultKind.SERVER_ERROR, GraphErrorKind.UNAVAILABLE),
    ],
)
async def test_transient_failures_are_retried_then_reported(
    graph: GraphClient,
    standin: GraphStandin,
    number: PhoneNumber,
    fault: FaultKind,
    kind: GraphErrorKind,
) -> None:
    # Two failures, then an answer: the third attempt succeeds.
    number.faults.append(Fault(kind=fault, times=2))
    assert (await graph.check_phone_number(PHONE, CREDENTIALS)).id == PHONE
    assert standin.calls(PHONE, "check") == 3

    # Failing for good: reported after the policy's attempts, as transient.
    number.faults.append(Fault(kind=fault))
    error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS))
    assert error.kind is kind
    assert error.transient
    assert not error.kind.credentials_refused
    assert error.attempts == FAST.attempts
    assert standin.calls(PHONE, "check") == 3 + FAST.attempts


async def test_a_timeout_is_transient_and_retried(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    number.faults.append(Fault(kind=FaultKind.TIMEOUT, times=1))  # held until the stand-in stops
    async with GraphClient(standin.url, timeout=2.0, retry=FAST) as graph:
        assert (await graph.check_phone_number(PHONE, CREDENTIALS)).id == PHONE
        assert standin.calls(PHONE, "check") == 2
    # Held every time: each attempt times out, however loaded the machine.
    number.faults.append(Fault(kind=FaultKind.TIMEOUT))
    twice = RetryPolicy(attempts=2, base_delay=0.001)
    async with GraphClient(standin.url, timeout=0.3, retry=twice) as graph:
        error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS))
    assert (error.kind, error.attempts) == (GraphErrorKind.UNAVAILABLE, 2)
    assert "timed out" in str(error)


def closed_port_url() -> str:
    """A loopback URL nothing listens on: a port just bound and released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


async def test_a_closed_port_is_unavailable(number: PhoneNumber) -> None:
    async with GraphClient(closed_port_url(), timeout=5.0, retry=FAST) as graph:
        error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS))
    assert error.kind is GraphErrorKind.UNAVAILABLE
    assert error.attempts == FAST.attempts


async def test_backoff_grows_exponentially_up_to_its_cap(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    policy = RetryPolicy(attempts=5, base_delay=1.0, max_delay=3.0, jitter=False)
    number.faults.append(Fault(kind=FaultKind.SERVICE_UNAVAILABLE))
    async with GraphClient(standin.url, retry=policy, sleep=record) as graph:
        error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS))
    assert error.attempts == 5
    assert delays == [1.0, 2.0, 3.0, 3.0]

    jittered = RetryPolicy(attempts=5, base_delay=1.0, max_delay=3.0)
    rng = random.Random(7)
    for retry, ceiling in enumerate([1.0, 2.0, 3.0, 3.0, 3.0]):
        assert all(0 <= jittered.delay(retry, rng) <= ceiling for _ in range(50))


async def test_concurrency_is_bounded(standin: GraphStandin, number: PhoneNumber) -> None:
    number.faults.append(Fault(kind=FaultKind.SLOW, seconds=0.05))
    async with GraphClient(standin.url, max_concurrency=2, retry=FAST) as graph:
        checks = await asyncio.gather(
            *(graph.check_phone_number(PHONE, CREDENTIALS) for _ in range(8))
        )
    assert [c.id for c in checks] == [PHONE] * 8
    assert 1 <= standin.max_in_flight <= 2


async def test_the_call_budget_stops_calls_per_account(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    now = [1000.0]
    budget = CallBudget(limit=2, window_seconds=60, clock=lambda: now[0])
    async with GraphClient(standin.url, retry=FAST, budget=budget) as graph:
        await graph.check_phone_number(PHONE, CREDENTIALS, account=WABA)
        await graph.subscribe_app(WABA, CREDENTIALS)  # account calls count too
        assert budget.remaining(WABA) == 0
        error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS, account=WABA))
        assert error.kind is GraphErrorKind.BUDGET_EXHAUSTED
        assert error.transient
        assert standin.calls() == 2  # refused without calling Meta
        assert budget.remaining("another-account") == 2
        now[0] += 61
        await graph.check_phone_number(PHONE, CREDENTIALS, account=WABA)
        assert budget.used(WABA) == 1


# -- webhook registration -----------------------------------------------------------------


async def test_subscribe_override_read_back_clear_unsubscribe(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    error = await _fails(graph.set_webhook_override(PHONE, CREDENTIALS, callback.url, VERIFY_TOKEN))
    assert error.kind is GraphErrorKind.APP_NOT_SUBSCRIBED

    await graph.subscribe_app(WABA, CREDENTIALS)
    (app,) = await graph.subscribed_apps(WABA, CREDENTIALS)
    assert app.id == number.app_id
    assert app.link

    await graph.set_webhook_override(PHONE, CREDENTIALS, callback.url, VERIFY_TOKEN)
    assert callback.challenges[-1]["hub.verify_token"] == VERIFY_TOKEN
    config = await graph.webhook_configuration(PHONE, CREDENTIALS)
    assert config.phone_number == callback.url == config.effective

    await graph.clear_webhook_override(PHONE, CREDENTIALS)
    config = await graph.webhook_configuration(PHONE, CREDENTIALS)
    assert config.phone_number is None
    assert config.effective == standin.app_callback_url

    await graph.unsubscribe_app(WABA, CREDENTIALS)
    assert await graph.subscribed_apps(WABA, CREDENTIALS) == []
    error = await _fails(graph.subscribe_app("102290129340000", CREDENTIALS))
    assert error.kind is GraphErrorKind.ACCOUNT_NOT_FOUND


@pytest.mark.parametrize("answer", ["forbid", "wrong"])
async def test_a_failed_challenge_is_2200(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber, callback: Callback, answer: str
) -> None:
    await graph.subscribe_app(WABA, CREDENTIALS)
    callback.answer = answer
    error = await _fails(graph.set_webhook_override(PHONE, CREDENTIALS, callback.url, VERIFY_TOKEN))
    assert (error.kind, error.code) == (GraphErrorKind.CALLBACK_VERIFICATION_FAILED, 2200)
    assert error.attempts == 1
    assert not error.transient
    assert len(callback.challenges) == 1
    config = await graph.webhook_configuration(PHONE, CREDENTIALS)
    assert config.phone_number is None  # nothing registered

    # The receiver learns the channel: the next override passes the challenge.
    callback.answer = "echo"
    await graph.set_webhook_override(PHONE, CREDENTIALS, callback.url, VERIFY_TOKEN)
    assert (await graph.webhook_configuration(PHONE, CREDENTIALS)).phone_number == callback.url


async def test_an_overlong_override_is_refused(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber, callback: Callback
) -> None:
    await graph.subscribe_app(WABA, CREDENTIALS)
    error = await _fails(
        graph.set_webhook_override(PHONE, CREDENTIALS, callback.url + "?" + "x" * 200, "v")
    )
    assert error.kind is GraphErrorKind.OVERRIDE_REFUSED
    assert error.code == 100


# -- settings -----------------------------------------------------------------------------


def test_https_is_required_except_on_loopback() -> None:
    for url in (
        "http://graph.example.com",
        "ftp://127.0.0.1",
        "graph.facebook.com",
        "https://graph.facebook.com?x=1",
    ):
        with pytest.raises(ValueError, match="URL"):
            GraphClient(url)
    for url in (
        "https://graph.facebook.com",
        "http://127.0.0.1:8089",
        "http://[::1]:8089",
        "http://localhost:8089",
        "https://graph.example.com/prefix",
    ):
        assert GraphClient(url).base_url.host
    with pytest.raises(ValueError, match="version"):
        GraphClient(version="25.0")
    client = GraphClient(version="v26.0")
    assert client.version == "v26.0"
    assert client.base_url.host == "graph.facebook.com"


async def test_the_version_is_in_every_path(standin: GraphStandin, number: PhoneNumber) -> None:
    async with GraphClient(standin.url, version="v26.0", retry=FAST) as graph:
        assert (await graph.check_phone_number(PHONE, CREDENTIALS)).id == PHONE
    async with GraphClient(standin.url + "/nowhere", retry=FAST) as graph:
        error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS))
    assert error.code == 2500
    assert error.kind is GraphErrorKind.UNEXPECTED


def test_the_classification_follows_metas_meaning() -> None:
    assert classify("check", 401, 190, None, "") is GraphErrorKind.TOKEN_INVALID
    assert classify("check", 401, 190, 463, "") is GraphErrorKind.TOKEN_EXPIRED
    assert classify("check", 403, 10, None, "") is GraphErrorKind.PERMISSION_DENIED
    assert classify("check", 403, 200, None, "") is GraphErrorKind.ASSET_ACCESS_MISSING
    assert classify("check", 403, 299, None, "") is GraphErrorKind.PERMISSION_DENIED
    assert classify("check", 400, 100, 33, "") is GraphErrorKind.PHONE_NUMBER_NOT_FOUND
    assert classify("subscribe", 400, 100, 33, "") is GraphErrorKind.ACCOUNT_NOT_FOUND
    assert classify("check", 400, 100, None, "x") is GraphErrorKind.INVALID_REQUEST
    assert classify("check", 400, 4, None, "") is GraphErrorKind.RATE_LIMITED
    assert classify("check", 400, 80007, None, "") is GraphErrorKind.RATE_LIMITED
    assert classify("check", 500, 1, None, "") is GraphErrorKind.UNAVAILABLE
    assert classify("check", 503, 2, None, "") is GraphErrorKind.UNAVAILABLE
    assert classify("check", 502, None, None, "") is GraphErrorKind.UNAVAILABLE
    assert classify("override", 400, 2200, None, "") is GraphErrorKind.CALLBACK_VERIFICATION_FAILED
    # Issue 19: refusals by Meta's documented meaning, each its own kind, none transient.
    for code, kind in (
        (0, GraphErrorKind.TOKEN_INVALID),
        (3, GraphErrorKind.CAPABILITY_MISSING),
        (368, GraphErrorKind.POLICY_BLOCKED),
        (131031, GraphErrorKind.ACCOUNT_LOCKED),
    ):
        assert classify("check", 403, code, None, "") is kind
        assert kind.credentials_refused
        assert not kind.transient
    waba_as_number = (
        "(#100) Tried accessing nonexisting field (status) on node type (WhatsAppBusinessAccount)"
    )
    assert classify("check", 400, 100, None, waba_as_number) is GraphErrorKind.WRONG_OBJECT_TYPE
    assert GraphErrorKind.INVALID_REQUEST.credentials_refused
    assert classify("check", 429, None, None, "") is GraphErrorKind.RATE_LIMITED
    assert classify("check", 404, None, None, "") is GraphErrorKind.UNEXPECTED
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy(attempts=0)


# -- secrets --------------------------------------------------------------------------------


async def test_no_secret_in_logs_or_exceptions(
    standin: GraphStandin, number: PhoneNumber, callback: Callback, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    unknown = GraphCredentials("EAAGsecretButUnknownToken0123456789", "unknown-app-secret-9876")
    secrets = {
        TOKEN,
        APP_SECRET,
        CREDENTIALS.appsecret_proof,
        VERIFY_TOKEN,
        unknown.access_token,
        unknown.app_secret,
        unknown.appsecret_proof,
    }
    errors: list[GraphError] = []
    once = RetryPolicy(attempts=1)
    async with (
        GraphClient(standin.url, timeout=10.0, retry=once) as graph,
        GraphClient(standin.url, timeout=0.3, retry=once) as impatient,
    ):
        # Meta echoes a malformed token in its message: it must come out scrubbed.
        errors.append(await _fails(graph.check_phone_number(PHONE, unknown)))
        assert "[redacted]" in errors[-1].message
        errors.append(await _fails(graph.check_phone_number(PHONE, GraphCredentials(TOKEN, "x"))))
        errors.append(
            await _fails(graph.set_webhook_override(PHONE, CREDENTIALS, callback.url, VERIFY_TOKEN))
        )
        await graph.subscribe_app(WABA, CREDENTIALS)
        callback.answer = "forbid"
        errors.append(
            await _fails(graph.set_webhook_override(PHONE, CREDENTIALS, callback.url, VERIFY_TOKEN))
        )
        number.faults.append(Fault(kind=FaultKind.TIMEOUT, times=1))
        errors.append(await _fails(impatient.check_phone_number(PHONE, CREDENTIALS)))
        for kind in (FaultKind.SERVER_ERROR, FaultKind.TOKEN_EXPIRED):
            number.faults.append(Fault(kind=kind, times=1))
            errors.append(await _fails(graph.check_phone_number(PHONE, CREDENTIALS)))
        await admin(standin, "PATCH", f"/numbers/{PHONE}", {"token_expired": True})
        errors.append(await _fails(graph.check_phone_number(PHONE, CREDENTIALS)))
        assert repr(graph)
        assert repr(CREDENTIALS) == "GraphCredentials()"
    async with GraphClient(closed_port_url(), retry=FAST) as closed:
        errors.append(await _fails(closed.check_phone_number(PHONE, CREDENTIALS)))
    assert len({e.kind for e in errors}) >= 6
    texts = [caplog.text] + [
        text
        for error in errors
        for text in (
            str(error),
            repr(error),
            error.message,
            "".join(traceback.format_exception(error)),
        )
    ]
    assert caplog.text  # DEBUG lines were written
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_scrub_removes_secrets_and_token_like_text() -> None:
    text = (
        f"Malformed access token {TOKEN} at https://x/?access_token=abc&appsecret_proof=def "
        "and EAAJiSomeOtherLongTokenValue123456789"
    )
    clean = scrub(text, [TOKEN])
    assert TOKEN not in clean
    assert "abc" not in clean
    assert "def" not in clean
    assert "EAAJiSomeOther" not in clean


def test_the_check_asks_for_what_the_status_needs_by_version() -> None:
    assert {
        "health_status",
        "webhook_configuration",
        "verified_name",
        "quality_rating",
        "status",
        "name_status",
        "throughput",
        "platform_type",
        "whatsapp_business_manager_messaging_limit",
    } <= set(CHECK_FIELDS)
    assert "messaging_limit_tier" not in CHECK_FIELDS
    assert "messaging_limit_tier" in check_fields("v23.0")
    assert "whatsapp_business_manager_messaging_limit" not in check_fields("v23.0")
    # v24.0 itself is the first version whose old field has no value.
    assert "whatsapp_business_manager_messaging_limit" in check_fields("v24.0")
    assert "messaging_limit_tier" not in check_fields("v24.0")


async def test_an_older_version_reads_the_limit_from_its_own_field(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    async with GraphClient(standin.url, "v23.0", retry=FAST) as old:
        check = await old.check_phone_number(PHONE, CREDENTIALS)
    assert check.messaging_limit == "TIER_1K"
    assert check.messaging_limit_tier == "TIER_1K"


async def test_a_field_the_version_lacks_degrades_that_fact_only(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    async with GraphClient(standin.url, "v23.0", retry=FAST) as old:
        fields = check_fields("v25.0")  # a field v23.0 does not have
        check = await old.check_phone_number(PHONE, CREDENTIALS, fields=fields)
        assert check.messaging_limit is None
        assert check.verified_name == "Jasper's Market"
        assert check.health_status is not None
        calls = standin.calls(PHONE, "check")
        await old.check_phone_number(PHONE, CREDENTIALS, fields=fields)
        assert standin.calls(PHONE, "check") == calls + 1  # not asked again


def test_an_unknown_enum_value_degrades_that_fact_only() -> None:
    check = PhoneNumberCheck.model_validate(
        {
            "id": PHONE,
            "verified_name": "Jasper's Market",
            "health_status": {"can_send_message": "SOMETIMES", "entities": []},
            "throughput": {"level": {"new": "shape"}},
            "whatsapp_business_manager_messaging_limit": {"current_limit": "TIER_2K"},
        }
    )
    assert check.health_status is None
    assert check.throughput is None
    assert check.verified_name == "Jasper's Market"
    assert check.messaging_limit == "TIER_2K"


async def test_the_standins_account_budget_answers_80007() -> None:
    now = [0.0]
    limited = GraphStandin(account_call_limit=2, account_call_window=60, clock=lambda: now[0])
    limited.seed(
        NumberSeed(phone_number_id=PHONE, waba_id=WABA, access_token=TOKEN, app_secret=APP_SECRET)
    )
    await limited.start()
    outcomes: list[tuple[str, str]] = []
    try:
        async with GraphClient(
            limited.url,
            retry=FAST,
            observe=lambda call, outcome: outcomes.append((call, outcome)),
            clock=lambda: now[0],
        ) as graph:
            await graph.check_phone_number(PHONE, CREDENTIALS, account=WABA)
            await graph.subscribe_app(WABA, CREDENTIALS)
            error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS, account=WABA))
            assert (error.kind, error.code) == (GraphErrorKind.RATE_LIMITED, 80007)
            assert error.retry_after == 60.0  # Meta's estimated_time_to_regain_access: 1 min
            # Within Meta's window: not asked at all (never a retry of 80007 in it).
            now[0] += 30
            error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS, account=WABA))
            assert error.kind is GraphErrorKind.RATE_LIMITED
            assert limited.calls(PHONE, "check") == 2
            now[0] += 31
            await graph.check_phone_number(PHONE, CREDENTIALS, account=WABA)
    finally:
        await limited.stop()
    assert outcomes == [
        ("check", "ok"),
        ("subscribe", "ok"),
        ("check", "rate_limited"),  # one attempt: Meta stated a window
        ("check", "rate_limited"),  # refused here, within it
        ("check", "ok"),
    ]


async def test_app_wide_rate_limit_without_a_stated_window_waits_the_default(
    standin: GraphStandin, number: PhoneNumber
) -> None:
    now = [0.0]
    async with GraphClient(
        standin.url, retry=FAST, clock=lambda: now[0], throttle_seconds=60
    ) as graph:
        number.faults.append(Fault(kind=FaultKind.APP_RATE_LIMITED, times=1))
        error = await _fails(graph.check_phone_number(PHONE, CREDENTIALS, account=WABA))
        assert (error.kind, error.code, error.attempts) == (GraphErrorKind.RATE_LIMITED, 4, 1)
        # Code 4 throttles the whole app: another account's call waits too.
        await _fails(graph.subscribed_apps(OTHER_WABA, CREDENTIALS))
        assert standin.calls() == 1
        now[0] += 61
        assert (await graph.check_phone_number(PHONE, CREDENTIALS, account=WABA)).id == PHONE


def test_the_usage_header_gives_metas_window() -> None:
    usage = '{"102290129340398": [{"type": "whatsapp_business_management", "call_count": 100,'
    usage += ' "total_cputime": 3, "total_time": 4, "estimated_time_to_regain_access": 5}]}'
    assert regain_seconds({"X-Business-Use-Case-Usage": usage}) == 300.0
    assert regain_seconds({"X-Business-Use-Case-Usage": "not json"}) is None
    assert regain_seconds({}) is None


async def test_the_token_app_then_debug_token_asked_with_the_app_token(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber
) -> None:
    app = await graph.token_app(CREDENTIALS)
    assert app.id == number.app_id
    info = await graph.debug_token(CREDENTIALS, app.id)
    assert info.is_valid
    assert info.waba_ids == (WABA,)
    assert info.app_id == number.app_id
    assert info.missing_scopes == ()
    wrong = GraphCredentials(TOKEN, "wrong-secret")
    error = await _fails(graph.token_app(wrong))
    assert error.kind is GraphErrorKind.APP_SECRET_MISMATCH
    # The app token `{app-id}|{wrong secret}` is no app's token; no secret in the text.
    error = await _fails(graph.debug_token(wrong, app.id))
    assert error.kind is GraphErrorKind.TOKEN_INVALID
    assert "wrong-secret" not in str(error)
    assert TOKEN not in str(error)


async def test_phone_number_ids_reads_every_page(
    graph: GraphClient, standin: GraphStandin, number: PhoneNumber
) -> None:
    many = {f"1065403522{index:05d}" for index in range(130)}
    for phone in many:
        standin.seed(
            NumberSeed(
                phone_number_id=phone, waba_id=WABA, access_token=TOKEN, app_secret=APP_SECRET
            )
        )
    assert await graph.phone_number_ids(WABA, CREDENTIALS) == {PHONE, *many}
    assert standin.calls(WABA, "phone_numbers") == 2  # 100 a page, Meta's maximum


def test_plain_http_off_loopback_only_to_the_one_named_test_host() -> None:
    named = GraphClient("http://10.213.0.1:8089", plain_http_host="10.213.0.1")
    assert named.base_url.host == "10.213.0.1"
    for url in ("http://10.213.0.5:8089", "http://graph.example.com"):
        with pytest.raises(ValueError, match="https"):
            GraphClient(url, plain_http_host="10.213.0.1")

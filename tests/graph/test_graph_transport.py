"""The Graph transport against a Meta that answers exactly as scripted (issue 23): what the
operator sends for each call, what each kind of answer means (an error's call, kind, text and
trace id; a write that did not answer success; a shape Meta never documented), and the
throttle, budget and secrets rules that the stand-in's well-formed answers never reach."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from channel_operator.graph import (
    CallBudget,
    GraphClient,
    GraphCredentials,
    GraphError,
    GraphErrorKind,
    GraphInputError,
    RetryPolicy,
)

from tests.graph.conftest import PHONE, WABA

APP = "1234567890"
# Not token-like (no EA prefix): only the client's own list of secrets can scrub them.
TOKEN = "plain-access-token-4f1c"
SECRET = "plain-app-secret-9d2e"
CREDENTIALS = GraphCredentials(TOKEN, SECRET)
ONCE = RetryPolicy(attempts=1, base_delay=0.001, max_delay=0.001)
THRICE = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001)
SUCCESS = {"success": True}


@dataclass
class Answer:
    status: int = 200
    body: Any = field(default_factory=lambda: SUCCESS)  # bytes: sent as they are
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Asked:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedMeta:
    """A Graph endpoint that answers each request with the next scripted answer."""

    answers: list[Answer] = field(default_factory=list)
    asked: list[Asked] = field(default_factory=list)
    url: str = ""
    stall: bool = False  # answer nothing until the test ends
    hang: asyncio.Event = field(default_factory=asyncio.Event)

    def script(self, *answers: Answer) -> None:
        self.answers[:] = answers

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.asked.append(
            Asked(
                request.method,
                request.path,
                dict(request.query),
                dict(request.headers),
                await request.read(),
            )
        )
        if request.path.endswith("/elsewhere"):
            return web.json_response(SUCCESS)
        if self.stall:
            await self.hang.wait()
        answer = self.answers.pop(0) if self.answers else Answer()
        raw = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body).encode()
        return web.Response(status=answer.status, body=raw, headers=answer.headers)


@pytest.fixture
async def meta() -> AsyncIterator[ScriptedMeta]:
    scripted = ScriptedMeta()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", scripted.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    scripted.url = f"http://127.0.0.1:{port}"
    yield scripted
    scripted.hang.set()
    await runner.cleanup()


def graph_error(code: object, message: str = "refused", **more: object) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, **more}}


async def fails(call: Awaitable[object]) -> GraphError:
    with pytest.raises(GraphError) as caught:
        await call
    return caught.value


Calls = dict[str, Callable[[GraphClient], Awaitable[object]]]
WRITES: Calls = {
    "subscribe": lambda g: g.subscribe_app(WABA, CREDENTIALS),
    "unsubscribe": lambda g: g.unsubscribe_app(WABA, CREDENTIALS),
    "override": lambda g: g.set_webhook_override(PHONE, CREDENTIALS, "https://x.test/w", "vt"),
    "register": lambda g: g.register_number(PHONE, CREDENTIALS, "123456"),
}
CLEAR: Calls = {"override": lambda g: g.clear_webhook_override(PHONE, CREDENTIALS)}
READS: Calls = {
    "check": lambda g: g.check_phone_number(PHONE, CREDENTIALS),
    "subscriptions": lambda g: g.subscribed_apps(WABA, CREDENTIALS),
    "app": lambda g: g.token_app(CREDENTIALS),
    "debug_token": lambda g: g.debug_token(CREDENTIALS, APP),
    "phone_numbers": lambda g: g.phone_number_ids(WABA, CREDENTIALS),
    "exchange": lambda g: g.exchange_code(APP, SECRET, "signup-code-1"),
}


@pytest.mark.parametrize(
    ("name", "write"), [*WRITES.items(), *CLEAR.items()], ids=[*WRITES, "clear"]
)
async def test_a_write_happened_only_when_meta_answered_success(
    meta: ScriptedMeta, name: str, write: Callable[[GraphClient], Awaitable[object]]
) -> None:
    async with GraphClient(meta.url, retry=ONCE) as graph:
        meta.script(Answer(body=SUCCESS))
        await write(graph)
        assert meta.asked[-1].method == ("DELETE" if name == "unsubscribe" else "POST")
        for body in ({"success": False}, {}, b""):
            meta.script(Answer(body=body))
            error = await fails(write(graph))
            assert str(error) == (
                f'Graph {name} failed: unexpected: the answer is not {{"success": true}}'
            )
        meta.script(Answer(400, graph_error(190)))
        assert (await fails(write(graph))).call == name


@pytest.mark.parametrize(("name", "read"), READS.items(), ids=list(READS))
async def test_an_answer_of_another_shape_names_the_call_and_the_field(
    meta: ScriptedMeta, name: str, read: Callable[[GraphClient], Awaitable[object]]
) -> None:
    wrong: dict[str, Any] = {
        "check": {"id": 5},
        "subscriptions": {"data": [{"name": "no id"}]},
        "app": {"name": "no id"},
        "debug_token": {"data": {"app_id": APP}},
        "exchange": {"token_type": "bearer"},
    }
    async with GraphClient(meta.url, retry=ONCE) as graph:
        meta.script(Answer(400, graph_error(190)))
        assert (await fails(read(graph))).call == name
        if name == "phone_numbers":
            return  # reads ids only; anything else in the answer is passed over
        meta.script(Answer(body=wrong[name]))
        error = await fails(read(graph))
        field_name = "is_valid" if name == "debug_token" else "access_token"
        field_name = {"check": "id", "subscriptions": "id", "app": "id"}.get(name, field_name)
        assert (
            str(error)
            == f"Graph {name} failed: unexpected: unexpected answer shape at {field_name}"
        )


async def test_the_shape_error_lists_every_field_path_and_no_secret(meta: ScriptedMeta) -> None:
    async with GraphClient(meta.url, retry=ONCE) as graph:
        meta.script(Answer(body={"data": {"granular_scopes": [{"target_ids": []}]}}))
        error = await fails(graph.debug_token(CREDENTIALS, APP))
        assert error.message == "unexpected answer shape at granular_scopes.0.scope, is_valid"
        # A code Meta sent back is scrubbed from what the operator reports.
        meta.script(Answer(body={"token_type": "signup-code-1"}))
        error = await fails(graph.exchange_code(APP, SECRET, "signup-code-1"))
        assert error.message == "unexpected answer shape at access_token"


async def test_what_each_call_sends(meta: ScriptedMeta) -> None:
    async with GraphClient(meta.url) as graph:
        meta.script(Answer(body={"id": APP, "name": "shop"}))
        assert (await graph.token_app(CREDENTIALS)).id == APP
        meta.script(Answer(body={"id": PHONE}))
        assert (await graph.webhook_configuration(PHONE, CREDENTIALS)).phone_number is None
        meta.script(Answer(body={"data": None}))
        assert await graph.phone_number_ids(WABA, CREDENTIALS) == frozenset()
    app, webhook, numbers = meta.asked
    proof = CREDENTIALS.appsecret_proof
    assert (app.method, app.path) == ("GET", "/v25.0/app")
    assert app.query == {"fields": "id,name", "appsecret_proof": proof}
    assert app.headers["Authorization"] == f"Bearer {TOKEN}"
    assert webhook.query == {"fields": "webhook_configuration", "appsecret_proof": proof}
    assert numbers.query == {"fields": "id", "limit": "100", "appsecret_proof": proof}


async def test_odd_pages_and_items_are_passed_over(meta: ScriptedMeta) -> None:
    async with GraphClient(meta.url) as graph:
        for page in (
            {"data": [{"name": "no id"}, "text", {"id": PHONE}], "paging": None},
            {"data": [{"id": PHONE}], "paging": {"next": "n", "cursors": None}},
            {"data": {"id": PHONE}, "paging": {"next": "n", "cursors": {"after": 5}}},
        ):
            meta.script(Answer(body=page))
            expected = frozenset() if isinstance(page["data"], dict) else {PHONE}
            assert await graph.phone_number_ids(WABA, CREDENTIALS) == expected
        meta.script(Answer(body={"data": None}))
        assert await graph.subscribed_apps(WABA, CREDENTIALS) == []
        meta.script(
            Answer(
                body={
                    "data": [
                        "text",
                        {
                            "whatsapp_business_api_data": {"id": APP, "name": "shop"},
                            "override_callback_uri": "https://x.test/account",
                        },
                    ]
                }
            )
        )
        (app,) = await graph.subscribed_apps(WABA, CREDENTIALS)
        assert (app.id, app.override_callback_uri) == (APP, "https://x.test/account")
        meta.script(Answer(body={"data": ["not an object"]}))
        with pytest.raises(GraphError, match="shape at is_valid"):
            await graph.debug_token(CREDENTIALS, APP)


async def test_metas_error_fields_are_kept_scrubbed_and_capped(meta: ScriptedMeta) -> None:
    trace = "A" * 70
    async with GraphClient(meta.url, retry=ONCE) as graph:
        meta.script(Answer(400, graph_error(190, f"bad {TOKEN}", fbtrace_id=trace)))
        error = await fails(graph.check_phone_number(PHONE, CREDENTIALS))
        assert (error.code, error.http_status, error.fbtrace_id) == (190, 400, "A" * 64)
        assert error.message == "bad [redacted]"
        meta.script(Answer(400, graph_error(190, fbtrace_id=f"T{SECRET}")))
        assert (await fails(graph.check_phone_number(PHONE, CREDENTIALS))).fbtrace_id == (
            "T[redacted]"
        )
        meta.script(Answer(400, graph_error("190", fbtrace_id=7, error_subcode="463")))
        error = await fails(graph.check_phone_number(PHONE, CREDENTIALS))
        assert (error.code, error.subcode, error.fbtrace_id) == (None, None, None)
        assert error.kind is GraphErrorKind.UNEXPECTED
        # Meta echoing what the call carried: each is a secret of that call.
        for call, echoed in (
            (lambda: graph.debug_token(CREDENTIALS, APP), TOKEN),
            (lambda: graph.exchange_code(APP, SECRET, "signup-code-1"), "signup-code-1"),
            (lambda: graph.register_number(PHONE, CREDENTIALS, "654321"), "654321"),
            (
                lambda: graph.set_webhook_override(PHONE, CREDENTIALS, "https://x.test", "vt-7q"),
                "vt-7q",
            ),
        ):
            meta.script(Answer(400, graph_error(100, f"you sent {echoed}")))
            error = await fails(call())
            assert error.message == "you sent [redacted]", call


async def test_what_is_not_a_graph_success(meta: ScriptedMeta) -> None:
    async with GraphClient(meta.url, retry=ONCE) as graph:
        for status in (300, 500):
            meta.script(Answer(status, SUCCESS))
            error = await fails(graph.subscribe_app(WABA, CREDENTIALS))
            assert error.http_status == status
            assert str(error) == (
                f"Graph subscribe failed: {error.kind.value} (HTTP {status}): "
                "an answer that is not a Graph error"
            )
        meta.script(Answer(200, {"success": True, **graph_error(190)}))
        assert (await fails(graph.subscribe_app(WABA, CREDENTIALS))).kind is (
            GraphErrorKind.TOKEN_INVALID
        )
        # A redirect is an answer, never followed (it would carry the token elsewhere).
        meta.script(Answer(302, b"", {"Location": f"{meta.url}/v25.0/elsewhere"}))
        error = await fails(graph.subscribe_app(WABA, CREDENTIALS))
        assert error.http_status == 302
        assert [a.path for a in meta.asked][-1] == f"/v25.0/{WABA}/subscribed_apps"


async def test_timeouts_and_refused_connections_read_as_unavailable(meta: ScriptedMeta) -> None:
    meta.stall = True
    async with GraphClient(meta.url, retry=ONCE, timeout=0.2) as graph:
        error = await fails(graph.check_phone_number(PHONE, CREDENTIALS))
        assert str(error) == "Graph check failed: unavailable: timed out"
    async with GraphClient("http://127.0.0.1:9", retry=ONCE) as graph:
        error = await fails(graph.check_phone_number(PHONE, CREDENTIALS))
        assert str(error) == (
            "Graph check failed: unavailable: connection failed (ClientConnectorError)"
        )


async def test_a_field_is_dropped_only_when_meta_says_the_phone_has_no_such_field(
    meta: ScriptedMeta,
) -> None:
    def missing(name: str, code: int = 100) -> Answer:
        return Answer(
            400,
            graph_error(
                code,
                f"(#100) Tried accessing nonexisting field ({name}) on node type "
                "(WhatsAppBusinessPhoneNumber)",
            ),
        )

    async with GraphClient(meta.url, retry=ONCE) as graph:
        for answer in (missing("status", 190), missing("id"), missing("quality_rating")):
            meta.script(answer)
            await fails(graph.check_phone_number(PHONE, CREDENTIALS, fields=("id", "status")))
        meta.script(missing("status"), Answer(body={"id": PHONE}))
        check = await graph.check_phone_number(PHONE, CREDENTIALS, fields=("id", "status"))
        assert check.id == PHONE
        assert meta.asked[-1].query["fields"] == "id"


async def test_the_budget_and_the_throttle_refusals_say_why(meta: ScriptedMeta) -> None:
    now = [1000.0]
    seen: list[tuple[str, str]] = []
    budget = CallBudget(limit=2, window_seconds=3600, clock=lambda: now[0])
    async with GraphClient(
        meta.url,
        retry=THRICE,
        budget=budget,
        clock=lambda: now[0],
        throttle_seconds=5,
        observe=lambda call, outcome: seen.append((call, outcome)),
    ) as graph:
        # Every attempt spends one call: the third attempt finds the budget used up.
        meta.script(*[Answer(503, graph_error(2))] * 2)
        error = await fails(graph.subscribe_app(WABA, CREDENTIALS))
        assert str(error) == (
            "Graph subscribe failed: budget_exhausted after 3 attempts: "
            "the account's Graph call budget is used up for now"
        )
        assert seen[-2:] == [("subscribe", "unavailable"), ("subscribe", "budget_exhausted")]
        # Meta's window for one account (80007, its usage header) holds that account only,
        # for as long as Meta said, not the client's default.
        usage = {WABA: [{"type": "x", "estimated_time_to_regain_access": 1}]}
        meta.script(
            Answer(400, graph_error(80007), {"X-Business-Use-Case-Usage": json.dumps(usage)})
        )
        other = "102290129340999"
        error = await fails(graph.subscribe_app(other, CREDENTIALS))
        assert error.retry_after == 60.0
        await graph.subscribed_apps("102290129340777", CREDENTIALS)
        now[0] += 30
        error = await fails(graph.subscribe_app(other, CREDENTIALS))
        assert error.retry_after == 30.0
        assert str(error) == (
            "Graph subscribe failed: rate_limited: Meta's rate limit: no call for 30s more "
            "(estimated_time_to_regain_access)"
        )
        now[0] += 30  # exactly at the end of the window: asked again
        await graph.subscribe_app(other, CREDENTIALS)


def test_the_clients_settings_and_their_refusals() -> None:
    graph = GraphClient("https://graph.facebook.com")
    assert (graph.timeout, graph._slots._value) == (10.0, 16)
    assert repr(graph) == "GraphClient('https://graph.facebook.com', 'v25.0')"
    for url, text in (
        ("ftp://graph.facebook.com", "the Graph base URL must be an absolute http(s) URL"),
        (
            "http://graph.example.com",
            "the Graph base URL must be https (http only for a loopback stand-in)",
        ),
        ("https://graph.facebook.com?x=1", "the Graph base URL takes no query or fragment"),
    ):
        with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
            GraphClient(url)
    positive = "the timeout and the concurrency must be positive"
    for settings in ({"timeout": 0.0}, {"max_concurrency": 0}):
        with pytest.raises(ValueError, match=f"^{positive}$"):
            GraphClient(**settings)
    assert GraphClient(max_concurrency=1, timeout=0.01)._slots._value == 1


async def test_the_proxy_environment_applies_only_when_asked() -> None:
    for asked in (False, True):
        async with GraphClient(trust_env=asked) as graph:
            assert graph._client_session().trust_env is asked
    async with GraphClient() as graph:
        assert graph._client_session().trust_env is False


async def test_a_closed_client_opens_a_new_session(meta: ScriptedMeta) -> None:
    graph = GraphClient(meta.url)
    await graph.subscribe_app(WABA, CREDENTIALS)
    await graph.close()
    await graph.subscribe_app(WABA, CREDENTIALS)
    await graph.close()
    assert len(meta.asked) == 2


async def test_arguments_meta_could_never_take_are_refused_before_any_call(
    meta: ScriptedMeta,
) -> None:
    async with GraphClient(meta.url) as graph:
        for callback, token in (("", "vt"), ("https://x.test", "")):
            with pytest.raises(GraphInputError) as caught:
                await graph.set_webhook_override(PHONE, CREDENTIALS, callback, token)
            assert str(caught.value) == "an override needs a callback URI and a verify token"
        with pytest.raises(GraphInputError) as caught:
            await graph.subscribe_app("shop", CREDENTIALS)
        assert str(caught.value) == "a Graph object id is numeric, not 'shop'"
        numeric = "^an app id is numeric$"
        with pytest.raises(ValueError, match=numeric):
            await graph.debug_token(CREDENTIALS, "x1")
        with pytest.raises(ValueError, match=numeric):
            await graph.exchange_code("x1", SECRET, "c")
    assert meta.asked == []

"""The transport: one aiohttp client per operator process, every call's proof, retries,
budget and throttle."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from pydantic import (
    BaseModel,
    ValidationError,
)
from whatsapp_channel.model import META_ID_PATTERN
from yarl import URL

from channel_operator.graph.budget import (
    APP_WIDE,
    DEFAULT_THROTTLE_SECONDS,
    CallBudget,
    RetryPolicy,
    regain_seconds,
)
from channel_operator.graph.errors import (
    MESSAGE_CAP,
    NONEXISTING_FIELD,
    PHONE_NODE,
    GraphError,
    GraphErrorKind,
    GraphInputError,
    classify,
    explained,
    scrub,
)
from channel_operator.graph.models import (
    DEFAULT_BASE_URL,
    DEFAULT_VERSION,
    Call,
    ExchangedToken,
    PhoneNumberCheck,
    SubscribedApp,
    TokenApp,
    TokenInfo,
    WebhookConfiguration,
    check_fields,
)

log = logging.getLogger(__name__)

_VERSION_PATTERN = re.compile(r"^v[0-9]+\.[0-9]+$")
_ID_PATTERN = re.compile(META_ID_PATTERN)  # the contract's: an id the CRD takes, we take
# Graph paths that are not a numeric object id.
_NAMED_NODES = frozenset({"debug_token", "app", "oauth"})
# Pages of `GET /{waba}/phone_numbers` read at most (100 numbers a page: Meta's maximum).
MAX_NUMBER_PAGES = 50


@dataclass(frozen=True)
class GraphCredentials:
    """A channel's access token and app secret; neither appears in its repr."""

    access_token: str = field(repr=False)
    app_secret: str = field(repr=False)

    @property
    def appsecret_proof(self) -> str:
        return hmac.new(
            self.app_secret.encode(), self.access_token.encode(), hashlib.sha256
        ).hexdigest()

    def secrets(self) -> tuple[str, ...]:
        return (self.access_token, self.app_secret, self.appsecret_proof)


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_M = TypeVar("_M", bound=BaseModel)


class GraphClient:
    """One per operator process: shares a connection pool and the concurrency bound across
    every channel. Use `async with GraphClient(...)` or call `close()`."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        version: str = DEFAULT_VERSION,
        *,
        timeout: float = 10.0,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        budget: CallBudget | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        observe: Callable[[Call, str], None] | None = None,
        trust_env: bool = False,
        plain_http_host: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        throttle_seconds: float = DEFAULT_THROTTLE_SECONDS,
    ) -> None:
        """`observe(call, outcome)` is told every attempt's outcome ("ok" or an error kind),
        e.g. for `whatsapp_operator_graph_calls_total{call,outcome}`; `trust_env` lets
        HTTPS_PROXY/NO_PROXY apply where Meta is reached through a proxy; `plain_http_host`
        (tests only) is the one non-loopback host plain http may name, a stand-in on a test
        network."""
        url = URL(base_url)
        if not url.is_absolute() or url.scheme not in ("https", "http"):
            raise ValueError("the Graph base URL must be an absolute http(s) URL")
        plain_ok = _is_loopback(url.host) or (
            plain_http_host is not None and url.host == plain_http_host
        )
        if url.scheme == "http" and not plain_ok:
            raise ValueError("the Graph base URL must be https (http only for a loopback stand-in)")
        if url.query_string or url.fragment:
            raise ValueError("the Graph base URL takes no query or fragment")
        if not _VERSION_PATTERN.match(version):
            raise ValueError(f"a Graph API version looks like v25.0, not {version!r}")
        if timeout <= 0 or max_concurrency < 1:
            raise ValueError("the timeout and the concurrency must be positive")
        self.base_url = url
        self.version = version
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.budget = budget
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._slots = asyncio.Semaphore(max_concurrency)
        self._observe = observe
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._unknown_fields: set[str] = set()
        self._clock = clock
        self.throttle_seconds = throttle_seconds
        # Throttled until (clock time), per budget key and for the whole app: no call to Meta
        # for those within the window Meta stated (never a retry of 4 or 80007 in it).
        self._throttled: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"GraphClient({str(self.base_url)!r}, {self.version!r})"

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), trust_env=self._trust_env
            )
        return self._session

    # -- the calls --------------------------------------------------------------------------

    async def check_phone_number(
        self,
        phone_number_id: str,
        credentials: GraphCredentials,
        *,
        fields: Iterable[str] | None = None,
        account: str | None = None,
    ) -> PhoneNumberCheck:
        """The credentials check: token, number and app secret in one call, plus the
        number's names, rating, limits, webhook configuration and health (the version's
        fields by default). A field Meta says the version does not have is left out of this
        and every later check: it degrades that one fact, never the check."""
        asked = [
            name
            for name in (fields if fields is not None else check_fields(self.version))
            if name not in self._unknown_fields
        ]
        while True:
            try:
                body = await self._request(
                    "check",
                    "GET",
                    phone_number_id,
                    credentials,
                    params={"fields": ",".join(asked)},
                    account=account,
                )
            except GraphError as error:
                unknown = NONEXISTING_FIELD.search(error.message) if error.code == 100 else None
                if (
                    unknown is None
                    or unknown.group(2) != PHONE_NODE
                    or unknown.group(1) not in asked
                    or unknown.group(1) == "id"
                ):
                    raise
                log.warning("Graph %s has no field %s: not asked again", self.version, unknown[1])
                self._unknown_fields.add(unknown.group(1))
                asked.remove(unknown.group(1))
                continue
            return self._parse("check", PhoneNumberCheck, body, credentials)

    async def webhook_configuration(
        self, phone_number_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> WebhookConfiguration:
        """The read-back: where Meta delivers the number's messages now."""
        check = await self.check_phone_number(
            phone_number_id, credentials, fields=("webhook_configuration",), account=account
        )
        return check.webhook_configuration or WebhookConfiguration()

    async def subscribe_app(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> None:
        """`POST /{waba_id}/subscribed_apps`: the app receives the account's webhooks.
        `account`: the budget's key (default: the business account)."""
        body = await self._request(
            "subscribe",
            "POST",
            f"{waba_id}/subscribed_apps",
            credentials,
            account=account or waba_id,
        )
        self._succeeded("subscribe", body)

    async def unsubscribe_app(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> None:
        body = await self._request(
            "unsubscribe",
            "DELETE",
            f"{waba_id}/subscribed_apps",
            credentials,
            account=account or waba_id,
        )
        self._succeeded("unsubscribe", body)

    async def subscribed_apps(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> list[SubscribedApp]:
        """`GET /{waba_id}/subscribed_apps`: the apps subscribed to the account, each with its
        account-level override when one is set."""
        body = await self._request(
            "subscriptions",
            "GET",
            f"{waba_id}/subscribed_apps",
            credentials,
            account=account or waba_id,
        )
        data = body.get("data")
        apps = []
        for item in data if isinstance(data, list) else []:
            if not isinstance(item, dict):
                continue
            # Meta's reference page nests the app in whatsapp_business_api_data; its OpenAPI
            # description (SubscribedApp) puts id and name on the item itself: either is read.
            app = dict(item.get("whatsapp_business_api_data") or item)
            if "override_callback_uri" in item:  # an account-level override, when set
                app["override_callback_uri"] = item["override_callback_uri"]
            apps.append(self._parse("subscriptions", SubscribedApp, app, credentials))
        return apps

    async def set_webhook_override(
        self,
        phone_number_id: str,
        credentials: GraphCredentials,
        callback_uri: str,
        verify_token: str,
        *,
        account: str | None = None,
    ) -> None:
        """The phone-level override. Meta calls the GET challenge on `callback_uri` during
        this call and fails it with 2200 unless the challenge is echoed."""
        if not callback_uri or not verify_token:
            raise GraphInputError("an override needs a callback URI and a verify token")
        body = await self._request(
            "override",
            "POST",
            phone_number_id,
            credentials,
            json_body={
                "webhook_configuration": {
                    "override_callback_uri": callback_uri,
                    "verify_token": verify_token,
                }
            },
            account=account,
            extra_secrets=(verify_token,),
        )
        self._succeeded("override", body)

    async def clear_webhook_override(
        self, phone_number_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> None:
        body = await self._request(
            "override",
            "POST",
            phone_number_id,
            credentials,
            json_body={"webhook_configuration": {"override_callback_uri": ""}},
            account=account,
        )
        self._succeeded("override", body)

    async def token_app(self, credentials: GraphCredentials) -> TokenApp:
        """`GET /app`: the app the channel's token belongs to (its id keys subscriptions and
        makes the app access token for `debug_token`)."""
        body = await self._request("app", "GET", "app", credentials, params={"fields": "id,name"})
        return self._parse("app", TokenApp, body, credentials)

    async def debug_token(self, credentials: GraphCredentials, app_id: str) -> TokenInfo:
        """`GET /debug_token?input_token=<the channel's token>`, asked with the app access
        token `{app_id}|{app_secret}`: Meta's reference requires "an app access token or an
        app developer's user access token for the app associated with the input_token"
        (https://developers.facebook.com/docs/graph-api/reference/debug_token), and a token
        asking about itself is refused with (#100). `waba_ids` lists the accounts that
        granted the app the token's whatsapp_business_management."""
        if not _ID_PATTERN.match(app_id):
            raise ValueError("an app id is numeric")
        app_token = GraphCredentials(f"{app_id}|{credentials.app_secret}", credentials.app_secret)
        body = await self._request(
            "debug_token",
            "GET",
            "debug_token",
            app_token,
            params={"input_token": credentials.access_token},
            extra_secrets=credentials.secrets(),
        )
        data = body.get("data")
        return self._parse(
            "debug_token", TokenInfo, data if isinstance(data, dict) else {}, credentials
        )

    async def phone_number_ids(
        self, waba_id: str, credentials: GraphCredentials, *, account: str | None = None
    ) -> frozenset[str]:
        """`GET /{waba_id}/phone_numbers?fields=id`, every page (Meta's cursor paging:
        `paging.cursors.after` while `paging.next` is given; `limit` at most 100 per the
        OpenAPI description): the ids of the account's numbers."""
        ids: set[str] = set()
        params = {"fields": "id", "limit": "100"}
        for _ in range(MAX_NUMBER_PAGES):
            body = await self._request(
                "phone_numbers",
                "GET",
                f"{waba_id}/phone_numbers",
                credentials,
                params=params,
                account=account or waba_id,
            )
            data = body.get("data")
            for item in data if isinstance(data, list) else []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    ids.add(item["id"])
            paging = body.get("paging")
            cursors = paging.get("cursors") if isinstance(paging, dict) else None
            after = cursors.get("after") if isinstance(cursors, dict) else None
            if not isinstance(paging, dict) or "next" not in paging or not isinstance(after, str):
                break
            params = {**params, "after": after}
        return frozenset(ids)

    async def exchange_code(self, app_id: str, app_secret: str, code: str) -> str:
        """`GET /oauth/access_token?client_id&client_secret&code`: an Embedded Signup code
        for a business token (Meta's Tech Provider onboarding guide, step 1), asked with the
        app's id and secret and no access token. The code is exchanged once and lives 30 s:
        a refusal (code 100) is never retried."""
        if not _ID_PATTERN.match(app_id):
            raise ValueError("an app id is numeric")
        body = await self._request(
            "exchange",
            "GET",
            "oauth/access_token",
            None,
            params={"client_id": app_id, "client_secret": app_secret, "code": code},
            extra_secrets=(app_secret, code),
        )
        return self._parse(
            "exchange", ExchangedToken, body, GraphCredentials(code, app_secret)
        ).access_token

    async def register_number(
        self, phone_number_id: str, credentials: GraphCredentials, pin: str
    ) -> None:
        """`POST /{phone_number_id}/register` with `messaging_product` and the two-step
        verification `pin` (six digits): the number is registered for the Cloud API."""
        body = await self._request(
            "register",
            "POST",
            f"{phone_number_id}/register",
            credentials,
            json_body={"messaging_product": "whatsapp", "pin": pin},
            extra_secrets=(pin,),
        )
        self._succeeded("register", body)

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _succeeded(call: Call, body: dict[str, Any]) -> None:
        """A write answers `{"success": true}`; anything else did not happen."""
        if body.get("success") is not True:
            raise GraphError(
                GraphErrorKind.UNEXPECTED, call, message='the answer is not {"success": true}'
            )

    def _parse(
        self, call: Call, model: type[_M], body: dict[str, Any], credentials: GraphCredentials
    ) -> _M:
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
            raise GraphError(
                GraphErrorKind.UNEXPECTED,
                call,
                message=scrub(
                    f"unexpected answer shape at {', '.join(fields)}", credentials.secrets()
                ),
            ) from None

    async def _request(
        self,
        call: Call,
        method: str,
        path: str,
        credentials: GraphCredentials | None,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        account: str | None = None,
        extra_secrets: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """One call, retried as its errors allow; `credentials` None: asked with no access
        token (the code exchange, which names the app in its parameters)."""
        object_id = path.split("/", 1)[0]
        if object_id not in _NAMED_NODES and not _ID_PATTERN.match(object_id):
            raise GraphInputError(f"a Graph object id is numeric, not {object_id!r}")
        secrets = (*(credentials.secrets() if credentials else ()), *extra_secrets)
        url = self.base_url / self.version / path
        query = dict(params or {})
        headers = {}
        if credentials is not None:
            query["appsecret_proof"] = credentials.appsecret_proof
            headers["Authorization"] = f"Bearer {credentials.access_token}"
        attempt = 0
        while True:
            attempt += 1
            self._not_throttled(call, account)
            if (
                self.budget is not None
                and account is not None
                and not self.budget.try_acquire(account)
            ):
                log.debug("graph %s %s: the account's call budget is used up", call, object_id)
                if self._observe is not None:
                    self._observe(call, GraphErrorKind.BUDGET_EXHAUSTED.value)
                raise GraphError(
                    GraphErrorKind.BUDGET_EXHAUSTED,
                    call,
                    message="the account's Graph call budget is used up for now",
                    attempts=attempt,
                )
            outcome = await self._attempt(
                call, method, url, object_id, query, headers, json_body, secrets, attempt
            )
            if self._observe is not None:
                self._observe(call, "ok" if isinstance(outcome, dict) else outcome.kind.value)
            if isinstance(outcome, dict):
                return outcome
            if outcome.kind is GraphErrorKind.RATE_LIMITED:
                self._throttle(outcome, account)
                raise outcome  # never retried within Meta's window
            if not outcome.transient or attempt >= self.retry.attempts:
                raise outcome
            delay = self.retry.delay(attempt - 1, self._rng)
            log.debug(
                "graph %s %s: %s, retry %d in %.2fs", call, object_id, outcome.kind, attempt, delay
            )
            await self._sleep(delay)

    def _not_throttled(self, call: Call, account: str | None) -> None:
        now = self._clock()
        for key in (APP_WIDE, account):
            until = self._throttled.get(key) if key is not None else None
            if until is not None and now < until:
                if self._observe is not None:
                    self._observe(call, GraphErrorKind.RATE_LIMITED.value)
                raise GraphError(
                    GraphErrorKind.RATE_LIMITED,
                    call,
                    message=f"Meta's rate limit: no call for {until - now:.0f}s more "
                    "(estimated_time_to_regain_access)",
                    retry_after=until - now,
                )

    def _throttle(self, error: GraphError, account: str | None) -> None:
        window = self.throttle_seconds if error.retry_after is None else error.retry_after
        key = APP_WIDE if error.code == 4 or account is None else account
        self._throttled[key] = max(self._throttled.get(key, 0.0), self._clock() + window)

    async def _attempt(
        self,
        call: Call,
        method: str,
        url: URL,
        object_id: str,
        query: dict[str, str],
        headers: dict[str, str],
        json_body: dict[str, Any] | None,
        secrets: tuple[str, ...],
        attempt: int,
    ) -> dict[str, Any] | GraphError:
        """One HTTP exchange: the answer's JSON object, or the error it amounts to."""
        session = self._client_session()
        try:
            async with (
                self._slots,
                session.request(
                    method,
                    url,
                    params=query,
                    headers=headers,
                    json=json_body,
                    allow_redirects=False,
                ) as response,
            ):
                status = response.status
                raw = await response.read()
                regain = regain_seconds(response.headers)
        except TimeoutError:
            log.debug("graph %s %s: attempt %d timed out", call, object_id, attempt)
            return GraphError(
                GraphErrorKind.UNAVAILABLE, call, message="timed out", attempts=attempt
            )
        except aiohttp.ClientError as exc:
            # The exception's own text may carry the URL and its query (the proof): never used.
            log.debug("graph %s %s: attempt %d: %s", call, object_id, attempt, type(exc).__name__)
            return GraphError(
                GraphErrorKind.UNAVAILABLE,
                call,
                message=f"connection failed ({type(exc).__name__})",
                attempts=attempt,
            )
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if status < 300 and isinstance(body, dict) and "error" not in body:
            log.debug("graph %s %s: HTTP %d", call, object_id, status)
            return body
        graph_error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(graph_error, dict):
            kind = classify(call, status, None, None, "")
            log.debug("graph %s %s: HTTP %d without a Graph error", call, object_id, status)
            return GraphError(
                kind,
                call,
                message="an answer that is not a Graph error",
                http_status=status,
                attempts=attempt,
            )
        code = graph_error.get("code")
        subcode = graph_error.get("error_subcode")
        code = code if isinstance(code, int) else None
        subcode = subcode if isinstance(subcode, int) else None
        message = scrub(explained(graph_error), secrets)[:MESSAGE_CAP]
        trace = graph_error.get("fbtrace_id")
        error = GraphError(
            classify(call, status, code, subcode, message),
            call,
            message=message,
            http_status=status,
            code=code,
            subcode=subcode,
            fbtrace_id=scrub(trace, secrets)[:64] if isinstance(trace, str) else None,
            attempts=attempt,
            retry_after=regain,
        )
        log.debug(
            "graph %s %s: HTTP %d, code %s/%s (%s)",
            call,
            object_id,
            status,
            code,
            subcode,
            error.kind,
        )
        return error

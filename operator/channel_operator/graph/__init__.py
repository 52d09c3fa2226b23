"""The operator's Graph API client: the calls that prove a channel's credentials, register its
webhook and watch its health (issue 11).

- async (aiohttp), at most `max_concurrency` requests in flight, a timeout per attempt;
- `appsecret_proof` (hex HMAC-SHA256 of the access token under the app secret) on every call,
  so one check proves the token, the number and the app secret together;
- retries with exponential backoff and full jitter on what Meta calls transient (codes 1, 2,
  4, 80007, HTTP 5xx, timeouts, connection failures), never on 190, 10/200-299 or 100;
- failures as `GraphError` with a `GraphErrorKind` the reconcile maps to condition reasons;
- no token, app secret, proof or verify token in any exception text, repr or log line,
  Graph's own error messages included (Meta echoes a malformed token back).

The base URL and version are parameters (default https://graph.facebook.com, v25.0); plain
http is accepted only for a loopback stand-in (or, in tests, the one host named by
`plain_http_host`).

Its faces, one module each: `models` (what Graph answers, the fields a check reads by
version), `errors` (Meta's codes and what they mean to us, secret-free error text),
`budget` (the per-account call budget, throttle windows, retries) and `client` (the
transport). This package's names are the API the rest of the operator uses.
"""

from channel_operator.graph.budget import CallBudget, RetryPolicy, regain_seconds
from channel_operator.graph.client import GraphClient, GraphCredentials
from channel_operator.graph.errors import (
    REDACTED,
    GraphError,
    GraphErrorKind,
    GraphInputError,
    classify,
    scrub,
)
from channel_operator.graph.models import (
    CHECK_FIELDS,
    DEFAULT_BASE_URL,
    DEFAULT_VERSION,
    WHATSAPP_SCOPES,
    Call,
    CanSendMessage,
    ExchangedToken,
    HealthEntity,
    HealthError,
    HealthStatus,
    PhoneNumberCheck,
    SubscribedApp,
    Throughput,
    TokenApp,
    TokenInfo,
    WebhookConfiguration,
    check_fields,
)

__all__ = [
    "CHECK_FIELDS",
    "DEFAULT_BASE_URL",
    "DEFAULT_VERSION",
    "REDACTED",
    "WHATSAPP_SCOPES",
    "Call",
    "CallBudget",
    "CanSendMessage",
    "ExchangedToken",
    "GraphClient",
    "GraphCredentials",
    "GraphError",
    "GraphErrorKind",
    "GraphInputError",
    "HealthEntity",
    "HealthError",
    "HealthStatus",
    "PhoneNumberCheck",
    "RetryPolicy",
    "SubscribedApp",
    "Throughput",
    "TokenApp",
    "TokenInfo",
    "WebhookConfiguration",
    "check_fields",
    "classify",
    "regain_seconds",
    "scrub",
]

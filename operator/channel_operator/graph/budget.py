"""How often Graph is asked: the per-account call budget, Meta's stated throttle windows, and
the retry policy."""

from __future__ import annotations

import json
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# the `X-Business-Use-Case-Usage` header maps a business object id to entries carrying
# `estimated_time_to_regain_access` ("time, in minutes, until calls will not be throttled");
# `X-App-Usage` carries percentages only. Without a stated time, this long.
DEFAULT_THROTTLE_SECONDS = 60.0
APP_WIDE = ""  # the key of a throttle of the whole app (code 4: "Application request limit")


def regain_seconds(headers: Mapping[str, str]) -> float | None:
    """The longest `estimated_time_to_regain_access` Meta states in the usage headers, in
    seconds; None when it states none (a malformed header counts as none)."""
    raw = headers.get("X-Business-Use-Case-Usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (usage.values() if isinstance(usage, dict) else ())
        for entry in (entries if isinstance(entries, list) else ())
        if isinstance(entry, dict)
    ]
    stated = [m for m in minutes if isinstance(m, int | float) and m >= 0]
    return max(stated) * 60.0 if stated else None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base·2ⁿ))."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("a retry policy needs at least one attempt and delays >= 0")

    def delay(self, retry: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2**retry))
        return rng.uniform(0, ceiling) if self.jitter else ceiling


class CallBudget:
    """Graph management calls per business account in a sliding window, following Meta's
    tiers (https://developers.facebook.com/docs/graph-api/overview/rate-limiting, WhatsApp
    Business Management API: 200 calls an hour per app and account; 5,000 for an active
    account, one with at least one registered phone number). `limit` is the first,
    `active_limit` the second (accounts `mark_active` named). `try_acquire` is False once the
    window is full; the caller reports the account as rate limited."""

    def __init__(
        self,
        limit: int = 200,
        window_seconds: float = 3600.0,
        *,
        active_limit: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("a call budget needs a positive limit and window")
        self.limit = limit
        self.active_limit = max(active_limit or limit, limit)
        self.window = window_seconds
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._active: set[str] = set()

    def mark_active(self, account: str, active: bool) -> None:
        """Whether the account has a registered number (Meta's larger budget), as a check
        of one of its numbers just said."""
        if active:
            self._active.add(account)
        else:
            self._active.discard(account)

    def limit_of(self, account: str) -> int:
        return self.active_limit if account in self._active else self.limit

    def _live(self, account: str) -> deque[float]:
        calls = self._calls.setdefault(account, deque())
        horizon = self._clock() - self.window
        while calls and calls[0] <= horizon:
            calls.popleft()
        return calls

    def try_acquire(self, account: str) -> bool:
        calls = self._live(account)
        if len(calls) >= self.limit_of(account):
            return False
        calls.append(self._clock())
        return True

    def remaining(self, account: str) -> int:
        return self.limit_of(account) - len(self._live(account))

    def used(self, account: str) -> int:
        return len(self._live(account))

    def forget(self, account: str) -> None:
        self._calls.pop(account, None)
        self._active.discard(account)

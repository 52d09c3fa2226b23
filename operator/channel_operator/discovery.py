"""Which business account (WABA) a channel's number belongs to, asked the way Meta allows it
(issue 19, step 1). Sources, quoted where each is relied on:

- `GET /app` with the channel's token names the token's app
  (https://developers.facebook.com/docs/graph-api/reference/application/);
- `GET /debug_token?input_token=...` must be asked with "an app access token or an app
  developer's user access token for the app associated with the input_token"
  (https://developers.facebook.com/docs/graph-api/reference/debug_token); a token asking about
  itself is refused: "(#100) You must provide an app access token, or a user access token that
  is an owner or developer of the app". The app access token is `{app-id}|{app-secret}`
  (https://developers.facebook.com/docs/facebook-login/guides/access-tokens#apptokens);
- its `granular_scopes[]` name the accounts that granted `whatsapp_business_management`
  (https://developers.facebook.com/documentation/business-messaging/whatsapp/solution-providers/manage-accounts);
  the first one is only the newest, not necessarily the number's, so each granted account is
  asked for its numbers: `GET /{WABA-ID}/phone_numbers` (Meta's OpenAPI description,
  `getWhatsAppBusinessAccountPhoneNumbers`, cursor paging, `limit` at most 100).

A given `waba_id` is checked the same way: the number must be one of its numbers. What was
learned is kept per token (never per request) for `ttl` seconds; a refusal forgets it, so the
next question asks Meta again.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from whatsapp_channel import reasons
from whatsapp_channel.reasons import ReasonedFailure

from channel_operator.graph import GraphClient, GraphCredentials, TokenInfo


class DiscoveryRefused(ReasonedFailure):
    """Meta answered, and the answer rules the channel out (CredentialsValid=False)."""


@dataclass
class _Learned:
    value: object
    at: float


@dataclass
class Discovery:
    """What the operator learned about each token: its app, the accounts that granted it,
    each account's numbers. Keyed by a hash of token and app secret (no secret kept as a key)."""

    ttl: float = 24 * 3600.0  # daily: what debug_token says of a token is asked again
    clock: Callable[[], float] = time.monotonic
    _learned: dict[tuple[str, str], _Learned] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    @staticmethod
    def _key(credentials: GraphCredentials) -> str:
        material = f"{credentials.access_token}\0{credentials.app_secret}".encode()
        return hashlib.sha256(material).hexdigest()

    def forget(self, credentials: GraphCredentials) -> None:
        key = self._key(credentials)
        for learned in [k for k in self._learned if k[0] == key]:
            del self._learned[learned]

    def _recall(self, key: str, what: str) -> object | None:
        learned = self._learned.get((key, what))
        if learned is None or self.clock() - learned.at > self.ttl:
            return None
        return learned.value

    def _keep(self, key: str, what: str, value: object) -> None:
        self._learned[(key, what)] = _Learned(value, self.clock())

    async def app_id(self, graph: GraphClient, credentials: GraphCredentials) -> str:
        """The token's app (`GET /app`), asked once per token."""
        key = self._key(credentials)
        known = self._recall(key, "app")
        if isinstance(known, str):
            return known
        app = await graph.token_app(credentials)
        self._keep(key, "app", app.id)
        return app.id

    async def token(
        self, graph: GraphClient, credentials: GraphCredentials, app_id: str | None = None
    ) -> TokenInfo:
        """What Meta says of the token (debug_token, asked with the app token), once per
        token and `ttl`: its type, expiry, data access expiry, scopes and granted accounts.
        Refused (and forgotten) when Meta calls it invalid or a WhatsApp scope is missing."""
        key = self._key(credentials)
        known = self._recall(key, "token")
        if isinstance(known, TokenInfo):
            return known
        info = await graph.debug_token(credentials, app_id or await self.app_id(graph, credentials))
        refusal = None
        if not info.is_valid:
            refusal = DiscoveryRefused(reasons.TOKEN_INVALID, "debug_token: the token is not valid")
        elif info.missing_scopes:
            refusal = DiscoveryRefused(
                reasons.PERMISSION_DENIED,
                "the token lacks the permission(s) " + ", ".join(info.missing_scopes),
            )
        if refusal is not None:
            self.forget(credentials)
            raise refusal
        self._keep(key, "token", info)
        return info

    async def _numbers(
        self, graph: GraphClient, credentials: GraphCredentials, waba_id: str
    ) -> frozenset[str]:
        key = self._key(credentials)
        known = self._recall(key, f"numbers/{waba_id}")
        if isinstance(known, frozenset):
            return known
        numbers = await graph.phone_number_ids(waba_id, credentials)
        self._keep(key, f"numbers/{waba_id}", numbers)
        return numbers

    async def account_of(
        self,
        graph: GraphClient,
        credentials: GraphCredentials,
        phone_number_id: str,
        waba_id: str | None,
    ) -> str:
        """The number's business account: `waba_id` once checked, else found among the
        accounts that granted the token. Raises `DiscoveryRefused` (Meta ruled it out) or
        `GraphError` (Meta failed or refused a call)."""
        key = self._key(credentials)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # channels of one token share what the first one learns
            try:
                return await self._account_of(graph, credentials, phone_number_id, waba_id)
            except DiscoveryRefused:
                # What was kept may predate the number (a token's new number): ask afresh once.
                self.forget(credentials)
            try:
                return await self._account_of(graph, credentials, phone_number_id, waba_id)
            except DiscoveryRefused:
                self.forget(credentials)
                raise

    async def _account_of(
        self,
        graph: GraphClient,
        credentials: GraphCredentials,
        phone_number_id: str,
        waba_id: str | None,
    ) -> str:
        if waba_id is not None:
            if phone_number_id in await self._numbers(graph, credentials, waba_id):
                return waba_id
            raise DiscoveryRefused(
                reasons.PHONE_NUMBER_NOT_IN_ACCOUNT,
                f"phone number {phone_number_id} is not one of business account {waba_id}'s "
                "numbers (GET /{waba_id}/phone_numbers)",
            )
        granted = (await self.token(graph, credentials)).waba_ids
        for candidate in granted:
            if phone_number_id in await self._numbers(graph, credentials, candidate):
                return candidate
        raise DiscoveryRefused(
            reasons.ACCOUNT_NOT_FOUND,
            f"none of the {len(granted)} business account(s) that granted the token "
            f"whatsapp_business_management holds phone number {phone_number_id}",
        )

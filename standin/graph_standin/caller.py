"""Meta as a caller: the stand-in's challenge of a callback URL and its signed event
deliveries, as Meta makes them."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import time
from collections.abc import Collection
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from . import errors
from .state import (
    PhoneNumber,
)


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def meta_signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class MetaCaller:
    """Meta calling out: the live challenge of a callback URL and signed event deliveries,
    to this machine only (loopback, or the test network's `local_hosts`)."""

    def __init__(
        self, local_hosts: Collection[str], challenge_timeout: float, delivery_timeout: float
    ) -> None:
        self.local_hosts = frozenset(local_hosts)
        self.challenge_timeout = challenge_timeout
        self.delivery_timeout = delivery_timeout
        self._session: aiohttp.ClientSession | None = None

    def is_local(self, host: str | None) -> bool:
        return is_loopback_host(host) or (host is not None and host in self.local_hosts)

    async def open(self) -> None:
        self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify_callback(self, uri: str, verify_token: str) -> None:
        """Meta's live challenge: GET the callback with hub.* and expect the challenge back."""
        try:
            url = URL(uri)
        except ValueError:
            raise errors.callback_verification_failed("Invalid callback URL") from None
        if url.scheme not in ("http", "https") or not url.is_absolute():
            raise errors.callback_verification_failed("Invalid callback URL")
        if not self.is_local(url.host):
            raise errors.callback_verification_failed(
                "Couldn't connect to server (the stand-in calls loopback callbacks only)"
            )
        challenge = str(secrets.randbelow(9 * 10**9) + 10**9)
        target = url.update_query(
            {"hub.mode": "subscribe", "hub.challenge": challenge, "hub.verify_token": verify_token}
        )
        assert self._session is not None
        try:
            async with self._session.get(
                target,
                timeout=aiohttp.ClientTimeout(total=self.challenge_timeout),
                allow_redirects=False,
            ) as response:
                body = (await response.read())[:1024].decode("utf-8", "replace")
                status, reason = response.status, response.reason or ""
        except TimeoutError:
            raise errors.callback_verification_failed("Operation timed out") from None
        except aiohttp.ClientError:
            raise errors.callback_verification_failed("Couldn't connect to server") from None
        if status != 200:
            raise errors.callback_verification_failed(
                f"HTTP Status Code = {status}; HTTP Message = {reason}"
            )
        if body.strip() != challenge:
            raise errors.callback_verification_failed(
                f'Response does not match challenge, expected value="{challenge}", '
                f'received="{body[:64]}"'
            )

    async def deliver(self, url: str, app_secret: str, event: dict[str, Any]) -> int:
        """POSTs `event` as Meta does (compact ASCII JSON, signed with the app secret); the
        answer's HTTP status."""
        if not self.is_local(URL(url).host):
            raise web.HTTPConflict(text="the stand-in delivers to loopback callbacks only")
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=True).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(app_secret, body),
        }
        assert self._session is not None
        try:
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.delivery_timeout),
            ) as response:
                await response.read()
                return response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise web.HTTPBadGateway(text=f"delivery failed: {type(exc).__name__}") from None


def text_notification(number: PhoneNumber, text: str, *, sender: str, name: str) -> dict[str, Any]:
    """A `messages` webhook for an inbound text, in Meta's shape."""
    digits = "".join(ch for ch in number.display_phone_number if ch.isdigit())
    message = {
        "from": sender,
        "id": "wamid." + secrets.token_urlsafe(24),
        "timestamp": str(int(time.time())),
        "text": {"body": text},
        "type": "text",
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": digits, "phone_number_id": number.id},
        "contacts": [{"profile": {"name": name}, "wa_id": sender}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": number.waba_id, "changes": [{"value": value, "field": "messages"}]}],
    }

"""Tokens about to expire, counted for the `WhatsAppTokenExpiring` alert: from the expiry Meta's
debug_token states, over the same window as the channel's TokenExpiresSoon Warning (issue 24:
"the alerts that matter here (tokens expiring, ...)")."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from channel_operator import metrics, reconcile
from channel_operator.graph import WHATSAPP_SCOPES, GraphCredentials, TokenInfo
from channel_operator.metrics import TokensExpiring
from prometheus_client import REGISTRY

from tests.operator.test_channel_at_meta_register import WABA, FakeGraph, runtime_asking
from tests.operator.test_reconcile import VALUES, channel_body, public_key, sealed_spec
from tests.support.fake_kube import MemoryKube

DAY = 86400.0


def expiring(collector: TokensExpiring) -> float:
    (family,) = collector.collect()
    (sample,) = family.samples
    return sample.value


def test_a_token_counts_from_its_window_on_and_no_longer_once_released() -> None:
    now = [1_000_000.0]
    tokens = TokensExpiring(clock=lambda: now[0])
    tokens.warn_from_by_channel["a"] = now[0] + 10
    tokens.warn_from_by_channel["b"] = now[0] + 20
    assert expiring(tokens) == 0
    now[0] += 10
    assert expiring(tokens) == 1  # the window of "a" begins: counted from that second
    now[0] += 10
    assert expiring(tokens) == 2


class ExpiringGraph(FakeGraph):
    """Meta states the token's expiry in debug_token."""

    def __init__(self, expires_at: int) -> None:
        super().__init__()
        self.expires_at = expires_at

    async def debug_token(self, credentials: GraphCredentials, app_id: str) -> TokenInfo:
        await super().debug_token(credentials, app_id)
        return TokenInfo(
            is_valid=True, app_id=app_id, scopes=WHATSAPP_SCOPES, expires_at=self.expires_at
        )


async def reconciled_with_token_expiring_in(days: float) -> str:
    kube = MemoryKube()
    rt = await runtime_asking(kube, ExpiringGraph(int(time.time() + days * DAY)))
    name = str(uuid.uuid4())
    spec = sealed_spec(public_key(kube), name, VALUES, wabaId=WABA)
    patch: dict[str, Any] = {}
    await reconcile.reconcile(rt, channel_body(name, spec), patch)
    assert patch["tokenExpiresAt"].endswith("Z")
    return name


def scraped() -> float:
    value = REGISTRY.get_sample_value("whatsapp_operator_channels_token_expiring")
    assert value is not None
    return value


async def test_the_reconcile_counts_a_token_within_the_warning_window_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reconcile, "SECRET_DELIVERY_TIMEOUT", 0.0)  # no Secret watch runs here
    before = scraped()
    soon = await reconciled_with_token_expiring_in(3)  # within the 7 days of the Warning
    assert scraped() == before + 1
    later = await reconciled_with_token_expiring_in(30)
    assert scraped() == before + 1
    assert later in metrics.TOKENS_EXPIRING.warn_from_by_channel
    metrics.released(soon)
    metrics.released(later)
    assert scraped() == before

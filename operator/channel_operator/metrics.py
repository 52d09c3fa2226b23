"""The operator's Prometheus metrics, served on WA_OPERATOR_METRICS_PORT.

Label values are a closed set (outcomes, condition reasons, write kinds): never a channel's
name (an instance id), a phone number or anything from a Secret.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

RECONCILES = Counter(
    "whatsapp_operator_reconciles",
    "Reconciles of a channel, by outcome (ready: the Ready condition is True) and the Ready "
    "condition's reason.",
    ["outcome", "reason"],
)
SECRET_WRITES = Counter(
    "whatsapp_operator_secret_writes",
    "Writes of channel Secrets: created, updated (the channel changed) or restored (edited "
    "or deleted by someone else).",
    ["action"],
)
SEALING_KEY_RELOADS = Counter(
    "whatsapp_operator_sealing_key_reloads",
    "Reads of the sealing keys Secret: for a seal under an unknown key, by whether the key "
    "was found (found, not_found); before opening seals, at most once a second (refreshed).",
    ["result"],
)
SEALING_KEYS_RESTORED = Counter(
    "whatsapp_operator_sealing_keys_restored",
    "Times the sealing keys Secret was found deleted and written back from memory.",
)
LEADER = Gauge(
    "whatsapp_operator_leader",
    "1 while this replica holds the leader Lease and works; 0 while it stands by.",
)
for action in ("created", "updated", "restored"):
    SECRET_WRITES.labels(action)
for result in ("found", "not_found", "refreshed"):
    SEALING_KEY_RELOADS.labels(result)


class ChannelsByReadiness(Collector):
    """`whatsapp_operator_channels{ready}`, counted at scrape time from the operator's own
    record of each channel's last reconcile (no apiserver call)."""

    def __init__(self) -> None:
        self.ready_by_channel: dict[str, bool] = {}

    def collect(self) -> Iterable[Metric]:
        # len() and sum() run in C, so the scrape's thread sees one state of the dict.
        total = len(self.ready_by_channel)
        ready = sum(self.ready_by_channel.values())
        family = GaugeMetricFamily(
            "whatsapp_operator_channels",
            "Channels of the namespace by their Ready condition, as last reconciled.",
            labels=["ready"],
        )
        family.add_metric(["true"], ready)
        family.add_metric(["false"], max(total - ready, 0))
        yield family


CHANNELS = ChannelsByReadiness()
REGISTRY.register(CHANNELS)

GRAPH_CALLS = Counter(
    "whatsapp_operator_graph_calls",
    "Graph API call attempts, by call (check, subscribe, override, ...) and outcome (ok or "
    "the error kind: token_expired, unavailable, rate_limited, ...).",
    ["call", "outcome"],
)


def graph_call(call: str, outcome: str) -> None:
    GRAPH_CALLS.labels(call, outcome).inc()


class ChannelsByCanSend(Collector):
    """`whatsapp_operator_channels_can_send{value}`: channels by Meta's can_send_message
    (AVAILABLE, LIMITED, BLOCKED; unknown before a first answer)."""

    VALUES = ("AVAILABLE", "LIMITED", "BLOCKED", "unknown")

    def __init__(self) -> None:
        self.value_by_channel: dict[str, str] = {}

    def collect(self) -> Iterable[Metric]:
        counts = dict.fromkeys(self.VALUES, 0)
        for value in list(self.value_by_channel.values()):
            counts[value if value in counts else "unknown"] += 1
        family = GaugeMetricFamily(
            "whatsapp_operator_channels_can_send",
            "Channels by Meta's CanSendMessage value, as last checked.",
            labels=["value"],
        )
        for value, count in counts.items():
            family.add_metric([value], count)
        yield family


CAN_SEND = ChannelsByCanSend()
REGISTRY.register(CAN_SEND)


class TokensExpiring(Collector):
    """`whatsapp_operator_channels_token_expiring`: channels whose access token expires
    within the operator's warning window (the TokenExpiresSoon Warning's), counted at scrape
    time from the expiry Meta's debug_token stated at the last check."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.warn_from_by_channel: dict[str, float] = {}
        self._clock = clock

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        family = GaugeMetricFamily(
            "whatsapp_operator_channels_token_expiring",
            "Channels whose access token expires within the TokenExpiresSoon window.",
        )
        family.add_metric(
            [], sum(1 for at in list(self.warn_from_by_channel.values()) if at <= now)
        )
        yield family


TOKENS_EXPIRING = TokensExpiring()
REGISTRY.register(TOKENS_EXPIRING)


def token_expiry(channel: str, warn_from: float | None) -> None:
    """From when (epoch seconds) the channel's token counts as expiring; None: it never
    expires, or Meta did not say."""
    if warn_from is None:
        TOKENS_EXPIRING.warn_from_by_channel.pop(channel, None)
    else:
        TOKENS_EXPIRING.warn_from_by_channel[channel] = warn_from


def reconciled(channel: str, reason: str, *, ready: bool) -> None:
    RECONCILES.labels("ready" if ready else "failed", reason).inc()
    CHANNELS.ready_by_channel[channel] = ready


def released(channel: str) -> None:
    CHANNELS.ready_by_channel.pop(channel, None)
    CAN_SEND.value_by_channel.pop(channel, None)
    TOKENS_EXPIRING.warn_from_by_channel.pop(channel, None)

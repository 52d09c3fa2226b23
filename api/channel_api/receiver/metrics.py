"""The receiver's Prometheus metrics, served on WA_RECEIVER_METRICS_PORT, never on the
public port: Meta's callers see the same answer for every refusal, and only these counters
say which refusal it was.

The hot path touches only plain counters bound here, once, per endpoint kind (`per_channel`:
/hooks/whatsapp/<instance id>; `shared`: /hooks/whatsapp; `app`: /hooks/whatsapp-app): an
`inc()` or `observe()` is an integer or float addition on the one event loop, no label lookup
and no lock (prometheus_client's children take a lock per update: 0.4 us an `inc`, 1.5 us an
`observe`, a tenth of the receiver's own work on an event). A collector registered with
prometheus_client's default registry reads them at scrape time. No label value is ever an
instance id or a phone number.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from .forward import Delivery

# name: (help, label names)
_COUNTERS = {
    "whatsapp_receiver_webhook_events": (
        "Webhook POSTs by endpoint kind and outcome: forwarded, forward_refused, "
        "forward_timed_out, forward_busy, noted (an account webhook noted on its channels), "
        "or why it was refused (bad_signature, "
        "missing_signature, unknown_channel, foreign_phone, malformed, too_large, not_ready, "
        "overloaded, body_timed_out).",
        ("endpoint", "outcome"),
    ),
    "whatsapp_receiver_challenges": (
        "Meta's verification challenges by endpoint kind and outcome (verified, refused, "
        "not_ready).",
        ("endpoint", "outcome"),
    ),
    "whatsapp_receiver_forward_failures": (
        "Deliveries to an instance that failed: refused (a non-2xx answer), unreachable, "
        "timed_out, busy (not tried: the instance, or the forwarder, had its most in flight).",
        ("reason",),
    ),
}
_FORWARD_SECONDS = "whatsapp_receiver_forward_duration_seconds"
_FORWARD_SECONDS_HELP = (
    "Time to hand one webhook POST's events to their instance(s), by endpoint kind."
)
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Count:
    """One counter child (one set of label values)."""

    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0
        self.created = time.time()

    def inc(self) -> None:
        self.value += 1


class Timing:
    """One histogram child: counts per bucket (not cumulative) and the sum."""

    __slots__ = ("counts", "created", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(_BUCKETS) + 1)  # the last: +Inf
        self.sum = 0.0
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self.sum += seconds


_counts: dict[str, dict[tuple[str, ...], Count]] = {name: {} for name in _COUNTERS}
_timings: dict[tuple[str, ...], Timing] = {}


def _count(name: str, *labels: str) -> Count:
    return _counts[name].setdefault(labels, Count())


class _Collector(Collector):
    def collect(self) -> Iterator[Metric]:
        for name, (documentation, label_names) in _COUNTERS.items():
            family = CounterMetricFamily(name, documentation, labels=label_names)
            for labels, count in list(_counts[name].items()):
                family.add_metric(labels, count.value, created=count.created)
            yield family
        histogram = HistogramMetricFamily(
            _FORWARD_SECONDS, _FORWARD_SECONDS_HELP, labels=("endpoint",)
        )
        for labels, timing in list(_timings.items()):
            counts, total = list(timing.counts), timing.sum
            cumulative, buckets = 0, []
            for bound, n in zip((*_BUCKETS, float("inf")), counts, strict=True):
                cumulative += n
                buckets.append((_bound(bound), float(cumulative)))
            histogram.add_metric(labels, buckets, total)
            histogram.samples.append(
                Sample(f"{_FORWARD_SECONDS}_created", {"endpoint": labels[0]}, timing.created)
            )
        yield histogram


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


REGISTRY.register(_Collector())


class Endpoint:
    """The bound children of one endpoint kind."""

    def __init__(self, endpoint: str) -> None:
        def event(outcome: str) -> Count:
            return _count("whatsapp_receiver_webhook_events", endpoint, outcome)

        def challenge(outcome: str) -> Count:
            return _count("whatsapp_receiver_challenges", endpoint, outcome)

        self.forwarded = event("forwarded")
        self.forward_refused = event("forward_refused")
        self.forward_timed_out = event("forward_timed_out")
        self.bad_signature = event("bad_signature")
        self.missing_signature = event("missing_signature")
        self.unknown_channel = event("unknown_channel")
        self.foreign_phone = event("foreign_phone")
        self.malformed = event("malformed")
        self.too_large = event("too_large")
        self.not_ready = event("not_ready")
        self.overloaded = event("overloaded")  # past the process's request or byte budget
        self.body_timed_out = event("body_timed_out")
        self.forward_busy = event("forward_busy")  # the instance had its most in flight
        self.noted = event("noted")  # an account webhook: its channels are checked again
        self.challenge_verified = challenge("verified")
        self.challenge_refused = challenge("refused")
        self.challenge_not_ready = challenge("not_ready")
        self.forward_seconds = _timings.setdefault((endpoint,), Timing())


PER_CHANNEL = Endpoint("per_channel")
SHARED = Endpoint("shared")
APP = Endpoint("app")
FAILED_DELIVERIES = {
    delivery: _count("whatsapp_receiver_forward_failures", reason)
    for delivery, reason in (
        (Delivery.REFUSED, "refused"),
        (Delivery.UNREACHABLE, "unreachable"),
        (Delivery.TIMED_OUT, "timed_out"),
        (Delivery.BUSY, "busy"),
    )
}

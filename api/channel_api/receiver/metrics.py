"""The receiver's Prometheus metrics, served on WA_RECEIVER_METRICS_PORT, never on the
public port: Meta's callers see the same answer for every refusal, and only these counters
say which refusal it was.

The hot path touches only children bound here, once, per endpoint kind (`per_channel`:
/hooks/whatsapp/<instance id>; `shared`: /hooks/whatsapp; `app`: /hooks/whatsapp-app): an
`inc()` or `observe()`, no label lookup per request. No label value is ever an instance id or a
phone number.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from .forward import Delivery

EVENTS = Counter(
    "whatsapp_receiver_webhook_events",
    "Webhook POSTs by endpoint kind and outcome: forwarded, forward_refused, "
    "forward_timed_out, forward_busy, noted (an account webhook noted on its channels), "
    "or why it was refused (bad_signature, "
    "missing_signature, unknown_channel, foreign_phone, malformed, too_large, not_ready, "
    "overloaded, body_timed_out).",
    ["endpoint", "outcome"],
)
CHALLENGES = Counter(
    "whatsapp_receiver_challenges",
    "Meta's verification challenges by endpoint kind and outcome (verified, refused, not_ready).",
    ["endpoint", "outcome"],
)
FORWARD_SECONDS = Histogram(
    "whatsapp_receiver_forward_duration_seconds",
    "Time to hand one webhook POST's events to their instance(s), by endpoint kind.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
FORWARD_FAILURES = Counter(
    "whatsapp_receiver_forward_failures",
    "Deliveries to an instance that failed: refused (a non-2xx answer), unreachable, "
    "timed_out, busy (not tried: the instance, or the forwarder, had its most in flight).",
    ["reason"],
)


class Endpoint:
    """The bound children of one endpoint kind."""

    def __init__(self, endpoint: str) -> None:
        def event(outcome: str) -> Counter:
            return EVENTS.labels(endpoint, outcome)

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
        self.challenge_verified = CHALLENGES.labels(endpoint, "verified")
        self.challenge_refused = CHALLENGES.labels(endpoint, "refused")
        self.challenge_not_ready = CHALLENGES.labels(endpoint, "not_ready")
        self.forward_seconds = FORWARD_SECONDS.labels(endpoint)


PER_CHANNEL = Endpoint("per_channel")
SHARED = Endpoint("shared")
APP = Endpoint("app")
FAILED_DELIVERIES = {
    Delivery.REFUSED: FORWARD_FAILURES.labels("refused"),
    Delivery.UNREACHABLE: FORWARD_FAILURES.labels("unreachable"),
    Delivery.TIMED_OUT: FORWARD_FAILURES.labels("timed_out"),
    Delivery.BUSY: FORWARD_FAILURES.labels("busy"),
}

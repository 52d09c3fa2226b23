"""The receiver's ASGI app: the URLs Meta calls.

Pure ASGI on purpose: it faces the internet and is the hot path, so a request costs a dict
lookup, one HMAC, one JSON parse and the forward, with nothing else allocated per request.

    GET  /hooks/whatsapp/{instance_id}   Meta's verification challenge for one channel
    POST /hooks/whatsapp/{instance_id}   its events
    GET  /hooks/whatsapp                 the challenge, the channel found by verify token
    POST /hooks/whatsapp                 events of any channel, routed by phone number id
    GET  /hooks/whatsapp-app             the challenge of the app's own callback URL
    POST /hooks/whatsapp-app             account webhooks: the channels of the account are
                                         noted for the operator to check again
    GET  /healthz, /readyz               liveness; readiness once the channel cache synced
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from whatsapp_channel import channel_secret
from whatsapp_channel.kube import Kube, core_path, reflect
from whatsapp_channel.model import webhook_path

from .account import account_changes, channels_to_recheck
from .admission import (
    CHANNEL_POOL,
    SHARED_POOL,
    Admission,
    BodyTimedOut,
    BodyTooLarge,
    Disconnected,
    OverBudget,
    client_of,
)
from .channel_cache import Channel, ChannelCache
from .forward import Delivery, Forwarder, deliver_all
from .metrics import APP, FAILED_DELIVERIES, PER_CHANNEL, SHARED, Endpoint
from .routing import Refused, route_shared_event
from .settings import ReceiverSettings
from .status import StatusWriter
from .webhook_rules import (
    SIGNATURE_HEADER,
    MalformedEvent,
    Subscription,
    checked_signature,
    event_routes,
    verify_token_matches,
)

log = logging.getLogger(__name__)

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Lifespan = Callable[[], contextlib.AbstractAsyncContextManager[None]]

_CHANNEL_PREFIX = webhook_path("")  # "/hooks/whatsapp/"
SHARED_PATH = _CHANNEL_PREFIX.rstrip("/")
# The app's own callback (App Dashboard, WhatsApp -> Configuration): Meta sends account
# webhooks there, never to a number's override. Beside the others, outside their prefix.
APP_PATH = SHARED_PATH + "-app"
_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_NOSNIFF = (b"x-content-type-options", b"nosniff")  # the challenge echoes caller input
# On answers given before the body was read: its unread rest is never read.
_CLOSE = (b"connection", b"close")
_RETRY_AFTER = (b"retry-after", b"5")


def _answer(status: int, text: bytes, *extra: tuple[bytes, bytes]) -> tuple[Message, Message]:
    headers = [_TEXT, _NOSNIFF, (b"content-length", str(len(text)).encode()), *extra]
    return (
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": text},
    )


# Every answer but the challenge is one of these, built once.
OK = _answer(200, b"OK")
MALFORMED = _answer(400, b"Malformed event")
SIGNATURE_MISSING = _answer(401, b"Signature required")
FORBIDDEN = _answer(403, b"Forbidden")  # bad signature, unknown or disabled channel alike
NOT_FOUND = _answer(404, b"Not found")
NOT_ALLOWED = _answer(405, b"Method not allowed", (b"allow", b"GET, POST"))
TOO_LARGE = _answer(413, b"Payload too large")
HEALTH_FAILED = _answer(500, b"Background work stopped")
NOT_DELIVERED = _answer(502, b"Instance did not accept the event")
NOT_READY = _answer(503, b"Not ready")
DELIVERY_TIMED_OUT = _answer(504, b"Instance did not answer in time")
# Answers given before the whole body was read close the connection.
MALFORMED_EARLY = _answer(400, b"Malformed event", _CLOSE)
SIGNATURE_MISSING_EARLY = _answer(401, b"Signature required", _CLOSE)
FORBIDDEN_EARLY = _answer(403, b"Forbidden", _CLOSE)
BODY_TIMED_OUT = _answer(408, b"Request body not received in time", _CLOSE)
TOO_LARGE_EARLY = _answer(413, b"Payload too large", _CLOSE)
NOT_READY_EARLY = _answer(503, b"Not ready", _CLOSE)
OVERLOADED = _answer(503, b"Too busy, try again later", _RETRY_AFTER, _CLOSE)
INSTANCE_BUSY = _answer(503, b"Instance busy, try again later", _RETRY_AFTER)


class Receiver:
    """The ASGI callable. Everything it uses is built once and handed in."""

    def __init__(
        self,
        cache: ChannelCache,
        forwarder: Forwarder,
        status: StatusWriter,
        *,
        max_body_bytes: int,
        lifespan: Lifespan | None = None,
        admission: Admission | None = None,
        app_verify_token: bytes | None = None,
    ) -> None:
        self.cache = cache
        self.forwarder = forwarder
        self.status = status
        self._max_body = max_body_bytes
        self._lifespan = lifespan
        self.admission = admission or _default_admission()
        self._app_verify_token = app_verify_token
        self.failure: str | None = None  # set when background work died: liveness fails

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # A try costs nothing until it catches; contextlib.suppress, an object a request.
            try:  # noqa: SIM105
                await self._http(scope, receive, send)
            except Disconnected:
                pass
        elif scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if path.startswith(_CHANNEL_PREFIX):
            instance_id: str | None = path[len(_CHANNEL_PREFIX) :]
            if not instance_id:
                instance_id = None
            elif "/" in instance_id:
                return await _send(send, NOT_FOUND)
        elif path == SHARED_PATH:
            instance_id = None
        elif path == APP_PATH:
            return await self._app_callback(scope, receive, send)
        elif path == "/healthz":
            return await _send(send, OK if self.failure is None else HEALTH_FAILED)
        elif path == "/readyz":
            return await _send(send, OK if self.cache.synced else NOT_READY)
        else:
            return await _send(send, NOT_FOUND)
        method = scope["method"]
        if method == "POST":
            return await self._event(scope, receive, send, instance_id)
        if method == "GET":
            return await self._challenge(scope, send, instance_id)
        return await _send(send, NOT_ALLOWED)

    # --- GET: Meta's verification challenge ---------------------------------------------

    async def _challenge(self, scope: Scope, send: Send, instance_id: str | None) -> None:
        counted = SHARED if instance_id is None else PER_CHANNEL
        subscription = Subscription(scope["query_string"])
        if not subscription.well_formed:
            counted.challenge_refused.inc()
            return await _send(send, FORBIDDEN)
        if not self.cache.synced:
            counted.challenge_not_ready.inc()
            return await _send(send, NOT_READY)
        channels: tuple[Channel, ...]
        if instance_id is None:
            channels = self.cache.for_verify_token(subscription.verify_token)
        else:
            channel = self.cache.for_instance(instance_id)
            token = channel.verify_token if channel is not None else None
            matched = verify_token_matches(token, subscription.verify_token)
            channels = (channel,) if matched and channel is not None else ()
        if not channels:
            counted.challenge_refused.inc()
            return await _send(send, FORBIDDEN)
        counted.challenge_verified.inc()
        for channel in channels:
            if channel.notes_challenges:  # a managed webhook's registration is not ours to note
                self.status.challenge_succeeded(channel.name)
        assert subscription.challenge is not None
        await _send(send, _answer(200, subscription.challenge.encode()))

    # --- POST: an event -----------------------------------------------------------------

    async def _app_callback(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "POST":
            return await self._event(scope, receive, send, None, app=True)
        if method != "GET":
            return await _send(send, NOT_ALLOWED)
        subscription = Subscription(scope["query_string"])
        if not subscription.well_formed or not verify_token_matches(
            self._app_verify_token, subscription.verify_token
        ):
            APP.challenge_refused.inc()
            return await _send(send, FORBIDDEN)
        APP.challenge_verified.inc()
        assert subscription.challenge is not None
        await _send(send, _answer(200, subscription.challenge.encode()))

    async def _event(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        instance_id: str | None,
        *,
        app: bool = False,
    ) -> None:
        counted = APP if app else SHARED if instance_id is None else PER_CHANNEL
        signature: bytes | None = None
        length: bytes | None = None
        for name, value in scope["headers"]:
            if name == SIGNATURE_HEADER:
                signature = value
            elif name == b"content-length":
                length = value
        declared: int | None = None
        if length is not None:
            if not length.isdigit():
                counted.malformed.inc()
                return await _send(send, MALFORMED_EARLY)
            declared = int(length)
            if declared > self._max_body:
                counted.too_large.inc()
                return await _send(send, TOO_LARGE_EARLY)
        if not signature:
            counted.missing_signature.inc()
            return await _send(send, SIGNATURE_MISSING_EARLY)
        if not self.cache.synced:
            counted.not_ready.inc()
            return await _send(send, NOT_READY_EARLY)
        # Known before a byte of the body is read: an unknown or disabled channel costs the
        # receiver nothing.
        if instance_id is not None and self.cache.for_instance(instance_id) is None:
            counted.unknown_channel.inc()
            return await _send(send, FORBIDDEN_EARLY)
        admission = self.admission
        client = client_of(scope)
        pool = SHARED_POOL if instance_id is None else CHANNEL_POOL
        if not admission.admit(client, pool):
            counted.overloaded.inc()
            return await _send(send, OVERLOADED)
        held = 0
        try:
            try:
                body = await admission.read_body(receive, self._max_body, declared)
            except BodyTooLarge:
                counted.too_large.inc()
                return await _send(send, TOO_LARGE_EARLY)
            except OverBudget:
                counted.overloaded.inc()
                return await _send(send, OVERLOADED)
            except BodyTimedOut:
                counted.body_timed_out.inc()
                return await _send(send, BODY_TIMED_OUT)
            held = len(body)
            if app:
                answer = self._account_event(body, signature)
            elif instance_id is None:
                answer = await self._shared_event(body, signature)
            else:
                answer = await self._channel_event(instance_id, body, signature)
            await _send(send, answer)
        finally:
            admission.release(client, pool, held)

    async def _channel_event(
        self, instance_id: str, body: bytes, signature: bytes
    ) -> tuple[Message, Message]:
        channel = self.cache.for_instance(instance_id)  # again: the body took its time
        if channel is None:
            PER_CHANNEL.unknown_channel.inc()
            return FORBIDDEN
        checked = checked_signature(channel.app_secret, body, signature)
        if checked is None:
            log.info("refused an event for instance %s: bad signature", instance_id)
            PER_CHANNEL.bad_signature.inc()
            return FORBIDDEN
        try:
            routes = event_routes(body)
        except MalformedEvent:
            PER_CHANNEL.malformed.inc()
            return MALFORMED
        # A change for another phone number is, for this URL, an unknown channel: refused
        # (so Meta retries), never handed to this instance.
        if not routes.keys() <= {None, channel.phone_number_id}:
            log.warning("instance %s's URL got changes for other phone numbers", instance_id)
            PER_CHANNEL.foreign_phone.inc()
            return FORBIDDEN
        self.status.event_arrived(channel.name)
        started = time.perf_counter()
        delivery = await self.forwarder.deliver(channel.instance_id, body, checked)
        PER_CHANNEL.forward_seconds.observe(time.perf_counter() - started)
        if delivery is Delivery.ACCEPTED:  # the common case, without building a list
            PER_CHANNEL.forwarded.inc()
            return OK
        return _delivered([delivery], PER_CHANNEL)

    async def _shared_event(self, body: bytes, signature: bytes) -> tuple[Message, Message]:
        try:
            routes = event_routes(body)
        except MalformedEvent:
            SHARED.malformed.inc()
            return MALFORMED
        route = route_shared_event(routes, body, signature, self.cache.for_phone)
        if route is Refused.UNKNOWN_CHANNEL:
            SHARED.unknown_channel.inc()
            return FORBIDDEN
        if route is Refused.BAD_SIGNATURE:
            SHARED.bad_signature.inc()
            return FORBIDDEN
        if route is Refused.MALFORMED:
            SHARED.malformed.inc()
            return MALFORMED
        assert not isinstance(route, Refused)
        for channel, _, _ in route:
            self.status.event_arrived(channel.name)
        started = time.perf_counter()
        parts = [(c.instance_id, part, part_signature) for c, part, part_signature in route]
        deliveries = await deliver_all(self.forwarder, parts)
        SHARED.forward_seconds.observe(time.perf_counter() - started)
        return _delivered(deliveries, SHARED)

    def _account_event(self, body: bytes, signature: bytes) -> tuple[Message, Message]:
        try:
            accounts = account_changes(body)
        except MalformedEvent:
            APP.malformed.inc()
            return MALFORMED
        recheck = channels_to_recheck(accounts, body, signature, self.cache.for_waba)
        if recheck is Refused.UNKNOWN_CHANNEL:
            APP.unknown_channel.inc()
            return FORBIDDEN
        if isinstance(recheck, Refused):
            log.info("refused an account webhook: bad signature")
            APP.bad_signature.inc()
            return FORBIDDEN
        for channel in recheck:
            self.status.account_event(channel.name)
        APP.noted.inc()
        return OK

    # --- lifespan -----------------------------------------------------------------------

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with contextlib.AsyncExitStack() as stack:
            try:
                if self._lifespan is not None:
                    await stack.enter_async_context(self._lifespan())
            except Exception as exc:
                log.exception("receiver start-up failed")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        await send({"type": "lifespan.shutdown.complete"})


def admission_of(settings: ReceiverSettings) -> Admission:
    """The admission `settings` describe."""
    return Admission(
        max_requests=settings.max_concurrent_requests,
        max_buffered_bytes=settings.max_buffered_bytes,
        body_timeout=settings.body_timeout_seconds,
        max_per_client=settings.max_requests_per_client,
    )


def _default_admission() -> Admission:
    """The admission the settings' defaults describe (model_construct: no environment)."""
    return admission_of(ReceiverSettings.model_construct())


def _delivered(deliveries: list[Delivery], counted: Endpoint) -> tuple[Message, Message]:
    """200 only when every instance accepted; otherwise a 5xx, so Meta delivers again."""
    if all(d is Delivery.ACCEPTED for d in deliveries):
        counted.forwarded.inc()
        return OK
    for d in deliveries:
        if d is not Delivery.ACCEPTED:
            FAILED_DELIVERIES[d].inc()
    if any(d is Delivery.BUSY for d in deliveries):
        counted.forward_busy.inc()
        return INSTANCE_BUSY
    if all(d in (Delivery.ACCEPTED, Delivery.TIMED_OUT) for d in deliveries):
        counted.forward_timed_out.inc()
        return DELIVERY_TIMED_OUT
    counted.forward_refused.inc()
    return NOT_DELIVERED


async def _send(send: Send, answer: tuple[Message, Message]) -> None:
    await send(answer[0])
    await send(answer[1])


def create_app(settings: ReceiverSettings, kube: Kube | None = None) -> Receiver:
    """The receiver as it runs: the cache fed by a watch on the channel Secrets, the
    status writer and the forwarder started and stopped with the app. Without `kube`, one
    is made here with `Kube.connect` (and closed at shutdown); a given one belongs to the
    caller. An unreadable forward secret or no cluster credentials fail here."""
    cache = ChannelCache()
    forwarder = Forwarder(
        settings.forward_url_template,
        settings.forward_secret(),
        timeout=settings.forward_timeout_seconds,
        max_connections=settings.forward_max_connections,
        max_per_instance=settings.forward_max_per_instance,
    )
    owned = kube is None
    client = kube if kube is not None else Kube.connect(user_agent="whatsapp-receiver")
    status = StatusWriter(
        client.merge_patch, settings.namespace, interval=settings.status_write_interval_seconds
    )
    receiver: Receiver

    def background_died(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            receiver.failure = task.get_name()
            log.critical("%s stopped", task.get_name(), exc_info=task.exception())

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        await forwarder.start()
        watch = reflect(
            client,
            core_path("secrets", settings.namespace),
            cache.apply,
            label_selector=channel_secret.SELECTOR,
            on_synced=cache.mark_synced,
        )
        tasks = [
            asyncio.create_task(watch, name="channel watch"),
            asyncio.create_task(status.run(), name="status writer"),
        ]
        for task in tasks:
            task.add_done_callback(background_died)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(status.flush(all_pending=True), timeout=5)
            await forwarder.close()
            if owned:
                await client.close()

    receiver = Receiver(
        cache,
        forwarder,
        status,
        max_body_bytes=settings.max_body_bytes,
        lifespan=lifespan,
        admission=admission_of(settings),
        app_verify_token=settings.app_verify_token(),
    )
    return receiver

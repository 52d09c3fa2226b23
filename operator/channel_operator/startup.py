"""Kopf's settings, chosen on purpose, and the operator's start and stop.

Writes per new channel: Kopf's finalizer, the Secret, one status patch. An unchanged channel
on restart costs none. Two storages make that so:

- progress (only while a handler retries) sits in annotations under our own prefix, without
  Kopf's one-off `<prefix>/kopf-managed` marker, which would cost a patch per channel (a
  storage of our own: Kopf has no setting to drop the marker, see `ProgressAnnotations`);
- "what was handled last" is `status.observedGeneration`, which the operator writes anyway
  when a generation is fully reconciled, instead of a copy of the spec in an annotation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any, cast

import kopf
from whatsapp_channel.kube import Kube, channels_path, list_pages, reflect
from whatsapp_channel.model import FINALIZER, GROUP
from whatsapp_channel.phone_claims import claim_fields

from channel_operator import keystore, metrics, platform_app, reconcile, tenancy
from channel_operator.channel_at_meta import Meta
from channel_operator.channel_secrets import ChannelSecrets
from channel_operator.events import warning_poster
from channel_operator.graph import CallBudget, GraphClient
from channel_operator.health import HealthSchedule
from channel_operator.platform_app import PlatformApp
from channel_operator.reconcile import Runtime
from channel_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = GROUP
# An annotation's name part (after the prefix), and the one Kopf's touch() sets.
ANNOTATION_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
TOUCH_KEY = "touch-dummy"
SYNC_TIMEOUT = 60.0


class ProgressAnnotations(kopf.ProgressStorage):
    """Handler progress in annotations `<prefix>/<handler id>`, each record stamped with the
    generation it was made for: a new spec (say, a fixed seal) is worked on at once with a
    fresh backoff, instead of waiting out the old spec's delay.

    Kopf's own `AnnotationsProgressStorage` also brands every object it writes progress to
    with a `<prefix>/kopf-managed` annotation, one more patch per channel. Kopf has no setting
    for that: the marker is "not configurable ... except as by writing self-made storages"
    (kopf/_cogs/configs/conventions.py), and its docs ("Handling progress") say how: inherit
    from `kopf.ProgressStorage`. So this is one, on that public base class alone. Its keys
    are the ones Kopf's storage wrote (v2 keys of short handler ids), so progress left by an
    older operator is still read.
    """

    def __init__(self, *, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def name(self, key: str) -> str:
        """The annotation of handler `key` (an id Kopf would not shorten or rewrite)."""
        if not ANNOTATION_NAME.fullmatch(key):
            raise ValueError(f"handler id {key!r} is not an annotation name")
        return f"{self.prefix}/{key}"

    def fetch(self, *, key: str, body: kopf.Body) -> kopf.ProgressRecord | None:
        stored = body.metadata.annotations.get(self.name(key))
        if stored is None:
            return None
        record = json.loads(stored)
        if record.pop("generation", None) != body.metadata.get("generation"):
            return None
        return cast(kopf.ProgressRecord, record)

    def store(
        self, *, key: str, record: kopf.ProgressRecord, body: kopf.Body, patch: kopf.Patch
    ) -> None:
        stamped = {k: v for k, v in record.items() if v is not None}
        stamped["generation"] = body.metadata.get("generation")
        patch.metadata.annotations[self.name(key)] = json.dumps(stamped, separators=(",", ":"))

    def purge(self, *, key: str, body: kopf.Body, patch: kopf.Patch) -> None:
        self._unset(self.name(key), body, patch)

    def touch(self, *, body: kopf.Body, patch: kopf.Patch, value: str | None) -> None:
        """Kopf's wake-up call after a delay: a dummy annotation set (or, None, removed)."""
        name = self.name(TOUCH_KEY)
        if value is None:
            self._unset(name, body, patch)
        elif body.metadata.annotations.get(name) != value:
            patch.metadata.annotations[name] = value

    def clear(self, *, essence: kopf.BodyEssence) -> kopf.BodyEssence:
        essence = super().clear(essence=essence)
        annotations = essence.get("metadata", {}).get("annotations", {})
        self.remove_annotations(
            essence, {k for k in annotations if k.startswith(f"{self.prefix}/")}
        )
        self.remove_empty_stanzas(essence)
        return essence

    @staticmethod
    def _unset(name: str, body: kopf.Body, patch: kopf.Patch) -> None:
        """Remove annotation `name`: from the object if it has it, else from the patch (an
        empty patch is no write)."""
        if name in body.metadata.annotations:
            patch.metadata.annotations[name] = None
            return
        metadata = patch.get("metadata", {})
        metadata.get("annotations", {}).pop(name, None)
        if "annotations" in metadata and not metadata["annotations"]:
            del metadata["annotations"]
        if "metadata" in patch and not metadata:
            del patch["metadata"]


class ObservedGeneration(kopf.DiffBaseStorage):
    """The last handled state is the generation `status.observedGeneration` names.

    The operator reconciles from the whole current spec, never from a diff, so Kopf only
    needs to know whether this generation was handled: new (no observedGeneration: create),
    changed (another generation: update) or done (same: resume on restart, else nothing).
    The operator writes observedGeneration itself, in the status patch that ends a successful
    reconcile; storing here is a no-op. A failure leaves it behind, so Kopf keeps retrying.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {"metadata": {"generation": body.metadata.get("generation")}})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        observed = (body.get("status") or {}).get("observedGeneration")
        if observed is None:
            return None
        return cast(kopf.BodyEssence, {"metadata": {"generation": observed}})

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


# The apiserver streams a watch's initial objects (`sendInitialEvents`, the WatchList
# feature) from this release on (Kopf's `initial_streaming`); an older one is listed.
WATCH_LIST_SINCE = (1, 34)


async def streams_initial_events(kube: Kube) -> bool:
    """Whether the apiserver (its `/version`) streams a watch's initial objects."""
    version = await kube.get("/version")
    minor = re.match(r"\d+", str(version.get("minor", "")))
    major = re.match(r"\d+", str(version.get("major", "")))
    if major is None or minor is None:
        return False
    return (int(major.group()), int(minor.group())) >= WATCH_LIST_SINCE


def configure(settings: kopf.OperatorSettings, *, initial_streaming: bool = False) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = ProgressAnnotations(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = ObservedGeneration()
    # Events only for what a person should look at: the handlers post a Warning when a
    # channel starts failing; no event per success (two more writes per channel), and Kopf's
    # own log lines are not posted. Messages never carry credentials.
    settings.posting.level = logging.WARNING
    settings.posting.loggers = False
    settings.posting.reporting_component = "whatsapp-channel-operator"
    # One namespace, known in advance: no cluster-wide watching of CRDs and namespaces.
    settings.scanning.disabled = True
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    # Where the apiserver streams a watch's initial objects, Kopf takes the channels that way
    # instead of listing them: the stream is read as fast as Kopf queues what it has read, so
    # a start over 50,000 channels no longer holds a whole listing (every channel decoded at
    # once: 845 MB at 20,000, docs/benchmarks.md). Without it Kopf lists in one answer,
    # never in pages: it asks for the next page only once it has queued the last, so at
    # 50,000 channels a paged listing outlasted etcd's compaction (5 min), the page token
    # expired (410) and the watcher stopped the operator.
    settings.watching.initial_streaming = initial_streaming
    settings.watching.chunk_size = None
    # A watch ends by the server's timeout well after its initial objects have arrived (a
    # stream cut short before them resumes from the last object read, not from the start);
    # a hung one ends when nothing (not even a bookmark, sent every minute) arrives for
    # Kopf's inactivity timeout (70 s).
    settings.watching.server_timeout = 1800
    settings.watching.client_timeout = 1830
    # A burst of thousands of new channels is worked on by a bounded number of workers. A
    # worker holds its slot for idle_timeout after its object's last event (Kopf's default,
    # 5 s, capped throughput at worker_limit / 5 s; see docs/benchmarks.md); apiserver
    # calls are bounded separately by the client's own concurrency.
    settings.queueing.worker_limit = 1000
    settings.queueing.idle_timeout = 0.5
    settings.peering.standalone = True


def connection_info(kube: Kube) -> kopf.ConnectionInfo:
    """Kopf's own connection, with the credentials `kube` was made with (loaded once; a
    re-login after a 401 reads a rotated service-account token afresh)."""
    config = kube.config
    token = config.token_refresh() if config.token_refresh is not None else config.token
    return kopf.ConnectionInfo(
        server=config.server,
        ca_path=config.ca_file,
        insecure=not config.verify,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        token=token,
    )


def supervise(rt: Runtime, task: asyncio.Task[None]) -> asyncio.Task[None]:
    """A background task of the operator (the Secret watch, the claims watch, the sealing
    keys' guard, the health schedule) runs until the operator stops. Should one end before
    that (a bug), it is logged with its traceback and liveness fails naming it
    (`handlers.background_tasks`), so Kubernetes restarts the operator instead of it running
    on without that task."""

    def ended(done: asyncio.Task[None]) -> None:
        if done.cancelled():
            return  # stopped by `stop` (or the operator's own shutdown)
        error = done.exception()
        rt.ended.append(done.get_name())
        log.error(
            "background task %r ended%s; the operator reports itself not live",
            done.get_name(),
            "" if error is None else f" with {type(error).__name__}",
            exc_info=error,
        )

    task.add_done_callback(ended)
    return task


def background_tasks(rt: Runtime) -> str:
    """The liveness probe's answer: 500 (a permanent probe failure) once a task ended."""
    if rt.ended:
        raise kopf.PermanentError(f"background task(s) ended: {', '.join(rt.ended)}")
    return "running"


def load_platform_app(settings: OperatorSettings) -> PlatformApp | None:
    """The platform's Meta app when configured (a broken one stops the start, by name)."""
    if settings.platform_app_dir is None:
        return None
    app = platform_app.load(settings.platform_app_dir)
    log.info("platform app %s loaded (a channel may leave out its app secret)", app.app_id)
    return app


async def start(settings: OperatorSettings, kube: Kube) -> Runtime:
    """Keys ready, Secret cache synced, leftovers of deleted channels swept: then Kopf may
    start handling channels. `kube` is the runtime's from then on (closed by `stop`)."""
    namespace, keys_namespace = settings.namespace, settings.sealing_namespace
    task: asyncio.Task[None] | None = None
    claims_task: asyncio.Task[None] | None = None
    keys_task: asyncio.Task[None] | None = None
    try:
        if keys_namespace == namespace:
            log.warning(
                "the sealing keys share namespace %s with the channels: whoever may read its "
                "Secrets (the webhook receiver) can read them; set WA_KEYS_NAMESPACE "
                "to the operator's own namespace",
                namespace,
            )
        keyring = await keystore.ensure(kube, keys_namespace, channels_namespace=namespace)
        log.info(
            "sealing keys ready in namespace %s; new seals use key %s",
            keys_namespace,
            keyring.active_key_id,
        )
        secrets = ChannelSecrets(kube, namespace)
        rt = Runtime(
            kube=kube,
            namespace=namespace,
            webhook_base_url=settings.webhook_base_url,
            keys=keystore.Keys(kube=kube, namespace=keys_namespace, keyring=keyring),
            secrets=secrets,
            platform_app=load_platform_app(settings),
        )
        keys_task = rt.keys_keeper = supervise(
            rt, asyncio.create_task(rt.keys.keep(), name="sealing keys")
        )

        rt.meta = Meta(
            graph=GraphClient(
                settings.graph_base_url,
                settings.graph_version,
                timeout=settings.graph_timeout_seconds,
                max_concurrency=settings.graph_max_concurrency,
                budget=CallBudget(
                    settings.graph_account_call_budget,
                    3600.0,
                    active_limit=settings.graph_active_account_call_budget,
                ),
                observe=metrics.graph_call,
                trust_env=settings.graph_proxy_from_env,
                plain_http_host=settings.graph_plain_http_host or None,
                throttle_seconds=settings.graph_throttle_seconds,
            ),
            webhook_mode=settings.webhook_mode,
            health_period=settings.health_period_seconds,
        )
        warn_for = warning_poster(kube)

        async def recheck(channel: str) -> float | None:
            return await reconcile.recheck(rt, channel, warn_for)

        rt.health = HealthSchedule(settings.health_period_seconds, recheck)

        async def on_drift(channel: str) -> None:
            await reconcile.repair(rt, channel)

        task = rt.watcher = asyncio.create_task(secrets.run(on_drift), name="channel secrets")
        claims = tenancy.PhoneClaimIndex()
        rt.phone_claims = claims
        claims_task = rt.claims_watcher = asyncio.create_task(
            reflect(
                kube,
                channels_path(namespace),
                claims.on_event,
                on_synced=claims.synced.set,
                keep=claim_fields,
            ),
            name="phone claims",
        )
        supervise(rt, task)
        supervise(rt, claims_task)
        await asyncio.wait_for(secrets.synced.wait(), timeout=SYNC_TIMEOUT)
        await asyncio.wait_for(claims.synced.wait(), timeout=SYNC_TIMEOUT)
        names = [
            item["metadata"]["name"]
            async for page in list_pages(kube, channels_path(namespace))
            for item in page.get("items") or []
        ]
        swept = await secrets.sweep(names)
        log.info("%d channel Secret(s) cached, %d left-over swept", len(secrets), swept)
        rt.health_task = supervise(rt, asyncio.create_task(rt.health.run(), name="health checks"))
        return rt
    except BaseException:
        for started in (task, claims_task, keys_task):
            if started is not None:
                started.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await started
        await kube.close()
        raise


async def stop(rt: Runtime) -> None:
    tasks = (rt.watcher, rt.claims_watcher, rt.health_task, rt.keys_keeper)
    rt.watcher = rt.claims_watcher = rt.health_task = rt.keys_keeper = None
    for task in tasks:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if rt.meta is not None:
        await rt.meta.graph.close()
    await rt.secrets.close()
    await rt.kube.close()

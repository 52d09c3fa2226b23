"""A small in-memory apiserver behind the real `Kube` adapter, for the operator's and the
facade's logic without a cluster.

`MemoryKube` keeps what they rely on: objects by path, resourceVersion conflicts, uid
preconditions, generation (the spec changed), what a replace may not change (uid, status,
deletionTimestamp), finalizers (a delete only marks the object), list + watch. It records
every call, write and request body, and plays faults: `failing` (method -> the error every
such call raises), `down` (nothing answers), `watch_down` (only watches fail), `delay`.
`OperatedKube` adds a trivial operator, for the facade. Claims about Kubernetes itself are
made against the real control plane, not here.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any

from whatsapp_channel.kube import (
    JSON,
    Conflict,
    Kube,
    KubeConfig,
    KubeError,
    NotFound,
    Unavailable,
    channels_path,
    core_path,
)
from whatsapp_channel.model import (
    ACTIVE_KEY_ID_FIELD,
    PLURAL,
    PUBLIC_KEYS_FIELD,
    READY,
    SEALING_PUBLIC_CONFIGMAP,
    set_condition,
    webhook_url,
)
from whatsapp_channel.reasons import CHANNEL_DISABLED, CHANNEL_READY
from whatsapp_channel.sealing import PublicSealingKey

# A namespaced collection (core or of a group), then an object's name.
_PATH = re.compile(r"^(/apis?/(?:[^/]+/)?v1[^/]*/namespaces/[^/]+/[^/]+)(?:/([^/]+))?$")
WEBHOOK_BASE = "https://hooks.example.test"


def _merged(target: Any, patch: Any) -> Any:
    """RFC 7386: `patch` merged into `target` (null deletes)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merged(result.get(key), value)
    return result


def _collection(path: str) -> str:
    return path.rsplit("/", 1)[0]


class MemoryKube(Kube):
    def __init__(self, *, timeout: float = 0.5) -> None:
        super().__init__(KubeConfig(server="http://memory.invalid"), timeout=timeout)
        self.objects: dict[str, JSON] = {}  # by the object's path
        self.events: list[tuple[int, str, str, JSON]] = []  # rv, collection, type, object
        self.calls: list[tuple[str, str]] = []
        self.writes: list[tuple[str, str]] = []
        self.bodies: list[str] = []  # every request body as sent, to look for leaks
        self.failing: dict[str, KubeError] = {}
        self.down = False
        self.watch_down = False  # only watches fail: the facade must not depend on them
        self.delay = 0.0
        self._version = 0
        self._changed = asyncio.Condition()
        self._tasks: set[asyncio.Task[None]] = set()

    def secret_writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.writes if "/secrets" in p]

    def channel(self, namespace: str, name: str) -> JSON | None:
        obj = self.objects.get(channels_path(namespace, name))
        return copy.deepcopy(obj) if obj else None

    def for_another_loop(self) -> MemoryKube:
        """The same objects: they are this process's, whichever loop asks."""
        return self

    # --- the apiserver ------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> JSON:
        self.calls.append((method, path))
        if method != "GET":
            self.writes.append((method, path))
        if body is not None:
            self.bodies.append(json.dumps(body))
        if self.down:
            raise Unavailable(503, "Unavailable", "apiserver unreachable: ClientConnectorError")
        if method in self.failing:
            raise self.failing[method]
        if self.delay:
            try:
                async with asyncio.timeout(timeout or self._timeout):
                    await asyncio.sleep(self.delay)
            except TimeoutError:
                raise Unavailable(
                    503, "Unavailable", "apiserver unreachable: TimeoutError"
                ) from None
        match = _PATH.match(path)
        assert match, path
        collection, name = match.groups()
        if method == "GET":
            return self._list(collection) if name is None else self._get(path)
        if method == "POST":
            path = f"{collection}/{body['metadata']['name']}"
            stored = self._create(path, body)
        elif method == "PUT":
            stored = self._replace(path, body)
        elif method == "DELETE":
            stored = self._delete(path, body)
        elif method == "PATCH":  # a JSON merge patch (a resourceVersion in it is a precondition)
            current = self._get(path)
            stored = self._replace(path, _merged(current, body))
        else:
            raise AssertionError(f"unexpected {method} {path}")
        self._written(method, path, stored)
        return stored

    def _list(self, collection: str) -> JSON:
        items = [copy.deepcopy(o) for p, o in self.objects.items() if _collection(p) == collection]
        return {"kind": "List", "metadata": {"resourceVersion": str(self._version)}, "items": items}

    def _get(self, path: str) -> JSON:
        if path not in self.objects:
            raise NotFound(404, "NotFound", f"{path} not found")
        return copy.deepcopy(self.objects[path])

    def _create(self, path: str, body: JSON) -> JSON:
        if path in self.objects:
            raise Conflict(409, "AlreadyExists", f"{path} already exists")
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            uid=str(uuid.uuid4()), generation=1, creationTimestamp="2026-01-01T00:00:00Z"
        )
        obj.pop("status", None)
        return self._store(path, obj, "ADDED")

    def _replace(self, path: str, body: JSON) -> JSON:
        current = self.objects.get(path)
        if current is None:
            raise NotFound(404, "NotFound", f"{path} not found")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict(409, "Conflict", "the object has been modified")
        obj = copy.deepcopy(body)
        was = current["metadata"]
        for field in ("uid", "creationTimestamp", "deletionTimestamp"):
            if field in was:
                obj["metadata"][field] = was[field]
        generation = was.get("generation", 1)
        obj["metadata"]["generation"] = generation + (obj.get("spec") != current.get("spec"))
        obj.pop("status", None)
        if "status" in current:  # written through its own subresource only
            obj["status"] = copy.deepcopy(current["status"])
        return self._store(path, obj, "MODIFIED")

    def _delete(self, path: str, body: JSON | None) -> JSON:
        current = self.objects.get(path)
        if current is None:
            raise NotFound(404, "NotFound", f"{path} not found")
        wanted_uid = ((body or {}).get("preconditions") or {}).get("uid")
        if wanted_uid and wanted_uid != current["metadata"]["uid"]:
            raise Conflict(409, "Conflict", "precondition failed")
        obj = copy.deepcopy(current)
        if obj["metadata"].get("finalizers"):
            obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
            return self._store(path, obj, "MODIFIED")
        return self._store(path, obj, "DELETED")

    def _store(self, path: str, obj: JSON, kind: str) -> JSON:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        if kind == "DELETED":
            self.objects.pop(path, None)
        else:
            self.objects[path] = obj
        self.events.append((self._version, _collection(path), kind, copy.deepcopy(obj)))
        self._wake()
        return copy.deepcopy(obj)

    def _written(self, method: str, path: str, stored: JSON) -> None:
        """A write to `path` went through: where a controller (`OperatedKube`) takes it up."""

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 290,
    ) -> AsyncIterator[JSON]:
        assert _PATH.match(path), path
        seen = int(resource_version)
        while True:
            if self.down or self.watch_down:
                raise Unavailable(503, "Unavailable", "watch interrupted: ClientConnectorError")
            pending = [e for e in self.events if e[0] > seen and e[1] == path]
            for rv, _, kind, obj in pending:
                seen = rv
                yield {"type": kind, "object": copy.deepcopy(obj)}
            if not pending:
                seen = self._version
                async with self._changed:
                    try:
                        async with asyncio.timeout(0.5):
                            await self._changed.wait()
                    except TimeoutError:
                        pass

    def _wake(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # set up before the loop runs: nobody is watching yet
        self._spawn(notify())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class OperatedKube(MemoryKube):
    """A `MemoryKube` with a trivial operator at work: its sealing key published in
    `namespace`; each channel written reported Ready after `reconcile_delay` (None: never);
    each channel whose delete a finalizer holds let go after `finalize_delay`."""

    def __init__(
        self,
        sealing_key: PublicSealingKey | None = None,
        namespace: str = "",
        *,
        timeout: float = 0.5,
    ) -> None:
        super().__init__(timeout=timeout)
        self.reconcile_delay: float | None = 0.01
        self.finalize_delay = 0.01
        if sealing_key is not None:
            self.publish_key(namespace, sealing_key)

    def publish_key(self, namespace: str, key: PublicSealingKey) -> None:
        self._store(
            core_path("configmaps", namespace, SEALING_PUBLIC_CONFIGMAP),
            {
                "metadata": {"name": SEALING_PUBLIC_CONFIGMAP, "namespace": namespace},
                "data": {
                    ACTIVE_KEY_ID_FIELD: key.key_id,
                    PUBLIC_KEYS_FIELD: json.dumps({key.key_id: key.b64}),
                },
            },
            "ADDED",
        )

    def _written(self, method: str, path: str, stored: JSON) -> None:
        if not _collection(path).endswith(f"/{PLURAL}"):
            return
        if method == "DELETE":
            if stored["metadata"].get("deletionTimestamp"):
                self._spawn(self._finalize(path, self.finalize_delay))
        elif self.reconcile_delay is not None:
            self._spawn(self._reconcile(path, self.reconcile_delay))

    async def _reconcile(self, path: str, delay: float) -> None:
        await asyncio.sleep(delay)
        current = self.objects.get(path)
        if current is None or current["metadata"].get("deletionTimestamp"):
            return
        obj = copy.deepcopy(current)
        generation = obj["metadata"]["generation"]
        status = obj.setdefault("status", {})
        enabled = (obj.get("spec") or {}).get("enabled", True)
        status["conditions"] = set_condition(  # Ready as the real operator reports it
            status.get("conditions") or [],
            READY,
            ok=True,
            reason=CHANNEL_READY if enabled else CHANNEL_DISABLED,
            message="the channel is ready",
            generation=generation,
        )
        status["observedGeneration"] = generation
        status["webhookUrl"] = webhook_url(WEBHOOK_BASE, obj["metadata"]["name"])
        self._store(path, obj, "MODIFIED")

    async def _finalize(self, path: str, delay: float) -> None:
        await asyncio.sleep(delay)
        current = self.objects.get(path)
        if current is not None:
            self._store(path, copy.deepcopy(current), "DELETED")

"""A small in-memory apiserver behind the real `Kube` adapter, for the facade's route logic.

It keeps what the facade relies on (resourceVersion conflicts, generation, the status
subresource, finalizers, list+watch) and plays a trivial operator. Claims about Kubernetes
itself are made against the real control plane, not here.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

from whatsapp_channel.kube import (
    JSON,
    Conflict,
    Kube,
    KubeConfig,
    KubeError,
    NotFound,
    Unavailable,
)
from whatsapp_channel.model import (
    ACTIVE_KEY_ID_FIELD,
    PUBLIC_KEYS_FIELD,
    READY,
    SEALING_PUBLIC_CONFIGMAP,
    set_condition,
    webhook_url,
)
from whatsapp_channel.sealing import PublicSealingKey

_PATH = re.compile(r"^/apis?/(?:[^/]+/)?v1[^/]*/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")
WEBHOOK_BASE = "https://hooks.example.test"


class FakeKube(Kube):
    def __init__(
        self,
        sealing_key: PublicSealingKey | None = None,
        namespace: str = "",
        *,
        timeout: float = 0.5,
    ) -> None:
        super().__init__(KubeConfig(server="http://fake.invalid"), timeout=timeout)
        self.objects: dict[tuple[str, str, str], JSON] = {}
        self.events: list[tuple[int, str, str, str, JSON]] = []  # rv, ns, plural, type, obj
        self._versions = itertools.count(1)
        self._changed = asyncio.Condition()
        self.down = False
        self.watch_down = False  # only watches fail: the facade must not depend on them
        self.delay = 0.0
        self.calls: list[tuple[str, str]] = []
        self.fail_next: dict[str, KubeError] = {}  # method -> the error its next call raises
        self.bodies: list[str] = []  # every request body as sent, to look for leaks
        # The trivial operator: reports Ready after `reconcile_delay` (None: never).
        self.reconcile_delay: float | None = 0.01
        self.finalize_delay = 0.01
        self._tasks: set[asyncio.Task[None]] = set()
        if sealing_key is not None:
            self.publish_key(namespace, sealing_key)

    def publish_key(self, namespace: str, key: PublicSealingKey) -> None:
        self._store(
            namespace,
            "configmaps",
            {
                "metadata": {"name": SEALING_PUBLIC_CONFIGMAP, "namespace": namespace},
                "data": {
                    ACTIVE_KEY_ID_FIELD: key.key_id,
                    PUBLIC_KEYS_FIELD: json.dumps({key.key_id: key.b64}),
                },
            },
            "ADDED",
        )

    def channel(self, namespace: str, name: str) -> JSON | None:
        obj = self.objects.get((namespace, "whatsappchannels", name))
        return copy.deepcopy(obj) if obj else None

    # --- the apiserver ------------------------------------------------------------------

    def _store(self, namespace: str, plural: str, obj: JSON, kind: str) -> JSON:
        obj["metadata"]["resourceVersion"] = rv = str(next(self._versions))
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.objects.pop((namespace, plural, name), None)
        else:
            self.objects[(namespace, plural, name)] = obj
        self.events.append((int(rv), namespace, plural, kind, copy.deepcopy(obj)))
        self._wake()
        return copy.deepcopy(obj)

    def _wake(self) -> None:
        async def notify() -> None:
            async with self._changed:
                self._changed.notify_all()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # set up before the loop runs: nobody is watching yet
        self._spawn(notify())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        if body is not None:
            self.bodies.append(json.dumps(body))
        if self.down:
            raise Unavailable(503, "Unavailable", "apiserver unreachable: ClientConnectorError")
        if method in self.fail_next:
            raise self.fail_next.pop(method)
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
        namespace, plural, name = match.groups()
        key = (namespace, plural, name or "")
        if method == "GET" and name is None:
            items = [
                copy.deepcopy(o)
                for (ns, p, _), o in self.objects.items()
                if (ns, p) == (namespace, plural)
            ]
            version = str(self.events[-1][0]) if self.events else "0"
            return {"kind": "List", "metadata": {"resourceVersion": version}, "items": items}
        if method == "GET":
            if key not in self.objects:
                raise NotFound(404, "NotFound", f"{plural} {name!r} not found")
            return copy.deepcopy(self.objects[key])
        if method == "POST":
            obj = copy.deepcopy(body)
            name = obj["metadata"]["name"]
            if (namespace, plural, name) in self.objects:
                raise Conflict(409, "AlreadyExists", f"{plural} {name!r} already exists")
            obj["metadata"].update(
                uid=str(uuid.uuid4()),
                generation=1,
                creationTimestamp="2026-01-01T00:00:00Z",
                finalizers=["fake.operator/cleanup"],
            )
            obj.pop("status", None)
            stored = self._store(namespace, plural, obj, "ADDED")
            self._reconcile_later(namespace, name)
            return stored
        if method == "PUT":
            current = self.objects.get(key)
            if current is None:
                raise NotFound(404, "NotFound", f"{plural} {name!r} not found")
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise Conflict(409, "Conflict", "the object has been modified")
            obj = copy.deepcopy(body)
            obj["metadata"] = {**current["metadata"], **obj["metadata"]}
            obj["metadata"]["uid"] = current["metadata"]["uid"]
            if obj.get("spec") != current.get("spec"):
                obj["metadata"]["generation"] = current["metadata"]["generation"] + 1
            if "status" in current:
                obj["status"] = copy.deepcopy(current["status"])
            stored = self._store(namespace, plural, obj, "MODIFIED")
            self._reconcile_later(namespace, name or "")
            return stored
        if method == "DELETE":
            current = self.objects.get(key)
            if current is None:
                raise NotFound(404, "NotFound", f"{plural} {name!r} not found")
            if current["metadata"].get("finalizers"):
                obj = copy.deepcopy(current)
                obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:01Z"
                stored = self._store(namespace, plural, obj, "MODIFIED")
                self._finalize_later(namespace, name or "")
                return stored
            return self._store(namespace, plural, copy.deepcopy(current), "DELETED")
        raise AssertionError(f"unexpected {method} {path}")

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        label_selector: str | None = None,
        timeout_seconds: int = 290,
    ) -> AsyncIterator[JSON]:
        match = _PATH.match(path)
        assert match, path
        namespace, plural, _ = match.groups()
        seen = int(resource_version)
        while True:
            if self.down or self.watch_down:
                raise Unavailable(503, "Unavailable", "watch interrupted: ClientConnectorError")
            pending = [e for e in self.events if e[0] > seen and e[1:3] == (namespace, plural)]
            for rv, _, _, kind, obj in pending:
                seen = rv
                yield {"type": kind, "object": copy.deepcopy(obj)}
            if not pending:
                seen = self.events[-1][0] if self.events else seen
                async with self._changed:
                    try:
                        async with asyncio.timeout(0.5):
                            await self._changed.wait()
                    except TimeoutError:
                        pass

    # --- the trivial operator -------------------------------------------------------------

    def _reconcile_later(self, namespace: str, name: str) -> None:
        if self.reconcile_delay is None or not name:
            return
        delay = self.reconcile_delay

        async def reconcile() -> None:
            await asyncio.sleep(delay)
            current = self.objects.get((namespace, "whatsappchannels", name))
            if current is None or current["metadata"].get("deletionTimestamp"):
                return
            obj = copy.deepcopy(current)
            generation = obj["metadata"]["generation"]
            status = obj.setdefault("status", {})
            status["conditions"] = set_condition(
                status.get("conditions") or [],
                READY,
                ok=True,
                reason="Ready",
                message="the channel is ready",
                generation=generation,
            )
            status["observedGeneration"] = generation
            status["webhookUrl"] = webhook_url(WEBHOOK_BASE, name)
            self._store(namespace, "whatsappchannels", obj, "MODIFIED")

        self._spawn(reconcile())

    def _finalize_later(self, namespace: str, name: str) -> None:
        delay = self.finalize_delay

        async def finalize() -> None:
            await asyncio.sleep(delay)
            current = self.objects.get((namespace, "whatsappchannels", name))
            if current is not None:
                self._store(namespace, "whatsappchannels", copy.deepcopy(current), "DELETED")

        self._spawn(finalize())

"""The one Kubernetes client adapter: async JSON over aiohttp, typed errors, list+watch.

Credentials come from a kubeconfig (the `kubernetes` package parses it, exec plugins and
all) or from the in-cluster service account. Every process of the product talks to the
apiserver through `Kube`, never through another client, and makes it one way:
`Kube.connect(user_agent=...)`, at start, before its event loop runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from whatsapp_channel.model import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

JSON = dict[str, Any]


class KubeConfigError(Exception):
    """No usable cluster credentials: neither a kubeconfig nor an in-cluster account."""


class KubeError(Exception):
    """An apiserver answer other than success. `message` is the apiserver's own words."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    """409: AlreadyExists on create, a stale resourceVersion on update."""


class Invalid(KubeError):
    """422: the apiserver's schema or CEL validation refused the object."""


class Forbidden(KubeError):
    pass


class Gone(KubeError):
    """410: a watch's resourceVersion is too old; list again."""


class Unavailable(KubeError):
    """The apiserver could not be reached, timed out, or answered 5xx/429."""


_ERRORS: Mapping[int, type[KubeError]] = {
    404: NotFound,
    409: Conflict,
    422: Invalid,
    403: Forbidden,
    401: Forbidden,
    410: Gone,
}


@dataclass(frozen=True)
class KubeConfig:
    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    verify: bool = True
    token_refresh: Callable[[], str | None] | None = None


def load_config(kubeconfig: str | None = None) -> KubeConfig:
    """From `kubeconfig` (a path), else $KUBECONFIG/~/.kube/config, else in-cluster."""
    from kubernetes import client, config  # slow import, only at start-up

    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    except config.ConfigException:
        if kubeconfig:
            raise
        config.load_incluster_config(client_configuration=cfg)

    def current_token() -> str | None:
        hook = getattr(cfg, "refresh_api_key_hook", None)
        if hook is not None:
            hook(cfg)
        header = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
        if not header:
            return None
        value = str(header)
        return value.split(" ", 1)[1] if value.lower().startswith("bearer ") else value

    return KubeConfig(
        server=str(cfg.host).rstrip("/"),
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        token=current_token(),
        verify=bool(cfg.verify_ssl),
        token_refresh=current_token,
    )


def channels_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    if name is not None:
        path += f"/{quote(name, safe='')}"
    if subresource is not None:
        path += f"/{subresource}"
    return path


def core_path(plural: str, namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{namespace}/{plural}"
    return path if name is None else f"{path}/{quote(name, safe='')}"


MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class Kube:
    """An apiserver connection. Concurrency is capped so a burst cannot open a thousand
    sockets; requests time out instead of hanging."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        timeout: float = 10.0,
        max_concurrency: int = 32,
        user_agent: str = "whatsapp-channels",
    ) -> None:
        self.config = config
        self._timeout = timeout
        self._limit = asyncio.Semaphore(max_concurrency)
        self._session: aiohttp.ClientSession | None = None
        self._token = config.token
        self._token_read_at = time.monotonic()
        self._user_agent = user_agent
        self._max_concurrency = max_concurrency

    @classmethod
    def connect(
        cls,
        kubeconfig: str | None = None,
        *,
        user_agent: str,
        timeout: float = 10.0,
        max_concurrency: int = 32,
    ) -> Kube:
        """The one way a process makes its client: credentials from `kubeconfig`, else
        $KUBECONFIG or ~/.kube/config, else the in-cluster service account. Reads files
        (and may run a kubeconfig's exec plugin): call it before the event loop starts, or
        through `asyncio.to_thread`. No connection is opened until the first request."""
        from kubernetes.config import ConfigException  # slow import, only at start-up

        try:
            config = load_config(kubeconfig)
        except (ConfigException, OSError, ValueError) as exc:
            raise KubeConfigError(f"no cluster credentials: {exc}") from None
        return cls(config, timeout=timeout, max_concurrency=max_concurrency, user_agent=user_agent)

    def for_another_loop(self) -> Kube:
        """The same credentials and settings, no connection yet: for another thread's event
        loop (a client's connections belong to the loop that opened them)."""
        return Kube(
            self.config,
            timeout=self._timeout,
            max_concurrency=self._max_concurrency,
            user_agent=self._user_agent,
        )

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.config.server.startswith("https"):
            return False
        ctx = ssl.create_default_context(cafile=self.config.ca_file)
        if not self.config.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.config.cert_file:
            ctx.load_cert_chain(self.config.cert_file, self.config.key_file)
        return ctx

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl(), limit=self._max_concurrency + 8)
            self._session = aiohttp.ClientSession(
                base_url=self.config.server,
                connector=connector,
                headers={"User-Agent": self._user_agent, "Accept": "application/json"},
            )
        return self._session

    def _headers(self, content_type: str | None) -> dict[str, str]:
        # Bound service-account tokens rotate: re-read at most once a minute.
        if self.config.token_refresh is not None and time.monotonic() - self._token_read_at > 60:
            self._token = self.config.token_refresh() or self._token
            self._token_read_at = time.monotonic()
        headers = {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        headers = self._headers(content_type or ("application/json" if data else None))
        try:
            async with (
                self._limit,
                self._session_now().request(
                    method,
                    path,
                    data=data,
                    params=params,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=timeout or self._timeout),
                ) as response,
            ):
                raw = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(
                503, "Unavailable", f"apiserver unreachable: {type(exc).__name__}"
            ) from None
        if status < 300:
            return json.loads(raw) if raw else {}
        raise _error(status, raw)

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> JSON:
        return await self.request("GET", path, params=params)

    async def create(self, path: str, body: JSON) -> JSON:
        return await self.request("POST", path, body=body)

    async def replace(self, path: str, body: JSON) -> JSON:
        return await self.request("PUT", path, body=body)

    async def merge_patch(self, path: str, body: JSON) -> JSON:
        return await self.request("PATCH", path, body=body, content_type=MERGE_PATCH)

    async def delete(self, path: str, body: JSON | None = None) -> JSON:
        return await self.request("DELETE", path, body=body)

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 290,
    ) -> AsyncIterator[JSON]:
        """Watch events from `resource_version` on; ends when the server closes the stream.
        Raises Gone when the version is too old (list again)."""
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        params.update(_selectors(label_selector, field_selector))
        try:
            async with self._session_now().get(
                path,
                params=params,
                headers=self._headers(None),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self._timeout, sock_read=timeout_seconds + 30
                ),
            ) as response:
                if response.status >= 300:
                    raise _error(response.status, await response.read())
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        obj = event.get("object") or {}
                        raise _error(int(obj.get("code") or 500), json.dumps(obj).encode())
                    yield event
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unavailable(
                503, "Unavailable", f"watch interrupted: {type(exc).__name__}"
            ) from None


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    """Query parameters of a list or watch. A field selector on metadata.name is how a
    Role narrowed to one object by name lets it be listed and watched."""
    params = {}
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    return params


def _error(status: int, raw: bytes) -> KubeError:
    try:
        payload = json.loads(raw)
        reason = str(payload.get("reason") or "Error")
        message = str(payload.get("message") or "")
    except ValueError:
        reason, message = "Error", raw[:200].decode(errors="replace")
    if status >= 500 or status == 429:
        return Unavailable(status, reason, message)
    return _ERRORS.get(status, KubeError)(status, reason, message)


EventHandler = Callable[[str, JSON], Awaitable[None] | None]
# Objects a list asks for at a time: a list of 50,000 channels in one answer is over 200 MB
# of JSON, decoded at once (docs/benchmarks.md, the operator at scale).
LIST_PAGE = 500


def lean(obj: JSON) -> JSON:
    """`obj` without `metadata.managedFields` (server-side apply's bookkeeping, often the
    larger half of a small object), which nothing here reads: objects kept in a cache for
    every channel keep only what is used."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return obj


async def list_pages(
    kube: Kube, path: str, params: Mapping[str, str] | None = None, page: int = LIST_PAGE
) -> AsyncIterator[JSON]:
    """A list `page` objects at a time (`limit` and `continue`): each page's answer, one
    consistent snapshot whose version the last page's metadata.resourceVersion names. Raises
    Gone when the snapshot expired between pages (list again)."""
    query = {**(params or {}), "limit": str(page)}
    while True:
        answer = await kube.get(path, params=query)
        yield answer
        token = (answer.get("metadata") or {}).get("continue")
        if not token:
            return
        query["continue"] = str(token)


async def reflect(
    kube: Kube,
    path: str,
    on_event: EventHandler,
    *,
    label_selector: str | None = None,
    field_selector: str | None = None,
    on_synced: Callable[[], None] | None = None,
    retry_delay: float = 1.0,
    keep: Callable[[JSON], JSON] = lean,
    page: int = LIST_PAGE,
) -> None:
    """Keep a local view of the objects at `path`: list, then watch from the list's version;
    on a gap (410, disconnect) list again. `on_event(type, obj)` gets ADDED/MODIFIED/DELETED,
    and a synthetic SYNC(list) start marker lets the caller drop what vanished meanwhile.
    Every object is handed over as `keep` makes it (default: `lean`), a listed one as soon as
    its page arrives, so a caller that keeps a few fields never holds a whole list. Runs
    until cancelled."""
    delay = retry_delay
    while True:
        try:
            items: list[JSON] = []
            version = ""
            selectors = _selectors(label_selector, field_selector)
            async for answer in list_pages(kube, path, selectors, page):
                items.extend(keep(item) for item in answer.get("items") or [])
                version = str(answer["metadata"]["resourceVersion"])
            result = on_event("SYNC", {"metadata": {"resourceVersion": version}, "items": items})
            del items  # not held while watching
            if result is not None:
                await result
            if on_synced is not None:
                on_synced()
            delay = retry_delay
            while True:
                async for event in kube.watch(
                    path,
                    resource_version=version,
                    label_selector=label_selector,
                    field_selector=field_selector,
                ):
                    kind = str(event.get("type"))
                    obj = event.get("object") or {}
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if kind == "BOOKMARK":
                        continue
                    result = on_event(kind, keep(obj))
                    if result is not None:
                        await result
        except Gone:
            log.info("watch on %s expired; listing again", path)
        except KubeError as exc:
            log.warning("watch on %s failed (%s); retrying in %.0fs", path, exc.reason, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

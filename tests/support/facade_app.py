"""The facade under test, in process: API keys files and an HTTP client that runs the app's
lifespan (for the facade's suite and for any suite that serves a facade of its own)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

OWN_INSTANCE = "497f6eca-6276-4993-bfeb-53cbbbba6f08"  # the instance the tenant key may manage


@dataclass(frozen=True)
class ApiKeys:
    file: Path
    admin: str  # may manage every instance
    tenant: str  # may manage OWN_INSTANCE only


def write_keys_file(path: Path) -> ApiKeys:
    admin, tenant = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    path.write_text(
        "# name key instances\n"
        f"admin {admin}\n"
        f"tenant {tenant} {OWN_INSTANCE.upper()}\n"  # ids are canonicalised
    )
    return ApiKeys(file=path, admin=admin, tenant=tenant)


@contextlib.asynccontextmanager
async def serving(app: FastAPI, key: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on `app` in this event loop, with the app's lifespan around it."""
    headers = {"X-Api-Key": key} if key else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://facade.test", headers=headers
        ) as client:
            yield client

"""Fixtures for the facade: API keys, a sealing key pair, the app over an in-memory fake
apiserver, and an HTTP client that runs the app's lifespan."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from channel_api.facade import FacadeSettings, create_app
from fastapi import FastAPI
from schemathesis.checks import CheckFunction
from whatsapp_channel.kube import Kube
from whatsapp_channel.sealing import PublicSealingKey, new_private_key, public_key_of
from whatsapp_channel.settings import CHANNELS_NAMESPACE_VARIABLE

from tests.support.facade_app import OWN_INSTANCE, ApiKeys, serving, write_keys_file
from tests.support.fake_kube import OperatedKube

__all__ = ["OWN_INSTANCE", "ApiKeys", "serving", "write_keys_file"]

NAMESPACE = "facade-contract"
OTHER_INSTANCE = "5d0e4c6a-1b2c-4d3e-8f90-a1b2c3d4e5f6"


@dataclass(frozen=True)
class SealingPair:
    key_id: str
    private: bytes
    public: PublicSealingKey


@pytest.fixture
def api_keys(tmp_path: Path) -> ApiKeys:
    return write_keys_file(tmp_path / "api-keys")


@pytest.fixture(scope="session")
def sealing_pair() -> SealingPair:
    key_id, private = new_private_key()
    return SealingPair(key_id=key_id, private=private, public=public_key_of(private))


@pytest.fixture
def fake_kube(sealing_pair: SealingPair) -> OperatedKube:
    return OperatedKube(sealing_pair.public, namespace=NAMESPACE)


def facade_settings(api_keys: ApiKeys, **overrides: Any) -> FacadeSettings:
    values: dict[str, Any] = {
        "api_keys_file": api_keys.file,
        CHANNELS_NAMESPACE_VARIABLE: NAMESPACE,
        "ready_wait_seconds": 2.0,
        "kube_timeout_seconds": 0.5,
    }
    values.update(overrides)
    return FacadeSettings(**values)


AppFactory = Callable[..., FastAPI]

# What the property-based runs hold every answer to: every check schemathesis has (server
# errors, conformance of status, headers, content type and schema, negative data refused,
# positive data accepted, missing headers, unsupported methods, auth really enforced, ...).
schemathesis.checks.load_all_checks()
CHECKS: list[CheckFunction] = [
    check for check in schemathesis.checks.CHECKS.get_all() if not isinstance(check, type)
]
assert len(CHECKS) == len(schemathesis.checks.CHECKS.get_all()) >= 14


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document, known before any server runs."""
    with tempfile.TemporaryDirectory() as folder:
        keys = write_keys_file(Path(folder) / "api-keys")
        document: dict[str, Any] = create_app(facade_settings(keys), OperatedKube()).openapi()
        return document


@pytest.fixture
def make_app(api_keys: ApiKeys, fake_kube: OperatedKube) -> AppFactory:
    def make(kube: Kube | None = None, **overrides: Any) -> FastAPI:
        return create_app(facade_settings(api_keys, **overrides), kube or fake_kube)

    return make


@pytest.fixture
async def client(make_app: AppFactory, api_keys: ApiKeys) -> AsyncIterator[httpx.AsyncClient]:
    """Authenticated as the admin key."""
    async with serving(make_app(), api_keys.admin) as http:
        yield http

"""Property-based: schemathesis drives the app's own OpenAPI document and finds no 5xx,
no undocumented status and no answer outside its schema (over the in-memory apiserver;
the same run against the real control plane is in test_e2e.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from channel_api.facade import create_app
from hypothesis import HealthCheck, settings
from schemathesis import Case

from tests.facade.conftest import (
    CHECKS,
    ApiKeys,
    SealingPair,
    facade_settings,
    openapi_document,
    write_keys_file,
)
from tests.facade.serve import serve_in_thread
from tests.support.fake_kube import OperatedKube

SEEN: Counter[tuple[str, int]] = Counter()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, sealing_pair: SealingPair
) -> Iterator[tuple[str, ApiKeys]]:
    keys = write_keys_file(Path(tmp_path_factory.mktemp("keys")) / "api-keys")
    fake = OperatedKube(sealing_pair.public, namespace="facade-contract")
    app = create_app(facade_settings(keys, ready_wait_seconds=0.2), fake)
    with serve_in_thread(app) as base_url:
        yield base_url, keys


schema = schemathesis.openapi.from_dict(openapi_document())


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_with_a_valid_key(case: Case[Any], served: tuple[str, ApiKeys]) -> None:
    base_url, keys = served
    response = case.call_and_validate(base_url=base_url, headers=_as(keys.admin), checks=CHECKS)
    SEEN[(case.method, response.status_code)] += 1


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_with_a_limited_or_no_key(
    case: Case[Any], served: tuple[str, ApiKeys]
) -> None:
    base_url, keys = served
    limited = case.call_and_validate(base_url=base_url, headers=_as(keys.tenant), checks=CHECKS)
    stranger = case.call_and_validate(base_url=base_url, headers=_as("wrong" * 8), checks=CHECKS)
    if case.method in {"GET", "POST", "DELETE"}:  # other methods: 405 before anything
        assert limited.status_code in {200, 204, 400, 403, 404, 413, 422}
        assert stranger.status_code == 401


def test_the_run_reached_every_outcome() -> None:
    """Guard against a run that only ever met 401 or 422."""
    outcomes = {status for (_, status) in SEEN}
    assert {200, 204, 404, 422} <= outcomes, SEEN


def _as(key: str) -> dict[str, str]:
    # Both ways, replacing what the generator put in either header.
    return {"Authorization": f"Bearer {key}", "X-Api-Key": key}

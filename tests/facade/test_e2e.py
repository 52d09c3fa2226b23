"""End to end on the real control plane: the `whatsapp-facade` process with a
least-privilege service account, the real operator, a real kube-apiserver with etcd."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from localkube import Cluster
from localkube.cluster import free_port
from localkube.services import Service
from schemathesis import Case
from whatsapp_channel.channel_secret import secret_name
from whatsapp_channel.model import FINALIZER

from tests.facade.conftest import CHECKS, ApiKeys, openapi_document, write_keys_file
from tests.support.graph import shared_standin
from tests.support.identities import identity, service_account, unreachable_kubeconfig
from tests.support.processes import log_dir, run_facade, run_operator, run_receiver
from tests.support.scrape import assert_no_label_holds, scrape, value

WEBHOOK_BASE = "https://hooks.e2e.test"
# The receiver of each operated namespace: Meta's challenge (the stand-in's) reaches it when
# the operator registers a channel's webhook.
RECEIVER_URL: dict[str, str] = {}
UNAVAILABLE = {"detail": "the Kubernetes API server is unavailable or too slow; retry shortly"}


def setup_body(i: int = 0, **extra: Any) -> dict[str, Any]:
    body = {
        "access_token": f"EAAG-e2e-access-token-{i:04d}",
        "app_secret": f"{i:04d}" + "ab" * 14,
        "phone_number_id": f"10654035224{i:04d}",
        "display_phone": "+61400111222",
        **extra,
    }
    shared_standin().seed(body["phone_number_id"], body)  # Meta knows the number so
    return body


def channel_url(facade: Service, instance: str) -> str:
    return f"{facade.url}/v1/instances/{instance}/channels/whatsapp"


def kubectl_json(cluster: Cluster, *args: str) -> Any:
    return json.loads(cluster.kubectl(*args, "-o", "json").stdout)


def secret_data(cluster: Cluster, namespace: str, instance: str) -> dict[str, str]:
    secret = kubectl_json(cluster, "get", "secret", secret_name(instance), "-n", namespace)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def assert_clean_log(facade: Service) -> None:
    log = facade.log_path.read_text()
    assert "Traceback" not in log
    assert "unhandled" not in log


@pytest.fixture
def operated(cluster: Cluster, crd: Path, namespace: str) -> Iterator[str]:
    """`namespace` with the real operator reconciling it (its sealing key published)."""
    with (
        run_receiver(
            cluster.kubeconfig,
            log_dir(cluster),
            namespace=namespace,
            forward_url_template="http://127.0.0.1:9/{instance_id}",
        ) as receiver,
        run_operator(
            cluster.kubeconfig,
            log_dir(cluster),
            namespace=namespace,
            **shared_standin().operator_env(receiver.url),
            # The apiserver is frozen and restarted below: a leader that cannot renew its
            # Lease exits (in a pod, Kubernetes starts it again; nothing restarts this
            # process), so here the lease outlives the outage.
            lease_duration_seconds=120,
            renew_deadline_seconds=100,
        ),
    ):
        RECEIVER_URL[namespace] = receiver.url
        yield namespace


@pytest.fixture
def facade(cluster: Cluster, operated: str, api_keys: ApiKeys, tmp_path: Path) -> Iterator[Service]:
    """The facade process on `operated`, as its own least-privilege service account."""
    kubeconfig = identity(cluster, "facade", operated, tmp_path)
    with run_facade(
        kubeconfig,
        log_dir(cluster),
        namespace=operated,
        api_keys_file=api_keys.file,
        ready_wait_seconds=15,
    ) as running:
        yield running


async def test_post_get_delete_through_the_operator(
    cluster: Cluster, operated: str, facade: Service, api_keys: ApiKeys
) -> None:
    instance = str(uuid.uuid4())
    url = channel_url(facade, instance)
    async with httpx.AsyncClient(headers={"X-Api-Key": api_keys.admin}, timeout=30) as http:
        created = await http.post(url, json=setup_body())
        assert created.status_code == 200, created.text
        body = created.json()
        verify_token = body.pop("verify_token")
        assert body == {
            "display_phone": "+61400111222",
            "enabled": True,
            "phone_number_id": "106540352240000",
            "status": "active",
            "status_reason": "ChannelReady",
            "webhook_url": f"{RECEIVER_URL[operated]}/hooks/whatsapp/{instance}",
        }
        got = await http.get(url, headers={"Authorization": f"Bearer {api_keys.admin}"})
        assert got.status_code == 200
        assert got.json() == body

        # The operator opened the facade's seals into the channel's Secret; the CR holds none
        # of the clear values.
        assert secret_data(cluster, operated, instance) == {
            "access_token": setup_body()["access_token"],
            "app_secret": setup_body()["app_secret"],
            "verify_token": verify_token,
        }
        cr = cluster.kubectl("get", "whatsappchannel", instance, "-n", operated, "-o", "json")
        for clear in (setup_body()["access_token"], setup_body()["app_secret"], verify_token):
            assert clear not in cr.stdout
        # Born with the operator's finalizer: the operator needs no patch to add it.
        assert json.loads(cr.stdout)["metadata"]["finalizers"] == [FINALIZER]
        # The facade did all that without any access to Secrets.
        can_i = cluster.kubectl(
            "auth", "can-i", "get", "secrets", "-n", operated,
            f"--as=system:serviceaccount:{operated}:{service_account('facade')}", check=False,
        )  # fmt: skip
        assert can_i.stdout.strip() == "no"

        deleted = await http.delete(url)
        assert deleted.status_code == 204
        assert deleted.content == b""
        gone = await http.get(url)
        assert gone.status_code == 404
        assert gone.json() == {"detail": "no WhatsApp channel for this instance"}
        assert (await http.delete(url)).status_code == 404
    log = facade.log_path.read_text()
    for clear in (setup_body()["access_token"], setup_body()["app_secret"], verify_token):
        assert clear not in log


async def test_twenty_concurrent_posts_leave_one_consistent_channel(
    cluster: Cluster, operated: str, facade: Service, api_keys: ApiKeys
) -> None:
    instance = str(uuid.uuid4())
    url = channel_url(facade, instance)
    async with httpx.AsyncClient(headers={"X-Api-Key": api_keys.admin}, timeout=60) as http:
        answers = await asyncio.gather(*(http.post(url, json=setup_body(i)) for i in range(20)))
        assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
        generated = [a.json()["verify_token"] for a in answers if "verify_token" in a.json()]
        assert len(generated) == 1  # the one POST that created the channel

        channels = kubectl_json(cluster, "get", "whatsappchannels", "-n", operated)["items"]
        assert [c["metadata"]["name"] for c in channels] == [instance]
        spec = channels[0]["spec"]
        winner = int(spec["phoneNumberId"][-4:])

        # Once the operator caught up, the channel, its Secret and the facade's view agree.
        deadline = time.monotonic() + 60
        while True:
            view = (await http.get(url)).json()
            data = secret_data(cluster, operated, instance)
            if (
                view["status"] == "active"
                and data["access_token"] == setup_body(winner)["access_token"]
            ):
                break
            assert time.monotonic() < deadline, (view, data)
            await asyncio.sleep(0.5)
        assert view["phone_number_id"] == spec["phoneNumberId"]
        assert data == {
            "access_token": setup_body(winner)["access_token"],
            "app_secret": setup_body(winner)["app_secret"],
            "verify_token": generated[0],
        }


async def test_apiserver_unreachable_is_503(api_keys: ApiKeys, tmp_path: Path) -> None:
    nobody = free_port()  # nothing listens here
    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        for port in (nobody, silent.getsockname()[1]):
            kubeconfig = unreachable_kubeconfig(tmp_path, port)
            with run_facade(
                kubeconfig,
                tmp_path,
                namespace="whatsapp-channels",
                api_keys_file=api_keys.file,
                kube_timeout_seconds=1,
            ) as facade:
                url = channel_url(facade, str(uuid.uuid4()))
                async with httpx.AsyncClient(
                    headers={"X-Api-Key": api_keys.admin}, timeout=30
                ) as http:
                    for method in ("GET", "POST", "DELETE"):
                        # Answered within the client's 30 s: the facade gave up on its own.
                        answer = await http.request(method, url, json=setup_body())
                        assert answer.status_code == 503, (port, method, answer.text)
                        assert answer.json() == UNAVAILABLE
                        assert answer.headers["Retry-After"] == "5"
                    assert (await http.get(f"{facade.url}/readyz")).status_code == 503
                    assert (await http.get(f"{facade.url}/healthz")).status_code == 200
                    # A client mistake stays a client mistake while the cluster is away.
                    assert (await http.post(url, json={})).status_code == 422
            assert_clean_log(facade)
    finally:
        silent.close()


async def test_a_hung_then_restarted_apiserver(
    cluster: Cluster, operated: str, api_keys: ApiKeys, tmp_path: Path
) -> None:
    """The real apiserver frozen (SIGSTOP): 503 within the timeout, then service resumes;
    restarted: service resumes once it is back."""
    with run_facade(
        cluster.kubeconfig,
        tmp_path,
        namespace=operated,
        api_keys_file=api_keys.file,
        kube_timeout_seconds=1,
        ready_wait_seconds=15,
    ) as facade:
        url = channel_url(facade, str(uuid.uuid4()))
        async with httpx.AsyncClient(headers={"X-Api-Key": api_keys.admin}, timeout=30) as http:
            assert (await http.post(url, json=setup_body())).json()["status"] == "active"
            apiserver = cluster.pids["kube-apiserver"]
            os.killpg(apiserver, signal.SIGSTOP)
            try:
                for method in ("GET", "POST", "DELETE"):
                    answer = await http.request(method, url, json=setup_body(1))
                    assert answer.status_code == 503, answer.text
                    assert answer.json() == UNAVAILABLE
            finally:
                os.killpg(apiserver, signal.SIGCONT)
            assert (await http.get(url)).status_code == 200

            await asyncio.to_thread(cluster.restart, "kube-apiserver")
            deadline = time.monotonic() + 90
            while (answer := await http.post(url, json=setup_body(2))).status_code != 200:
                assert answer.status_code == 503, answer.text
                assert time.monotonic() < deadline
                await asyncio.sleep(1)
            assert answer.json()["phone_number_id"] == setup_body(2)["phone_number_id"]
            assert answer.json()["status"] == "active"
    assert_clean_log(facade)


# --- the property-based run, against the real control plane -----------------------------

schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def served_on_cluster(
    cluster: Cluster, crd: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, ApiKeys]]:
    folder = Path(tmp_path_factory.mktemp("facade-property"))
    keys = write_keys_file(folder / "api-keys")
    namespace = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        with (
            run_operator(
                cluster.kubeconfig,
                log_dir(cluster),
                namespace=namespace,
                **shared_standin().operator_env(WEBHOOK_BASE),
            ),
            run_facade(
                identity(cluster, "facade", namespace, folder),
                log_dir(cluster),
                namespace=namespace,
                api_keys_file=keys.file,
                ready_wait_seconds=0,
            ) as facade,
        ):
            yield facade.url, keys
            assert_clean_log(facade)
    finally:
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors_on_the_real_cluster(
    case: Case[Any], served_on_cluster: tuple[str, ApiKeys]
) -> None:
    base_url, keys = served_on_cluster
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {keys.admin}", "X-Api-Key": keys.admin},
        checks=CHECKS,
    )


# --- metrics ----------------------------------------------------------------------------------

METRICS_ROUTE = "/v1/instances/{instance_id}/channels/whatsapp"
REQUESTS = "whatsapp_facade_requests_total"


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def facade_with_metrics(
    cluster: Cluster, operated: str, api_keys: ApiKeys, tmp_path: Path, metrics_port: int
) -> Iterator[Service]:
    with run_facade(
        identity(cluster, "facade", operated, tmp_path),
        log_dir(cluster),
        namespace=operated,
        api_keys_file=api_keys.file,
        ready_wait_seconds=15,
        metrics_port=metrics_port,
    ) as running:
        yield running


async def test_requests_are_counted_by_route_template_method_and_status(
    facade_with_metrics: Service, api_keys: ApiKeys, metrics_port: int
) -> None:
    instance = str(uuid.uuid4())
    facade = facade_with_metrics
    url = channel_url(facade, instance)
    async with httpx.AsyncClient(headers={"X-Api-Key": api_keys.admin}, timeout=30) as http:
        refused = await http.post(url, json={"phone_number_id": "not enough"})
        assert refused.status_code == 422
        created = await http.post(url, json=setup_body())
        assert created.status_code == 200, created.text
        verify_token = created.json()["verify_token"]
        # The API's port serves no metrics.
        assert (await http.get(f"{facade.url}/metrics")).status_code == 404
    samples = await scrape(metrics_port)
    assert value(samples, REQUESTS, route=METRICS_ROUTE, method="POST", status="422") == 1
    assert value(samples, REQUESTS, route=METRICS_ROUTE, method="POST", status="200") == 1
    assert value(samples, REQUESTS, route="unmatched", method="GET", status="404") == 1
    duration = "whatsapp_facade_request_duration_seconds_count"
    assert value(samples, duration, route=METRICS_ROUTE, method="POST") == 2
    body = setup_body()
    assert_no_label_holds(
        samples,
        instance,
        api_keys.admin,
        body["access_token"],
        body["app_secret"],
        body["phone_number_id"],
        verify_token,
    )

"""The facade's unauthenticated /readyz on the real control plane (issue 13, item 10): when
it is not ready it says so in fixed words; what went wrong (the apiserver's own message,
which names the service account, the namespaces and the object) is in its log only."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from localkube import Cluster
from localkube.cluster import free_port, service_account_kubeconfig
from localkube.services import Service
from whatsapp_channel.model import GROUP, PLURAL, SEALING_PUBLIC_CONFIGMAP

from tests.facade.conftest import ApiKeys
from tests.support.identities import service_account, unreachable_kubeconfig
from tests.support.processes import log_dir, run_facade, run_operator

SERVICE_ACCOUNT = service_account("facade")

UNREADY = {
    "status": "unready",
    "detail": "not ready: the cluster or the operator's sealing key is unavailable",
}
TIMEOUT = 60.0


async def wait_for_log(service: Service, *needles: str) -> str:
    """The service's log once it holds every needle (the line is written as it answers)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        text = service.log_path.read_text(errors="replace")
        if all(needle in text for needle in needles):
            return text
        assert time.monotonic() < deadline, (needles, service.log_tail())
        await asyncio.sleep(0.2)


async def test_a_facade_without_the_right_to_read_the_key_is_unready_in_fixed_words(
    cluster: Cluster, crd: Path, namespace: str, api_keys: ApiKeys, tmp_path: Path
) -> None:
    # The facade's account may work on channels but was not given the public key.
    cluster.kubectl("create", "serviceaccount", SERVICE_ACCOUNT, "-n", namespace)
    cluster.kubectl(
        "create", "role", "channels-only", "-n", namespace,
        "--verb=get,list,watch,create,update,delete", f"--resource={PLURAL}.{GROUP}",
    )  # fmt: skip
    cluster.kubectl(
        "create", "rolebinding", "channels-only", "-n", namespace,
        "--role=channels-only", f"--serviceaccount={namespace}:{SERVICE_ACCOUNT}",
    )  # fmt: skip
    kubeconfig = service_account_kubeconfig(cluster, namespace, SERVICE_ACCOUNT, tmp_path)
    with (
        run_operator(
            cluster.kubeconfig,
            log_dir(cluster),
            namespace=namespace,
            webhook_base_url="https://hooks.e2e.test",
        ),
        run_facade(
            kubeconfig, log_dir(cluster), namespace=namespace, api_keys_file=api_keys.file
        ) as facade,
    ):
        async with httpx.AsyncClient(timeout=30) as anonymous:
            ready = await anonymous.get(f"{facade.url}/readyz")
            assert ready.status_code == 503
            assert ready.json() == UNREADY
            for leak in (SERVICE_ACCOUNT, namespace, "forbidden", "configmaps"):
                assert leak not in ready.text.lower()
            # The details are where the operator of the platform looks: the log.
            await wait_for_log(facade, "not ready", "Forbidden", SERVICE_ACCOUNT)

            # Given the right, it turns ready: the refusal was what kept it out.
            cluster.kubectl(
                "create", "role", "sealing-key", "-n", namespace, "--verb=get",
                "--resource=configmaps", f"--resource-name={SEALING_PUBLIC_CONFIGMAP}",
            )  # fmt: skip
            cluster.kubectl(
                "create", "rolebinding", "sealing-key", "-n", namespace,
                "--role=sealing-key", f"--serviceaccount={namespace}:{SERVICE_ACCOUNT}",
            )  # fmt: skip
            deadline = time.monotonic() + TIMEOUT
            while (ready := await anonymous.get(f"{facade.url}/readyz")).status_code != 200:
                assert ready.json() == UNREADY
                assert time.monotonic() < deadline, facade.log_tail()
                await asyncio.sleep(0.5)
            assert ready.json() == {"status": "ok"}


async def test_an_unreachable_apiserver_is_unready_in_fixed_words(
    api_keys: ApiKeys, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens here
    kubeconfig = unreachable_kubeconfig(tmp_path, port)
    with run_facade(
        kubeconfig,
        tmp_path,
        namespace="whatsapp-channels",
        api_keys_file=api_keys.file,
        kube_timeout_seconds=1,
    ) as facade:
        async with httpx.AsyncClient(timeout=30) as anonymous:
            ready = await anonymous.get(f"{facade.url}/readyz")
        assert ready.status_code == 503
        assert ready.json() == UNREADY
        assert str(port) not in ready.text
        log = await wait_for_log(facade, "not ready")
        assert "Traceback" not in log

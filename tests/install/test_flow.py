"""The chart's RBAC is sufficient: the three processes run exactly as the installed chart
configures them (its Deployments' commands and environment, its Secrets' contents), each
authenticated with a token of its own chart ServiceAccount, and a channel's whole life
passes: created through the facade, Ready, Meta's challenge answered, a signed event
delivered to the instance, status written by the receiver, deleted. In the chart's default
layout: the channels in a namespace the chart creates, the sealing keys, API keys and forward
secret in the release namespace, which the receiver's own token is shown unable to read.

With no kubelet here, this test plays the kubelet's part: it reads each Deployment, writes
the Secret volumes it mounts into a local folder, and starts the container's command with
the container's environment. Only listen addresses, ports and mount paths are changed.
Together with the exact grants in test_chart.py and the denials in test_release.py, that
shows the Roles are both enough and no more than needed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from channel_launcher.product import PROCESSES, start
from localkube import Cluster
from localkube.cluster import free_port, service_account_kubeconfig
from localkube.services import Service, running
from whatsapp_channel.channel_secret import MANAGED_BY_LABEL, MANAGED_BY_VALUE, secret_name
from whatsapp_channel.forward_proof import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    forward_proof_valid,
)
from whatsapp_channel.kube import Forbidden, Kube, core_path
from whatsapp_channel.model import SEALING_KEYS_SECRET, SEALING_PUBLIC_CONFIGMAP

from tests.support.chart import component_name, install, kubectl_json
from tests.support.graph import shared_standin
from tests.support.payloads import meta_bytes, notification, signed, text_change
from tests.support.sink import Sink

RELEASE = "flow"
PHONE = "106540352240001"
APP_SECRET = "flow-app-secret-0123456789abcdef"


@dataclass(frozen=True)
class Product:
    namespace: str  # the channels'
    home: str  # the release's: the keys'
    facade_url: str
    webhook_base: str
    api_key: str
    forward_secret: bytes
    sink: Sink
    services: dict[str, Service]


def secret_files(cluster: Cluster, namespace: str, name: str) -> dict[str, bytes]:
    secret = kubectl_json(cluster, "get", "secret", name, "-n", namespace)
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def start_as_the_chart_says(
    cluster: Cluster, namespace: str, component: str, folder: Path, port: int
) -> Service:
    """Start `component`'s container as its chart Deployment describes it, authenticated
    as its chart ServiceAccount; only where it listens is changed (loopback, `port`, a free
    metrics port)."""
    deployment = kubectl_json(
        cluster, "get", "deployment", component_name(RELEASE, component), "-n", namespace
    )
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env: dict[str, str] = {e["name"]: e["value"] for e in container["env"]}

    # The kubelet's part: each Secret volume's items as files under a local mount path.
    mount_paths = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    for volume in pod["volumes"]:
        if "secret" not in volume:
            continue
        local = folder / component / volume["name"]
        local.mkdir(parents=True)
        data = secret_files(cluster, namespace, volume["secret"]["secretName"])
        for item in volume["secret"]["items"]:
            (local / item["path"]).write_bytes(data[item["key"]])
        mounted = mount_paths[volume["name"]]
        for name, value in env.items():
            if value.startswith(mounted + "/"):
                env[name] = str(local) + value[len(mounted) :]

    (command,) = container["command"]
    process = PROCESSES[command]
    listen = {process.host_variable, process.port_variable}
    assert listen <= set(env), f"{component} does not set {listen - set(env)}"
    if process.metrics_port_variable in env:  # three processes share loopback here
        env[process.metrics_port_variable] = str(free_port())
    kubeconfig = service_account_kubeconfig(
        cluster, namespace, pod["serviceAccountName"], folder, duration="2h"
    )
    return start(process, env, kubeconfig=kubeconfig, log_dir=folder, port=port)


@pytest.fixture(scope="module")
async def product(
    cluster: Cluster,
    crd: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Product]:
    """The chart installed with its default layout (the channel namespace is the chart's),
    and its three processes running as it configures them."""
    folder = tmp_path_factory.mktemp("flow")
    suffix = uuid.uuid4().hex[:8]
    namespace = f"wa-flow-{suffix}"
    channels = f"{namespace}-channels"  # the chart's default, which it creates
    cluster.kubectl("create", "namespace", namespace)
    sink = Sink()
    await sink.start()
    receiver_port, facade_port, liveness_port = free_port(), free_port(), free_port()
    webhook_base = f"http://127.0.0.1:{receiver_port}"
    values = folder / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "webhookBaseUrl": webhook_base,
                # The CRD is the session's (kubectl apply -f crds/): the chart leaves it be.
                "crds": {"enabled": False},
                "facade": {"readyWaitSeconds": 20},
                # Meta is the session's Graph stand-in (never the real one).
                "operator": {"graph": {"baseUrl": shared_standin().url}},
                "receiver": {
                    "forwardUrlTemplate": sink.url_template,
                    "statusWriteIntervalSeconds": 1,
                },
            }
        )
    )
    try:
        install(cluster, RELEASE, namespace, "-f", str(values))
        services: dict[str, Service] = {}
        with contextlib.ExitStack() as stack:
            for component, port in (
                ("operator", liveness_port),
                ("facade", facade_port),
                ("receiver", receiver_port),
            ):
                service = start_as_the_chart_says(cluster, namespace, component, folder, port)
                services[component] = stack.enter_context(running(service))
            keys = secret_files(cluster, namespace, component_name(RELEASE, "api-keys"))
            first = next(
                line.split()
                for line in keys["api-keys"].decode().splitlines()
                if line.strip() and not line.startswith("#")
            )
            forward = secret_files(cluster, namespace, component_name(RELEASE, "forward-secret"))
            yield Product(
                namespace=channels,
                home=namespace,
                facade_url=f"http://127.0.0.1:{facade_port}",
                webhook_base=webhook_base,
                api_key=first[1],
                forward_secret=forward["forward-secret"],
                sink=sink,
                services=services,
            )
    finally:
        await sink.stop()
        cluster.helm("uninstall", RELEASE, "-n", namespace, check=False)
        for ns in (namespace, channels):  # the channel namespace outlives the release
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


async def wait_until(
    what: str, ready: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while (result := await asyncio.to_thread(ready)) is None or result is False:
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(interval)
    return result


def channel_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl(
        "get", "whatsappchannel", name, "-n", namespace, "-o", "json", check=False
    )
    if result.returncode != 0:
        return None
    status: dict[str, Any] = json.loads(result.stdout).get("status") or {}
    return status


async def receiver_reaches_no_key(cluster: Cluster, product: Product, folder: Path) -> None:
    """Asked with the receiver's own token, as a compromised receiver would: the sealing keys
    (the operator has written them by now), the API keys and the forward secret are out of
    reach, and the Secrets it may list are channels' only."""
    keys = kubectl_json(cluster, "get", "secret", SEALING_KEYS_SECRET, "-n", product.home)
    assert keys["data"]  # the keys exist, in the release namespace, not beside the channels
    beside = cluster.kubectl(
        "get", "secret", SEALING_KEYS_SECRET, "-n", product.namespace, check=False
    )
    assert beside.returncode != 0
    kubeconfig = service_account_kubeconfig(
        cluster, product.home, component_name(RELEASE, "receiver"), folder, duration="2h"
    )
    receiver = Kube.connect(str(kubeconfig), user_agent="tests-as-receiver")
    try:
        for name in (
            SEALING_KEYS_SECRET,
            component_name(RELEASE, "api-keys"),
            component_name(RELEASE, "forward-secret"),
        ):
            with pytest.raises(Forbidden):
                await receiver.get(core_path("secrets", product.home, name))
        with pytest.raises(Forbidden):
            await receiver.get(core_path("secrets", product.home))
        with pytest.raises(Forbidden):
            await receiver.get(core_path("configmaps", product.home, SEALING_PUBLIC_CONFIGMAP))
        visible = (await receiver.get(core_path("secrets", product.namespace)))["items"]
        assert visible  # the channel's
        for secret in visible:
            labels = secret["metadata"].get("labels") or {}
            assert labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE, secret["metadata"]["name"]
    finally:
        await receiver.close()


async def test_a_channel_lives_and_dies_with_only_the_charts_rbac(
    cluster: Cluster, product: Product, tmp_path: Path
) -> None:
    ns = product.namespace
    instance = str(uuid.uuid4())
    api = f"{product.facade_url}/v1/instances/{instance}/channels/whatsapp"
    webhook_url = f"{product.webhook_base}/hooks/whatsapp/{instance}"
    verify_token = f"flow-verify-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {product.api_key}"}  # the chart's generated key

    shared_standin().seed(
        PHONE, {"access_token": "EAAG-flow-access-token", "app_secret": APP_SECRET}
    )
    async with httpx.AsyncClient(timeout=30) as http:
        # The facade (its own token: channels + the sealing public key) creates the channel;
        # the operator (its own token) unseals it into a Secret and reports Ready.
        created = await http.post(
            api,
            headers=auth,
            json={
                "access_token": "EAAG-flow-access-token",
                "app_secret": APP_SECRET,
                "phone_number_id": PHONE,
                "display_phone": "+61400111222",
                "verify_token": verify_token,
            },
        )
        assert created.status_code == 200, created.text
        assert created.json()["status"] == "active"
        assert created.json()["webhook_url"] == webhook_url
        await asyncio.to_thread(
            cluster.kubectl,
            "wait", "--for=condition=Ready", f"whatsappchannel/{instance}", "-n", ns,
            "--timeout=60s",
        )  # fmt: skip
        read = await http.get(api, headers=auth)
        assert read.status_code == 200
        assert read.json()["status"] == "active"
        secret = secret_files(cluster, ns, secret_name(instance))
        assert secret["app_secret"] == APP_SECRET.encode()
        await receiver_reaches_no_key(cluster, product, tmp_path)
        refused = await http.get(api, headers={"Authorization": "Bearer " + "x" * 40})
        assert refused.status_code == 401

        # The receiver (its own token: list/watch Secrets) learns the channel and answers
        # Meta's challenge.
        params = {
            "hub.mode": "subscribe",
            "hub.verify_token": verify_token,
            "hub.challenge": "1158201444",
        }
        deadline = time.monotonic() + 20
        while (answer := await http.get(webhook_url, params=params)).status_code != 200:
            assert answer.status_code == 403
            assert time.monotonic() < deadline, "the receiver never learnt the channel"
            await asyncio.sleep(0.2)
        assert answer.text == "1158201444"
        wrong = await http.get(webhook_url, params={**params, "hub.verify_token": "nope-nope"})
        assert wrong.status_code == 403

        # A signed event reaches the instance, with the proof the chart's forward key makes.
        body = meta_bytes(notification([text_change(PHONE, "Hallo from the chart")]))
        forged = await http.post(webhook_url, content=body, headers=signed("not-the-secret", body))
        assert forged.status_code == 403  # docs/receiver.md: a wrong signature is exactly 403
        delivered = await http.post(webhook_url, content=body, headers=signed(APP_SECRET, body))
        assert delivered.status_code == 200, delivered.text
        [forwarded] = await product.sink.wait_for(1)
        assert (forwarded.instance_id, forwarded.body) == (instance, body)
        assert forward_proof_valid(
            product.forward_secret,
            instance_id=instance,
            body=body,
            timestamp=forwarded.headers.get(TIMESTAMP_HEADER),
            signature=forwarded.headers.get(SIGNATURE_HEADER),
        )

        # The receiver may patch channel status, and does: the event's time. The chart's
        # default webhook mode is managed, so the challenge above is noted nowhere (a note of
        # it would be written with or before the event's).
        status = await wait_until(
            "the receiver wrote lastEventAt",
            lambda: (
                s if (s := channel_status(cluster, ns, instance)) and s.get("lastEventAt") else None
            ),
        )
        assert "lastChallengeAt" not in status
        assert status["webhookUrl"] == webhook_url

        # Deleted through the facade: the operator's finalizer removes the Secret, then the
        # channel is gone.
        deleted = await http.delete(api, headers=auth)
        assert deleted.status_code == 204, deleted.text
        await wait_until(
            "the channel is gone", lambda: channel_status(cluster, ns, instance) is None
        )
        assert (
            cluster.kubectl(
                "get", "secret", secret_name(instance), "-n", ns, check=False
            ).returncode
            != 0
        )
        assert (await http.get(api, headers=auth)).status_code == 404
        assert (await http.get(webhook_url, params=params)).status_code in {403, 404}

    # No process was ever refused by the apiserver: the Roles were enough throughout.
    for name, service in product.services.items():
        assert service.alive(), f"{name} stopped:\n{service.log_tail()}"
        log = service.log_path.read_text(errors="replace")
        assert "forbidden" not in log.lower(), f"{name} was refused:\n{service.log_tail()}"
        assert "Traceback" not in log, f"{name}:\n{service.log_tail()}"

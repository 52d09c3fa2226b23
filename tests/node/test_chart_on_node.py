"""The chart on a real node: `helm install` of the image built from the Dockerfile, the
operator, facade and receiver pods Ready through the chart's own probes and confined as it
says, and a channel's whole life through the chart's Services, reached as a user reaches
them (`kubectl port-forward`), with events delivered to an instance that runs as a pod
behind a Service of its own (cluster DNS, kube-proxy). Then `helm test`, a receiver pod
deleted and replaced, and `helm uninstall` keeping the channels' namespace and the CRD."""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from channel_operator.leader import lease_path
from localkube import Cluster
from localkube.node import kill_container
from whatsapp_channel.channel_secret import secret_name
from whatsapp_channel.forward_proof import SIGNATURE_HEADER, TIMESTAMP_HEADER, forward_proof_valid
from whatsapp_channel.kube import channels_path, core_path
from whatsapp_channel.model import GROUP, PLURAL, webhook_url

from tests.node import failover
from tests.node.failover import Number, Recorder
from tests.node.podspec import CONTAINER_SECURITY, IMAGE, POD_SECURITY, apply
from tests.node.portforward import port_forward
from tests.support.chart import CHART, COMPONENTS, TEST_VALUES, component_name, kubectl_json
from tests.support.graph import StandinThread
from tests.support.payloads import meta_bytes, notification, signed, text_change

RELEASE = "wa"
PHONE = "106540352240002"
# A second channel's number: one phone number belongs to one channel (issue 13).
PHONE_REPLACED = "106540352240003"
APP_SECRET = "node-app-secret-0123456789abcdef"
ACCESS_TOKEN = "EAAG-node-access-token"
SINK_PORT = 8080
# The receiver Service's node port: Meta's stand-in, on this machine, reaches the webhook
# there (the node's address is the veth's far end; kube-proxy sends it to a ready pod).
RECEIVER_NODE_PORT = 30080

# An instance of the agent platform: records each forwarded event on its stdout.
SINK = """
import base64, json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        record = {"path": self.path, "headers": dict(self.headers.items()),
                  "body": base64.b64encode(body).decode()}
        print(json.dumps(record), flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"""

# What a container of the chart sees of itself, asked through `kubectl exec`.
INSPECT = """
import base64, json, os
status = dict(l.split(":\\t", 1) for l in open("/proc/self/status").read().splitlines())
try:
    open("/root-is-writable", "w")
    writable = True
except OSError:
    writable = False
token = open("/var/run/secrets/kubernetes.io/serviceaccount/token").read()
claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
print(json.dumps({"uid": os.getuid(), "cap_eff": status["CapEff"].strip(),
                  "seccomp": status["Seccomp"].strip(), "writable": writable,
                  "sub": claims["sub"]}))
"""


@dataclass(frozen=True)
class Release:
    namespace: str  # the release's
    channels: str  # the channels' (the chart creates it)
    api_key: str
    forward_secret: bytes


def _sink(namespace: str) -> list[dict[str, Any]]:
    labels = {"app": "sink"}
    pod = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sink", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": POD_SECURITY,
                    "containers": [
                        {
                            "name": "sink",
                            "image": IMAGE,
                            "imagePullPolicy": "Never",
                            "command": ["python", "-c", SINK],
                            "ports": [{"name": "http", "containerPort": SINK_PORT}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                            "securityContext": CONTAINER_SECURITY,
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "sink", "namespace": namespace},
        "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    return [pod, service]


def secret_data(cluster: Cluster, namespace: str, name: str) -> dict[str, bytes]:
    secret = kubectl_json(cluster, "get", "secret", name, "-n", namespace)
    return {key: base64.b64decode(value) for key, value in secret["data"].items()}


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := probe()):
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.5)
    return result


def pods(cluster: Cluster, namespace: str, component: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
    items: list[dict[str, Any]] = kubectl_json(
        cluster, "get", "pods", "-n", namespace, "-l", selector
    )["items"]
    return items


def ready(pod: dict[str, Any]) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp")


def describe(cluster: Cluster, namespace: str) -> str:
    return cluster.kubectl("describe", "pods", "-n", namespace, check=False).stdout[-6000:]


@pytest.fixture(scope="module")
def graph(node_cluster: Cluster) -> Iterator[StandinThread]:
    """Meta's Graph API for the operator pod: a stand-in on the host end of the node's veth
    (the one address pods reach besides nothing), which calls the receiver back on the node's
    address, and knows the test's number with its token and app secret."""
    net = node_cluster.network
    assert net is not None
    standin = StandinThread(net.host_ip, local_hosts=(net.host_ip, net.node_ip))
    try:
        for phone in (PHONE, PHONE_REPLACED):
            standin.seed(phone, {"access_token": ACCESS_TOKEN, "app_secret": APP_SECRET})
        yield standin
    finally:
        standin.stop()


@pytest.fixture(scope="module")
def release(
    node_cluster: Cluster, graph: StandinThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Release]:
    cluster = node_cluster
    net = cluster.network
    assert net is not None
    folder = tmp_path_factory.mktemp("chart-on-node")
    namespace = f"wa-node-{uuid.uuid4().hex[:8]}"
    channels = f"{namespace}-channels"
    cluster.kubectl("create", "namespace", namespace)
    apply(cluster, *_sink(namespace))
    values = folder / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                # Meta calls the webhook on the receiver Service's node port.
                "webhookBaseUrl": f"http://{net.node_ip}:{RECEIVER_NODE_PORT}",
                # Meta is the stand-in on the host end of the veth (plain http, named).
                "operator": {
                    "graph": {"baseUrl": graph.url, "plainHttpHost": net.host_ip},
                },
                # Generous: on a loaded machine the operator may take a while to report Ready.
                "facade": {"readyWaitSeconds": 60},
                "receiver": {
                    "service": {"type": "NodePort", "nodePort": RECEIVER_NODE_PORT},
                    # The instance, a pod behind its Service, by its cluster DNS name.
                    "forwardUrlTemplate": (
                        f"http://sink.{namespace}.svc.cluster.local/instances/{{instance_id}}/whatsapp"
                    ),
                    "statusWriteIntervalSeconds": 1,
                },
            }
        )
    )
    try:
        cluster.helm(
            "install", RELEASE, str(CHART), "-n", namespace, "-f", str(TEST_VALUES),
            "-f", str(values), "--wait", "--timeout=8m",
            timeout=600,
        )  # fmt: skip
        # The instance too: helm waited for the chart's pods only.
        cluster.kubectl(
            "rollout", "status", "deployment/sink", "-n", namespace, "--timeout=300s",
            timeout=330,
        )  # fmt: skip
        keys = secret_data(cluster, namespace, component_name(RELEASE, "api-keys"))
        first = next(
            line.split()
            for line in keys["api-keys"].decode().splitlines()
            if line.strip() and not line.startswith("#")
        )
        forward = secret_data(cluster, namespace, component_name(RELEASE, "forward-secret"))
        yield Release(
            namespace=namespace,
            channels=channels,
            api_key=first[1],
            forward_secret=forward["forward-secret"],
        )
    except Exception:
        print(describe(cluster, namespace))
        raise
    finally:
        cluster.helm("uninstall", RELEASE, "-n", namespace, "--wait", check=False, timeout=300)
        for ns in (namespace, channels):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_the_pods_are_ready_through_the_charts_probes_and_confined(
    node_cluster: Cluster, release: Release
) -> None:
    for component in COMPONENTS:
        found = pods(node_cluster, release.namespace, component)
        assert found, component
        for pod in found:
            assert ready(pod), f"{component}: {describe(node_cluster, release.namespace)}"
            (container,) = pod["spec"]["containers"]
            assert container["image"] == IMAGE
            assert "readinessProbe" in container or component == "operator"
            assert container["livenessProbe"]
        seen = json.loads(
            node_cluster.kubectl(
                "exec",
                "-n",
                release.namespace,
                found[0]["metadata"]["name"],
                "--",
                "python",
                "-c",
                INSPECT,
            ).stdout
        )
        assert seen["uid"] == 65532, component
        assert seen["cap_eff"] == "0000000000000000", component
        assert seen["seccomp"] == "2", component  # RuntimeDefault: a seccomp filter
        assert seen["writable"] is False, component
        # Mounted by the kubelet: a token of the component's own ServiceAccount.
        account = component_name(RELEASE, component)
        assert seen["sub"] == f"system:serviceaccount:{release.namespace}:{account}"


def _sink_records(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    log = cluster.kubectl("logs", "deployment/sink", "-n", namespace, check=False).stdout
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]


def _challenge(http: httpx.Client, url: str, token: str) -> httpx.Response:
    params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    return http.get(url, params=params)


def test_a_channel_lives_through_the_charts_services(
    node_cluster: Cluster, release: Release, graph: StandinThread
) -> None:
    cluster = node_cluster
    ns = release.channels
    instance = str(uuid.uuid4())
    verify_token = f"node-verify-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {release.api_key}"}
    facade_service = component_name(RELEASE, "facade")
    receiver_service = component_name(RELEASE, "receiver")
    with (
        port_forward(cluster, release.namespace, f"svc/{facade_service}", 80) as facade,
        port_forward(cluster, release.namespace, f"svc/{receiver_service}", 80) as receiver,
        httpx.Client(timeout=90) as http,
    ):
        api = f"{facade}/v1/instances/{instance}/channels/whatsapp"
        webhook = f"{receiver}/hooks/whatsapp/{instance}"
        created = http.post(
            api,
            headers=auth,
            json={
                "access_token": ACCESS_TOKEN,
                "app_secret": APP_SECRET,
                "phone_number_id": PHONE,
                "display_phone": "+61400111333",
                "verify_token": verify_token,
            },
        )
        assert created.status_code == 200, created.text
        assert created.json()["status"] == "active"
        cluster.kubectl(
            "wait", "--for=condition=Ready", f"whatsappchannel/{instance}", "-n", ns,
            "--timeout=120s", timeout=150,
        )  # fmt: skip
        assert secret_data(cluster, ns, secret_name(instance))["app_secret"] == (
            APP_SECRET.encode()
        )
        assert http.get(api, headers=auth).json()["status"] == "active"
        # The operator pod registered the webhook at Meta, which challenged it on the node.
        net = cluster.network
        assert net is not None
        assert graph.override(PHONE) == webhook_url(
            f"http://{net.node_ip}:{RECEIVER_NODE_PORT}", instance
        )
        assert graph.subscribed(PHONE)

        # Meta's challenge, through the receiver's Service: answered once a receiver pod
        # has learnt the channel (each pod watches the Secrets itself).
        answer = wait_for(
            "the receiver answers the challenge",
            lambda: (r := _challenge(http, webhook, verify_token)).status_code == 200 and r,
            timeout=120,
        )
        assert answer.text == "1158201444"
        assert _challenge(http, webhook, "nope-nope").status_code == 403

        # A signed event reaches the instance pod, through its Service, by its DNS name.
        body = meta_bytes(notification([text_change(PHONE, "Hallo from a pod")]))
        forged = http.post(webhook, content=body, headers=signed("not-the-secret", body))
        assert forged.status_code in {401, 403}
        # Meta redelivers what was not answered 200: so does this test, for a while.
        delivered = wait_for(
            "the instance accepted the event",
            lambda: (
                (
                    r := http.post(webhook, content=body, headers=signed(APP_SECRET, body))
                ).status_code
                == 200
                and r
            ),
            timeout=120,
        )
        assert delivered.status_code == 200, delivered.text
        records = wait_for(
            "the instance pod got the event",
            lambda: _sink_records(cluster, release.namespace),
            timeout=120,
        )
        # Delivered at least once (a forward retried on a dropped connection may repeat it).
        assert all(r["body"] == records[0]["body"] for r in records), records
        record = records[0]
        assert record["path"] == f"/instances/{instance}/whatsapp"
        assert base64.b64decode(record["body"]) == body
        headers = {k.lower(): v for k, v in record["headers"].items()}
        assert forward_proof_valid(
            release.forward_secret,
            instance_id=instance,
            body=body,
            timestamp=headers.get(TIMESTAMP_HEADER.lower()),
            signature=headers.get(SIGNATURE_HEADER.lower()),
        )
        wait_for(
            "the receiver wrote lastEventAt",
            lambda: (
                kubectl_json(cluster, "get", "whatsappchannel", instance, "-n", ns)
                .get("status", {})
                .get("lastEventAt")
            ),
            timeout=120,
        )

        deleted = http.delete(api, headers=auth)
        assert deleted.status_code == 204, deleted.text
        wait_for(
            "the channel is gone",
            lambda: (
                cluster.kubectl(
                    "get", "whatsappchannel", instance, "-n", ns, check=False
                ).returncode
                != 0
            ),
        )


def test_helm_test_passes(node_cluster: Cluster, release: Release) -> None:
    result = node_cluster.helm(
        "test", RELEASE, "-n", release.namespace, "--timeout=5m", timeout=400
    )
    assert "Phase:          Succeeded" in result.stdout, result.stdout


# Asks `url` again and again from inside the node (where Service addresses route) until
# `stop` exists; prints how many answers were 200 and what went wrong otherwise.
POLLER = """
import json, os, sys, time, urllib.request
url, stop = sys.argv[1], sys.argv[2]
ok, failed = 0, []
while not os.path.exists(stop):
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            response.read()
            ok += 1
    except Exception as exc:
        failed.append(repr(exc)[:200])
    time.sleep(0.02)
print(json.dumps({"ok": ok, "failed": failed}))
"""


def test_an_upgrade_rolls_the_pods_while_the_receiver_keeps_answering(
    node_cluster: Cluster, release: Release, tmp_path: Path
) -> None:
    assert node_cluster.network is not None
    service = component_name(RELEASE, "receiver")
    address = node_cluster.kubectl(
        "get", "service", service, "-n", release.namespace, "-o", "jsonpath={.spec.clusterIP}"
    ).stdout  # fmt: skip
    before = {p["metadata"]["name"] for p in pods(node_cluster, release.namespace, "receiver")}
    stop = tmp_path / "stop"
    poller = subprocess.Popen(
        [*node_cluster.network.nsenter(), sys.executable, "-c", POLLER,
         f"http://{address}/readyz", str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        node_cluster.helm(
            "upgrade", RELEASE, str(CHART), "-n", release.namespace, "--reuse-values",
            "--set", "logLevel=debug", "--wait", "--timeout=5m",
            timeout=400,
        )  # fmt: skip
        wait_for(
            "the old receiver pods are gone",
            lambda: (
                not (
                    before
                    & {
                        p["metadata"]["name"]
                        for p in pods(node_cluster, release.namespace, "receiver")
                    }
                )
            ),
            timeout=120,
        )
    finally:
        stop.touch()
        out, _ = poller.communicate(timeout=60)
    polled = json.loads(out)
    assert polled["ok"] > 0
    assert polled["failed"] == []
    after = pods(node_cluster, release.namespace, "receiver")
    assert all(ready(p) for p in after)
    assert all(
        {"name": "WA_RECEIVER_LOG_LEVEL", "value": "DEBUG"} in p["spec"]["containers"][0]["env"]
        for p in after
    )


def test_a_deleted_receiver_pod_is_replaced(node_cluster: Cluster, release: Release) -> None:
    before = pods(node_cluster, release.namespace, "receiver")
    victim = before[0]["metadata"]["name"]
    node_cluster.kubectl("delete", "pod", victim, "-n", release.namespace, "--wait=false")

    def replaced() -> list[dict[str, Any]] | None:
        now = [p for p in pods(node_cluster, release.namespace, "receiver") if ready(p)]
        names = {p["metadata"]["name"] for p in now}
        return now if len(now) == len(before) and victim not in names else None

    now = wait_for("a new receiver pod is Ready", replaced, timeout=180)
    (new,) = [
        p for p in now if p["metadata"]["name"] not in {b["metadata"]["name"] for b in before}
    ]

    # The channel keeps working: one made now is answered by the new pod itself.
    instance = str(uuid.uuid4())
    verify_token = f"node-verify-{uuid.uuid4().hex}"
    auth = {"Authorization": f"Bearer {release.api_key}"}
    facade_service = component_name(RELEASE, "facade")
    with (
        port_forward(node_cluster, release.namespace, f"svc/{facade_service}", 80) as facade,
        port_forward(
            node_cluster, release.namespace, f"pod/{new['metadata']['name']}", 8080
        ) as receiver,
        httpx.Client(timeout=90) as http,
    ):
        api = f"{facade}/v1/instances/{instance}/channels/whatsapp"
        created = http.post(
            api,
            headers=auth,
            json={
                "access_token": ACCESS_TOKEN,
                "app_secret": APP_SECRET,
                "phone_number_id": PHONE_REPLACED,
                "display_phone": "+61400111333",
                "verify_token": verify_token,
            },
        )
        assert created.status_code == 200, created.text
        webhook = f"{receiver}/hooks/whatsapp/{instance}"
        answer = wait_for(
            "the new receiver pod answers the challenge",
            lambda: (r := _challenge(http, webhook, verify_token)).status_code == 200 and r,
            timeout=120,
        )
        assert answer.text == "1158201444"
        assert http.delete(api, headers=auth).status_code == 204


# --- failover (issue 25, item 3) ------------------------------------------------------------

LEASE = component_name(RELEASE, "operator")
CREDENTIALS = {"access_token": ACCESS_TOKEN, "app_secret": APP_SECRET}


@contextmanager
def _watching(
    cluster: Cluster, release: Release, graph: StandinThread, numbers: list[Number]
) -> Iterator[tuple[str, httpx.Client, Recorder]]:
    """The numbers known at Meta; the facade through its Service; a record of the Lease, the
    channels and their Secrets."""
    for number in numbers:
        graph.seed(number.phone, CREDENTIALS, waba_id=number.waba)
    paths = {
        "leases": lease_path(release.namespace),
        "channels": channels_path(release.channels),
        "secrets": core_path("secrets", release.channels),
    }
    facade_service = component_name(RELEASE, "facade")
    with (
        port_forward(cluster, release.namespace, f"svc/{facade_service}", 80) as facade,
        failover.recording(cluster.kubeconfig, paths) as record,
        httpx.Client(timeout=90) as http,
    ):
        yield facade, http, record


def _post(http: httpx.Client, facade: str, release: Release, number: Number) -> str:
    """A new channel on `number` through the REST API, answered once the operator reported
    on it: `active` (the facade waits for that); its name."""
    instance = str(uuid.uuid4())
    answer = http.post(
        f"{facade}/v1/instances/{instance}/channels/whatsapp",
        headers={"Authorization": f"Bearer {release.api_key}"},
        json={
            **CREDENTIALS,
            "phone_number_id": number.phone,
            "waba_id": number.waba,
            "display_phone": "+61400111333",
            "verify_token": f"node-verify-{uuid.uuid4().hex}",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "active", answer.text
    return instance


@dataclass(frozen=True)
class Calm:
    """A channel created while no handover happens: what one creation costs."""

    name: str
    number: Number
    created: float  # monotonic, just before its POST

    def writes(self, record: Recorder) -> Counter[str]:
        return record.writes(self.name, since=self.created)


def _calm(http: httpx.Client, facade: str, release: Release, number: Number) -> Calm:
    created = time.monotonic()
    return Calm(_post(http, facade, release, number), number, created)


def _holder(cluster: Cluster, release: Release) -> str:
    lease = kubectl_json(cluster, "get", "lease", LEASE, "-n", release.namespace)
    return str(lease["spec"].get("holderIdentity") or "")


def test_a_killed_leader_is_replaced_and_a_channel_posted_meanwhile_is_active_within_20s(
    node_cluster: Cluster, release: Release, graph: StandinThread
) -> None:
    cluster, net, ns = node_cluster, node_cluster.network, release.namespace
    assert net is not None
    calm_number, number = failover.numbers(0, 2)
    with _watching(cluster, release, graph, [calm_number, number]) as (facade, http, record):
        calm = _calm(http, facade, release, calm_number)
        leader = _holder(cluster, release)
        pod = kubectl_json(cluster, "get", "pod", failover.holder_pod(leader), "-n", ns)
        (container,) = pod["status"]["containerStatuses"]
        calm_calls, shared = failover.graph_calls(graph, calm_number), failover.shared_calls(graph)

        killed = time.monotonic()
        kill_container(net, container["containerID"])
        name = _post(http, facade, release, number)
        active_after = time.monotonic() - killed

        def restarted() -> dict[str, Any] | None:
            found = kubectl_json(cluster, "get", "pod", pod["metadata"]["name"], "-n", ns)
            (now,) = found["status"]["containerStatuses"]
            return now if now["restartCount"] > container["restartCount"] else None

        last = wait_for("the killed container restarted", restarted)["lastState"]["terminated"]
    (handover,) = failover.handovers(record.events("leases", LEASE))
    print(
        f"\nfailover: leader SIGKILLed; a channel POSTed at once was active after "
        f"{active_after:.1f}s (the Lease changed hands {handover.gap:.1f}s after its last "
        f"renewal; a creation alone is Ready in {record.created_to_ready(calm.name):.2f}s "
        f"and costs writes {dict(calm.writes(record))}, Graph calls {dict(calm_calls)})"
    )
    assert calm_calls, "the stand-in saw no call for an active channel"
    assert active_after < 20
    # Killed for real (128 + 9), never released: the standby took it once it had lapsed.
    assert last["exitCode"] == 137, last
    assert handover.before == leader
    assert not handover.released
    assert handover.gap > 15 - 1, "the Lease was taken before it lapsed"
    # No duplicate: the channel reconciled before costs nothing; the new one what one costs.
    assert record.writes(calm.name, since=killed) == Counter()
    assert failover.graph_calls(graph, calm_number) == calm_calls
    assert record.writes(name, since=killed) == calm.writes(record)
    assert failover.graph_calls(graph, number) == calm_calls
    assert failover.once_per_leader(failover.shared_calls(graph) - shared, leaders=1)


def test_a_rolling_upgrade_hands_over_with_no_channel_unreconciled_past_5s(
    node_cluster: Cluster, release: Release, graph: StandinThread
) -> None:
    cluster = node_cluster
    calm_number, *pool = failover.numbers(2, 240)
    old = {p["metadata"]["name"] for p in pods(cluster, release.namespace, "operator")}
    stop = threading.Event()

    def stream() -> list[tuple[str, Number]]:
        """A new channel every half second or so (each POST waits for its answer) until
        told to stop: whenever the operator stops, one is in the works."""
        made: list[tuple[str, Number]] = []
        for number in pool:
            made.append((_post(http, facade, release, number), number))
            if stop.wait(0.5):
                return made
        raise AssertionError(f"the upgrade outlasted {len(pool)} channels")

    with (
        _watching(cluster, release, graph, [calm_number, *pool]) as (facade, http, record),
        ThreadPoolExecutor(1) as one_thread,
    ):
        calm = _calm(http, facade, release, calm_number)
        calm_calls, shared = failover.graph_calls(graph, calm_number), failover.shared_calls(graph)
        began = time.monotonic()
        streamed = one_thread.submit(stream)
        try:
            cluster.helm(
                "upgrade", RELEASE, str(CHART), "-n", release.namespace, "--reuse-values",
                "--set-string", f"operator.podAnnotations.failover-test={uuid.uuid4()}",
                "--wait", "--timeout=5m",
                timeout=400,
            )  # fmt: skip

            def handed_over() -> bool:
                now = {p["metadata"]["name"] for p in pods(cluster, release.namespace, "operator")}
                holder = failover.holder_pod(_holder(cluster, release))
                return not (now & old) and holder in now

            wait_for("the old operator pods are gone and a new one leads", handed_over)
            settled = time.monotonic()

            def one_more() -> bool:  # so that a channel came after the last handover too
                if streamed.done():
                    streamed.result()  # raises what stopped it
                return bool(record.events("channels", since=settled))

            wait_for("a channel created after the handover", one_more)
        finally:
            stop.set()
        made = streamed.result(timeout=120)
    moves = failover.handovers(record.events("leases", LEASE))
    unreconciled = [record.created_to_ready(name) for name, _ in made]
    print(
        f"\nfailover: helm upgrade rolled the operator with {len(moves)} handover(s) "
        f"(Lease released to acquired: {', '.join(f'{m.gap:.2f}s' for m in moves)}); "
        f"{len(made)} channels created meanwhile, each Ready after at most "
        f"{max(unreconciled):.2f}s (median {statistics.median(unreconciled):.2f}s; "
        f"alone {record.created_to_ready(calm.name):.2f}s)"
    )
    assert moves, "the Lease never changed hands"
    assert all(m.released for m in moves), moves
    assert max(unreconciled) <= 5
    # No duplicate: the channel reconciled before costs nothing; each new one what one costs.
    assert record.writes(calm.name, since=began) == Counter()
    assert failover.graph_calls(graph, calm_number) == calm_calls
    assert {name: record.writes(name, since=began) for name, _ in made} == {
        name: calm.writes(record) for name, _ in made
    }
    assert {name: failover.graph_calls(graph, number) for name, number in made} == {
        name: calm_calls for name, _ in made
    }
    assert failover.once_per_leader(failover.shared_calls(graph) - shared, leaders=len(moves))


def test_uninstall_keeps_the_channel_namespace_and_the_crd(
    node_cluster: Cluster, release: Release
) -> None:
    node_cluster.helm("uninstall", RELEASE, "-n", release.namespace, "--wait", timeout=300)
    wait_for(
        "the release's pods are gone",
        lambda: not any(pods(node_cluster, release.namespace, c) for c in COMPONENTS),
        timeout=180,
    )
    assert node_cluster.kubectl("get", "namespace", release.channels, check=False).returncode == 0
    assert node_cluster.kubectl("get", "crd", f"{PLURAL}.{GROUP}", check=False).returncode == 0

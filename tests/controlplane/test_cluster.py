"""Issue 2: the local control plane is a real Kubernetes API (schema validation, garbage
collection, RBAC, helm), and it ends every process it starts."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from localkube import Cluster

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.test}
spec:
  group: example.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
"""


def _wait_until(predicate, timeout: float = 60.0, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def test_crd_schema_violation_is_refused_by_the_apiserver(cluster: Cluster, namespace: str):
    cluster.kubectl("apply", "-f", "-", input=WIDGET_CRD)
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", "crd/widgets.example.test"
    )
    good = "apiVersion: example.test/v1\nkind: Widget\nmetadata: {name: ok}\nspec: {size: 3}\n"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=good)

    bad = "apiVersion: example.test/v1\nkind: Widget\nmetadata: {name: bad}\nspec: {size: 99}\n"
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=bad, check=False)
    assert result.returncode != 0
    assert "spec.size: Invalid value: 99: spec.size in body should be less than or equal to 10" in (
        result.stderr
    )
    assert cluster.kubectl("get", "widget", "bad", "-n", namespace, check=False).returncode != 0


def test_owned_object_is_garbage_collected_after_its_owner(cluster: Cluster, namespace: str):
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = cluster.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "namespace": namespace,
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
            ],
        },
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(owned))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)

    def owned_gone() -> bool:
        return (
            cluster.kubectl("get", "configmap", "owned", "-n", namespace, check=False).returncode
            != 0
        )

    assert _wait_until(owned_gone), "the garbage collector did not remove the owned ConfigMap"


def _request_as(cluster: Cluster, token: str, path: str) -> int:
    ca = cluster.state_dir / "pki" / "ca.crt"
    request = urllib.request.Request(
        cluster.server + path, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(
            request, context=ssl.create_default_context(cafile=str(ca))
        ) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_rbac_refuses_a_bare_service_account_and_allows_exactly_a_role(
    cluster: Cluster, namespace: str
):
    for account in ("nobody", "reader"):
        cluster.kubectl("create", "serviceaccount", account, "-n", namespace)
    cluster.kubectl(
        "create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace
    )
    cluster.kubectl(
        "create",
        "rolebinding",
        "reader",
        "--role=cm-reader",
        f"--serviceaccount={namespace}:reader",
        "-n",
        namespace,
    )

    def can_i(account: str, verb: str, resource: str) -> str:
        as_user = f"--as=system:serviceaccount:{namespace}:{account}"
        result = cluster.kubectl(
            "auth", "can-i", verb, resource, "-n", namespace, as_user, check=False
        )
        return result.stdout.strip()

    assert can_i("nobody", "list", "configmaps") == "no"
    assert can_i("reader", "list", "configmaps") == "yes"
    assert can_i("reader", "get", "configmaps") == "yes"
    assert can_i("reader", "create", "configmaps") == "no"
    assert can_i("reader", "list", "secrets") == "no"

    # Real requests with real service-account tokens (kubectl create token works).
    nobody = cluster.kubectl("create", "token", "nobody", "-n", namespace).stdout.strip()
    reader = cluster.kubectl("create", "token", "reader", "-n", namespace).stdout.strip()
    configmaps = f"/api/v1/namespaces/{namespace}/configmaps"
    assert _request_as(cluster, nobody, configmaps) == 403
    assert _request_as(cluster, reader, configmaps) == 200
    assert _request_as(cluster, reader, f"/api/v1/namespaces/{namespace}/secrets") == 403
    assert _request_as(cluster, "not-a-token", configmaps) == 401


def test_helm_runs_from_the_built_binary(cluster: Cluster):
    result = cluster.helm("version", "--short")
    assert result.stdout.startswith("v3."), result.stdout
    assert "v3.19" in result.stdout


def test_server_reports_the_pinned_release(cluster: Cluster):
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == "v1.34.4"


@pytest.mark.cluster
def test_stop_ends_every_process_and_start_is_repeatable(tmp_path: Path):
    second = Cluster.start(tmp_path / "second")
    pids = dict(second.pids)
    assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
    assert second.kubectl("get", "namespace", "default").returncode == 0
    # A second handle on the same folder (what `localkube down` does) sees it running.
    attached = Cluster.attach(tmp_path / "second")
    assert attached is not None
    assert attached.running()
    second.stop()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not attached.running()


def test_apiserver_restart_keeps_the_data(cluster: Cluster, namespace: str):
    cluster.kubectl("create", "configmap", "survivor", "-n", namespace, "--from-literal=k=v")
    cluster.restart("kube-apiserver")
    assert _wait_until(
        lambda: cluster.kubectl("get", "--raw", "/readyz", check=False).returncode == 0, timeout=60
    )
    value = cluster.kubectl(
        "get", "configmap", "survivor", "-n", namespace, "-o", "jsonpath={.data.k}"
    )
    assert value.stdout == "v"

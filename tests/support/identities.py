"""Test identities with exactly the chart's rights: the Roles and RoleBindings of the chart's
`templates/rbac.yaml`, rendered by `helm template` and moved to the test's namespaces, bound to
a service account of the component's chart name. A change to the chart's RBAC is what the
end-to-end suites run with; no second copy to keep in step.

    kubeconfig = identity(cluster, "receiver", namespace, tmp_path)
    kubeconfig = identity(cluster, "facade", namespace, tmp_path, keys_namespace=keys)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from localkube import Cluster
from localkube.cluster import service_account_kubeconfig, write_kubeconfig

from tests.support.chart import component_name, render

# Placeholders the chart renders into, replaced by the test's own namespaces.
_RELEASE, _KEYS, _CHANNELS = "wa", "placeholder-keys", "placeholder-channels"
_RBAC = "templates/rbac.yaml"


def service_account(component: str) -> str:
    """The service account name a component's identity has (the chart's name for it)."""
    return component_name(_RELEASE, component)


def rbac(cluster: Cluster, component: str) -> list[dict[str, Any]]:
    """The chart's Roles and RoleBindings of `component`, as rendered (placeholder namespaces:
    `placeholder-channels` for the channels, `placeholder-keys` for the release)."""
    rendered = render(
        cluster,
        "--show-only", _RBAC, "--set", f"channelNamespace.name={_CHANNELS}",
        release=_RELEASE, namespace=_KEYS,
    )  # fmt: skip
    name = service_account(component)
    return [
        m
        for m in rendered
        if m["kind"] in {"Role", "RoleBinding"}
        and (m["metadata"]["name"] == name or m["metadata"]["name"].startswith(f"{name}-"))
    ]


def identity(
    cluster: Cluster,
    component: str,
    namespace: str,
    folder: Path,
    *,
    keys_namespace: str | None = None,
) -> Path:
    """A kubeconfig for service account `service_account(component)` in `namespace`, with the
    chart's rights of `component`: its channel-namespace Roles in `namespace`, its
    release-namespace Roles in `keys_namespace` (default: `namespace`, the single-namespace
    layout)."""
    where = {_CHANNELS: namespace, _KEYS: keys_namespace or namespace}
    name = service_account(component)
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    objects = rbac(cluster, component)
    assert {m["kind"] for m in objects} == {"Role", "RoleBinding"}, f"no RBAC for {component}"
    for obj in objects:
        obj["metadata"]["namespace"] = where[obj["metadata"]["namespace"]]
        for subject in obj.get("subjects") or []:
            subject.update(name=name, namespace=namespace)
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    return service_account_kubeconfig(cluster, namespace, name, folder)


def unreachable_kubeconfig(folder: Path, port: int) -> Path:
    """A kubeconfig whose apiserver is a loopback port that nobody serves (or nobody answers)."""
    return write_kubeconfig(
        folder / f"kubeconfig-unreachable-{port}",
        server=f"https://127.0.0.1:{port}",
        ca=None,
        user="nobody",
        credentials={"token": "not-a-real-token"},
    )

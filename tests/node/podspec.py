"""Pods the node tests run themselves, confined the way the chart confines its own."""

from __future__ import annotations

import json
from typing import Any

from localkube import Cluster
from localkube.node import image_tag

IMAGE = f"whatsapp-channels:{image_tag()}"

POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def python_pod(
    name: str, namespace: str, script: str, *, restart: str = "Never", **spec: Any
) -> dict[str, Any]:
    """A pod of the project image that runs `script` with its Python."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "restartPolicy": restart,
            "securityContext": POD_SECURITY,
            "containers": [
                {
                    "name": "main",
                    "image": IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["python", "-c", script],
                    "securityContext": CONTAINER_SECURITY,
                }
            ],
            **spec,
        },
    }


def apply(cluster: Cluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
    )


def wait_succeeded(cluster: Cluster, name: str, namespace: str, timeout: int = 180) -> str:
    """Wait until pod `name` has run to success; its log."""
    result = cluster.kubectl(
        "wait", f"pod/{name}", "-n", namespace, "--for=jsonpath={.status.phase}=Succeeded",
        f"--timeout={timeout}s", check=False, timeout=timeout + 30,
    )  # fmt: skip
    log = cluster.kubectl("logs", name, "-n", namespace, check=False).stdout
    assert result.returncode == 0, f"{name} did not succeed: {result.stderr}\n{log}"
    return log

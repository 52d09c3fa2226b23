"""`kubectl apply -f crds/` on the real apiserver: it works, and applying again changes
nothing."""

from __future__ import annotations

from localkube import Cluster

from tests.support.chart import CRD_NAME, REPO, kubectl_json


def test_kubectl_apply_of_the_crds_folder_works_and_is_idempotent(
    cluster: Cluster, namespace: str
) -> None:
    crds = str(REPO / "crds")
    cluster.kubectl("apply", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    generation = kubectl_json(cluster, "get", "crd", CRD_NAME)["metadata"]["generation"]

    again = cluster.kubectl("apply", "-f", crds).stdout
    assert again.strip() == f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME} unchanged"
    assert kubectl_json(cluster, "get", "crd", CRD_NAME)["metadata"]["generation"] == generation

    cluster.wait_until_served("whatsappchannels", namespace)
    listed = kubectl_json(cluster, "get", "whatsappchannels", "-n", namespace)
    assert listed["items"] == []
    # The short name and the categories from the contract work too.
    assert cluster.kubectl("get", "wac", "-n", namespace).returncode == 0
    assert cluster.kubectl("get", "whatsapp", "-n", namespace).returncode == 0

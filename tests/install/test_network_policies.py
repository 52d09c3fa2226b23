"""The chart's NetworkPolicies (issue 13, item 12), rendered by the real helm: one per
component, selecting exactly its pods, admitting in each direction only what it needs;
the ports they admit are the ones the chart's Services and helm test use; the apiserver
accepts them as they are. (No CNI runs here: that they are enforced is the CNI's part.)"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from localkube import Cluster

from tests.support.chart import COMPONENTS, Manifest, install, one, render

DNS = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
APISERVER = [{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}]
ANY_POD: list[dict[str, Any]] = [{"namespaceSelector": {}}]


def policies(manifests: list[Manifest]) -> dict[str, Manifest]:
    found = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    by_component = {m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in found}
    assert len(by_component) == len(found)
    return by_component


def pod_labels(manifests: list[Manifest], component: str) -> dict[str, str]:
    labels: dict[str, str] = one(manifests, "Deployment", f"-{component}")["spec"]["template"][
        "metadata"
    ]["labels"]
    return labels


def container_ports(manifests: list[Manifest], component: str) -> dict[str, int]:
    (container,) = one(manifests, "Deployment", f"-{component}")["spec"]["template"]["spec"][
        "containers"
    ]
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def ingress_ports(policy: Manifest) -> dict[str, list[Any] | None]:
    """Each admitted port (by name) and who may reach it (None: anyone)."""
    admitted: dict[str, list[Any] | None] = {}
    for rule in policy["spec"].get("ingress") or []:
        for port in rule["ports"]:
            assert port["protocol"] == "TCP"
            admitted[port["port"]] = rule.get("from")
    return admitted


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}
    return bool(selector["matchLabels"].items() <= labels.items())


@pytest.fixture(scope="module")
def manifests(cluster: Cluster) -> list[Manifest]:
    return render(cluster)


def test_one_policy_per_component_selects_its_pods_only(manifests: list[Manifest]) -> None:
    found = policies(manifests)
    assert set(found) == set(COMPONENTS)
    for component, policy in found.items():
        assert policy["metadata"]["namespace"] == "wa"
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        for other in COMPONENTS:
            assert selects(policy["spec"]["podSelector"], pod_labels(manifests, other)) == (
                other == component
            ), (component, other)


def test_each_component_admits_only_what_it_needs(manifests: list[Manifest]) -> None:
    found = policies(manifests)
    # The operator is called by no one (the kubelet's probes come from the node, which a
    # NetworkPolicy always admits); only the metrics port is open, to pods of the cluster.
    assert ingress_ports(found["operator"]) == {"metrics": ANY_POD}
    # The facade's API and Meta's webhooks: anyone by default; metrics as above.
    assert ingress_ports(found["facade"]) == {"http": None, "metrics": ANY_POD}
    assert ingress_ports(found["receiver"]) == {"http": None, "metrics": ANY_POD}
    for component, policy in found.items():
        # Every admitted port is a port the container has.
        assert set(ingress_ports(policy)) <= set(container_ports(manifests, component))
        egress = policy["spec"]["egress"]
        assert [rule["ports"] for rule in egress[:2]] == [DNS, APISERVER], component
        # The defaults, without a cluster to read the apiserver's address from: any address.
        assert all("to" not in rule for rule in egress)
    # The facade calls the apiserver only; the operator also Meta, on the Graph URL's port,
    # by a rule of its own (issue 21 item 8); the receiver the instances, on the forward
    # URL's port only.
    assert len(found["facade"]["spec"]["egress"]) == 2
    assert found["operator"]["spec"]["egress"][2:] == [
        {"ports": [{"port": 443, "protocol": "TCP"}]}
    ]
    assert found["receiver"]["spec"]["egress"][2:] == [{"ports": [{"port": 80, "protocol": "TCP"}]}]


def test_every_service_port_is_admitted_and_nothing_more(cluster: Cluster) -> None:
    """The public Services and the metrics Services reach ports the policies admit; no
    admitted port lacks a Service (the operator's metrics included)."""
    manifests = render(cluster, "--set", "metrics.services=true")
    found = policies(manifests)
    served: dict[str, set[str]] = {c: set() for c in COMPONENTS}
    for service in (m for m in manifests if m["kind"] == "Service"):
        component = service["metadata"]["labels"]["app.kubernetes.io/component"]
        assert selects(
            {"matchLabels": service["spec"]["selector"]}, pod_labels(manifests, component)
        )
        served[component] |= {port["targetPort"] for port in service["spec"]["ports"]}
    for component in COMPONENTS:
        assert set(ingress_ports(found[component])) == served[component], component


@pytest.mark.parametrize(
    ("template", "port"),
    [
        ("http://agents.platform.svc/instances/{instance_id}/whatsapp", 80),
        ("https://agents.platform.svc/instances/{instance_id}/whatsapp", 443),
        ("http://agents.platform.svc:8080/instances/{instance_id}/whatsapp", 8080),
        ("https://user@{instance_id}.agents.svc:8443/whatsapp", 8443),
        ("https://{instance_id}.agents.svc/whatsapp", 443),
    ],
)
def test_the_receiver_forwards_on_the_forward_urls_port(
    cluster: Cluster, template: str, port: int
) -> None:
    manifests = render(cluster, "--set-string", f"receiver.forwardUrlTemplate={template}")
    egress = policies(manifests)["receiver"]["spec"]["egress"]
    assert egress[2]["ports"] == [{"port": port, "protocol": "TCP"}]


def test_peers_narrow_each_rule(cluster: Cluster, tmp_path: Any) -> None:
    platform = {"namespaceSelector": {"matchLabels": {"team": "platform"}}}
    ingress_controller = {"namespaceSelector": {"matchLabels": {"name": "ingress"}}}
    prometheus = {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    agents = {"ipBlock": {"cidr": "10.20.0.0/16"}}
    proxy = {"ipBlock": {"cidr": "10.30.0.7/32"}}
    apiserver = {"ipBlock": {"cidr": "172.18.0.2/32"}}
    dns = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    values = tmp_path / "values.json"
    values.write_text(
        json.dumps(
            {
                "networkPolicy": {
                    "facadeFrom": [platform],
                    "receiverFrom": [ingress_controller],
                    "metricsFrom": [prometheus],
                    "forwardTo": [agents],
                    "graphTo": [proxy],
                    "dns": {"to": [dns]},
                    "apiServer": {"to": [apiserver], "ports": [6443]},
                }
            }
        )
    )
    manifests = render(cluster, "-f", str(values))
    found = policies(manifests)
    test_pod = one(manifests, "Pod", "-test")["metadata"]["labels"]
    for component, peer in (("facade", platform), ("receiver", ingress_controller)):
        admitted = ingress_ports(found[component])
        http_from = admitted["http"]
        assert http_from is not None
        # The given peers, and `helm test`'s pod, which asks /readyz.
        assert http_from[0] == peer
        assert len(http_from) == 2
        assert selects(http_from[1]["podSelector"], test_pod)
        assert not selects(http_from[1]["podSelector"], pod_labels(manifests, component))
        assert admitted["metrics"] == [prometheus]
    for policy in found.values():
        egress = policy["spec"]["egress"]
        assert egress[0]["to"] == [dns]
        assert egress[1] == {"ports": [{"port": 6443, "protocol": "TCP"}], "to": [apiserver]}
    assert found["receiver"]["spec"]["egress"][2]["to"] == [agents]
    graph = {"ports": [{"port": 443, "protocol": "TCP"}], "to": [proxy]}
    assert found["operator"]["spec"]["egress"][2:] == [graph]
    without_tests = policies(render(cluster, "-f", str(values), "--set", "tests.enabled=false"))
    assert ingress_ports(without_tests["facade"])["http"] == [platform]


def test_metrics_off_closes_the_metrics_port(cluster: Cluster) -> None:
    found = policies(render(cluster, "--set", "metrics.enabled=false"))
    assert found["operator"]["spec"]["ingress"] == []  # nothing may call it
    assert set(ingress_ports(found["facade"])) == set(ingress_ports(found["receiver"])) == {"http"}


def test_policies_can_be_turned_off(cluster: Cluster) -> None:
    assert policies(render(cluster, "--set", "networkPolicy.enabled=false")) == {}


def test_the_apiserver_accepts_the_policies(cluster: Cluster, manifests: list[Manifest]) -> None:
    without_metrics = policies(render(cluster, "--set", "metrics.enabled=false")).values()
    for policy in [*policies(manifests).values(), *without_metrics]:
        body = {**policy, "metadata": {**policy["metadata"], "namespace": "default"}}
        cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(body))


def test_installed_the_apiserver_rule_names_the_apiservers_own_addresses(
    cluster: Cluster, crd: Path
) -> None:
    """Issue 21 item 8; fails on the chart before it, where every component (the
    internet-facing receiver's included) could reach any address on 443/6443 unless
    apiServer.to was set: installed, the chart reads the `kubernetes` Service's endpoints."""
    found_slice = cluster.kubectl(
        "get", "endpointslice", "kubernetes", "-n", "default", "-o", "json", check=False
    )
    made = found_slice.returncode != 0  # a control plane without a node publishes none
    if made:
        port = int(cluster.server.rsplit(":", 1)[1])
        made_slice = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["192.0.2.10"]}],  # documentation range: a stand-in
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }
        cluster.kubectl("apply", "-f", "-", input=json.dumps(made_slice))
    endpoint_slice = json.loads(
        cluster.kubectl("get", "endpointslice", "kubernetes", "-n", "default", "-o", "json").stdout
    )
    addresses = [
        {"ipBlock": {"cidr": f"{address}/32"}}
        for endpoint in endpoint_slice["endpoints"]
        for address in endpoint["addresses"]
    ]
    ports = [{"port": p["port"], "protocol": "TCP"} for p in endpoint_slice["ports"]]
    namespace = f"wa-np-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", namespace)
    try:
        install(cluster, "np", namespace, "--set", "crds.enabled=false")
        listed = json.loads(
            cluster.kubectl("get", "networkpolicies", "-n", namespace, "-o", "json").stdout
        )
        found = policies(listed["items"])
        assert set(found) == set(COMPONENTS)
        for component, policy in found.items():
            assert policy["spec"]["egress"][1] == {"ports": ports, "to": addresses}, component
        # Still to any address: DNS, the operator's Graph rule and the receiver's forward
        # port (narrowed by dns.to, graphTo and forwardTo); the facade nothing else.
        assert [r for r in found["facade"]["spec"]["egress"] if "to" not in r] == [{"ports": DNS}]
    finally:
        cluster.helm("uninstall", "np", "-n", namespace, check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        if made:
            cluster.kubectl("delete", "endpointslice", "kubernetes", "-n", "default", check=False)

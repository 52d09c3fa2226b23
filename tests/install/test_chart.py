"""The chart as rendered and linted by the real helm: its CRD is the contract's, its schema
refuses what it does not know, its objects carry the standard labels and a strict security
context, its environment is what the processes' settings classes read, and its Roles are
exactly the ones the end-to-end flow needs (tests/install/test_flow.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from channel_api.facade.api_keys import parse_api_keys
from channel_api.facade.settings import FacadeSettings
from channel_api.receiver.settings import ReceiverSettings
from channel_operator.settings import OperatorSettings
from localkube import Cluster
from pydantic_settings import BaseSettings
from whatsapp_channel import crd, model
from whatsapp_channel.settings import variable_names

from tests.support.chart import (
    CHART,
    COMPONENTS,
    TEST_VALUES,
    Manifest,
    component_name,
    one,
    render,
)

SETTINGS: dict[str, tuple[type[BaseSettings], str]] = {
    "operator": (OperatorSettings, "WA_OPERATOR_"),
    "facade": (FacadeSettings, "WA_FACADE_"),
    "receiver": (ReceiverSettings, "WA_RECEIVER_"),
}
# Settings the chart sets for the pod's own reasons, not from a value that mirrors a default.
POD_SPECIFIC = {
    "namespace", "keys_namespace", "host", "port", "liveness_host",
    "liveness_port", "metrics_port", "log_level", "api_keys_file", "forward_secret_file",
    "forward_url_template", "webhook_base_url", "leader_election_lease",
}  # fmt: skip
# `render` installs into namespace "wa"; the channels get a namespace of their own.
RELEASE_NS, CHANNELS_NS = "wa", "wa-channels"
UUID = "497f6eca-6276-4993-bfeb-53cbbbba6f08"


@pytest.fixture(scope="module")
def manifests(cluster: Cluster) -> list[Manifest]:
    return render(cluster)


def deployments(manifests: list[Manifest]) -> dict[str, Manifest]:
    return {c: one(manifests, "Deployment", f"-{c}") for c in COMPONENTS}


def container(deployment: Manifest) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: dict[str, Any] = containers[0]
    return found


def env_of(deployment: Manifest) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(deployment)["env"]}


def helm_fails(cluster: Cluster, *args: str) -> str:
    result = cluster.helm(
        "template", "wa", str(CHART), "--kube-version", "1.34.0", *args, check=False
    )
    assert result.returncode != 0, f"helm accepted {args}"
    return result.stderr


# --- the CRD ------------------------------------------------------------------------------


def test_the_charts_crd_file_is_the_generated_one() -> None:
    copy = CHART / "files" / "crds" / "whatsappchannels.yaml"
    assert copy.read_text() == crd.render(), (
        "the chart's CRD is stale: run `make crds` (or cp crds/whatsappchannels.yaml "
        "charts/whatsapp-channels/files/crds/whatsappchannels.yaml)"
    )


def test_the_rendered_crd_is_the_contracts_plus_labels_and_keep(
    manifests: list[Manifest],
) -> None:
    rendered = one(manifests, "CustomResourceDefinition")
    generated = crd.build_crd()
    assert rendered["spec"] == generated["spec"]
    assert rendered["metadata"]["name"] == generated["metadata"]["name"]
    assert rendered["metadata"]["labels"].items() >= generated["metadata"]["labels"].items()
    assert rendered["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert rendered["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_crds_enabled_and_keep_switch_the_crd_and_its_keep_policy(cluster: Cluster) -> None:
    without = render(cluster, "--set", "crds.enabled=false")
    assert not [m for m in without if m["kind"] == "CustomResourceDefinition"]
    unkept = one(render(cluster, "--set", "crds.keep=false"), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (unkept["metadata"].get("annotations") or {})


# --- lint and the schema --------------------------------------------------------------------


def test_helm_lint_passes(cluster: Cluster) -> None:
    for args in ([], ["-f", str(TEST_VALUES)]):
        result = cluster.helm("lint", "--strict", str(CHART), *args)
        assert "0 chart(s) failed" in result.stdout, result.stdout


def _objects(schema: Any) -> Iterator[dict[str, Any]]:
    if isinstance(schema, dict):
        if "properties" in schema:
            yield schema
        for value in schema.values():
            yield from _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _objects(value)


def test_every_object_of_the_schema_refuses_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    checked = 0
    for obj in _objects(schema):
        if obj.get("type") == "object" and "additionalProperties" not in obj:
            # Only Kubernetes' own objects pass through unchecked (env entries, tolerations).
            assert set(obj["properties"]) <= {"name"}, obj
            continue
        assert obj.get("additionalProperties") is False, obj
        checked += 1
    assert checked > 15
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"])


@pytest.mark.parametrize(
    "setting",
    [
        "bogus=1",
        "facade.bogus=1",
        "operator.bogus=2",
        "operator.leaderElection.bogus=1",
        "podDisruptionBudget.bogus=1",
        "receiver.ingress.bogus=1",
        "facade.apiKeys.bogus=x",
        "crds.bogus=true",
        "image.bogus=x",
        "channelNamespace.bogus=x",
        "metrics.bogus=true",
        "receiver.metrics.bogus=1",
    ],
)
def test_the_schema_refuses_an_unknown_key(cluster: Cluster, setting: str) -> None:
    error = helm_fails(cluster, "-f", str(TEST_VALUES), "--set", setting)
    assert "additional properties" in error
    assert setting.split("=")[0].split(".")[-1] in error


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("webhookBaseUrl=ftp://hooks.example.com", "webhookBaseUrl"),
        ("logLevel=trace", "logLevel"),
        ("facade.apiKeys.keys[0].name=a,facade.apiKeys.keys[0].key=short", "key"),
        ("facade.apiKeys.keys[0].name=a b,facade.apiKeys.keys[0].key=" + "k" * 32, "name"),
        ("receiver.forwardUrlTemplate=http://agents/whatsapp", "forwardUrlTemplate"),
        ("receiver.forwardSecret.value=short", "value"),
        ("facade.replicas=-1", "replicas"),
        ("operator.replicas=-1", "replicas"),
        ("operator.leaderElection.leaseDurationSeconds=0", "leaseDurationSeconds"),
        ("podDisruptionBudget.maxUnavailable=0", "maxUnavailable"),
        ("channelNamespace.name=Not_A_Namespace", "name"),
        ("channelNamespace=channels", "channelNamespace"),
    ],
)
def test_the_schema_refuses_a_bad_value(cluster: Cluster, setting: str, complaint: str) -> None:
    error = helm_fails(cluster, "-f", str(TEST_VALUES), "--set", setting)
    assert "schema" in error
    assert complaint in error


def test_the_webhook_base_url_and_the_forward_url_are_required(cluster: Cluster) -> None:
    forward = "receiver.forwardUrlTemplate=http://agents/{instance_id}"
    error = helm_fails(cluster, "--set", forward)
    assert "webhookBaseUrl is required" in error
    error = helm_fails(cluster, "--set", "webhookBaseUrl=https://hooks.example.com")
    assert "receiver.forwardUrlTemplate is required" in error


# --- labels, selectors, pods ----------------------------------------------------------------


def test_every_object_has_the_standard_labels(manifests: list[Manifest]) -> None:
    for m in manifests:
        labels = m["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "whatsapp-channels", m["metadata"]["name"]
        assert labels["app.kubernetes.io/instance"] == "wa"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/part-of"] == "whatsapp-channels"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
        assert labels["helm.sh/chart"] == "whatsapp-channels-0.1.0"
        assert "app.kubernetes.io/component" in labels


def test_selectors_use_name_instance_and_component_only(manifests: list[Manifest]) -> None:
    for component, deployment in deployments(manifests).items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector == {
            "app.kubernetes.io/name": "whatsapp-channels",
            "app.kubernetes.io/instance": "wa",
            "app.kubernetes.io/component": component,
        }
        assert deployment["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
        if component != "operator":
            service = one(manifests, "Service", f"-{component}")
            assert service["spec"]["selector"] == selector
            assert service["spec"]["ports"] == [
                {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
            ]


def test_every_pod_runs_locked_down(manifests: list[Manifest]) -> None:
    pods = [d["spec"]["template"] for d in deployments(manifests).values()]
    pods.append(one(manifests, "Pod", "-test"))  # helm test's pod too
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec.get("hostNetwork") is not True
        assert spec.get("hostPID") is not True
        for volume in spec.get("volumes", []):
            assert set(volume) & {"secret", "emptyDir"}, volume  # no hostPath
        for c in spec["containers"]:
            assert c["securityContext"] == {
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
                "capabilities": {"drop": ["ALL"]},
                "seccompProfile": {"type": "RuntimeDefault"},
            }
            assert c["resources"]["requests"]
            assert c["resources"]["limits"]["memory"]


def test_the_processes_are_probed_on_their_health_endpoints(manifests: list[Manifest]) -> None:
    for component, deployment in deployments(manifests).items():
        c = container(deployment)
        assert c["command"] == [f"whatsapp-{component}"]
        assert c["image"] == "whatsapp-channels:0.1.0"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        port = c["livenessProbe"]["httpGet"]["port"]
        assert port in {p["name"] for p in c["ports"]}
        if component != "operator":
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == component_name(
            "wa", component
        )


def test_the_operator_runs_two_replicas_rolled_with_one_lease(
    manifests: list[Manifest],
) -> None:
    """Two candidates, one Lease (the one the Role names); a rollout adds a standby before it
    stops the old leader, whose SIGTERM hands the Lease over."""
    operator = deployments(manifests)["operator"]
    assert operator["spec"]["replicas"] == 2
    assert operator["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    env = env_of(operator)
    lease = component_name("wa", "operator")
    assert env["WA_OPERATOR_LEADER_ELECTION_LEASE"] == lease
    timing = [
        env[f"WA_OPERATOR_{name}_SECONDS"]
        for name in ("LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD")
    ]
    assert timing == ["15", "10", "2"]  # controller-runtime's defaults
    rules = one(manifests, "Role", "-operator-keys")["rules"]
    assert [
        r["resourceNames"] for r in rules if "leases" in r["resources"] and "get" in r["verbs"]
    ] == [[lease]]


def test_every_component_has_a_disruption_budget_and_spreads_softly(
    cluster: Cluster, manifests: list[Manifest]
) -> None:
    for component, deployment in deployments(manifests).items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        budget = one(manifests, "PodDisruptionBudget", f"-{component}")
        assert budget["metadata"]["namespace"] == RELEASE_NS
        assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread == [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector},
            }
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ]
    off = render(cluster, "--set", "podDisruptionBudget.enabled=false,topologySpread.enabled=false")
    assert not [m for m in off if m["kind"] == "PodDisruptionBudget"]
    for deployment in deployments(off).values():
        assert "topologySpreadConstraints" not in deployment["spec"]["template"]["spec"]
    scaled = render(cluster, "--set", "operator.replicas=3,podDisruptionBudget.maxUnavailable=2")
    assert deployments(scaled)["operator"]["spec"]["replicas"] == 3
    assert one(scaled, "PodDisruptionBudget", "-facade")["spec"]["maxUnavailable"] == 2


# --- the processes' settings ----------------------------------------------------------------


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_environment_is_what_the_settings_class_reads(
    manifests: list[Manifest], component: str
) -> None:
    """Every variable the chart sets is a field of the process's settings class (they
    ignore unknown variables: a typo would pass silently), every required field is set, the
    values parse, and values mirroring a default agree with it."""
    settings_class, _ = SETTINGS[component]
    env = env_of(deployments(manifests)[component])
    fields = settings_class.model_fields
    field_of = {variable: field for field, variable in variable_names(settings_class).items()}
    for name in env:
        assert name in field_of, name
    given = {field_of[name]: value for name, value in env.items()}
    required = {name for name, field in fields.items() if field.is_required()}
    assert required <= set(given), f"{component} lacks {required - set(given)}"
    # A field read from a shared variable (keys_namespace) is validated under that name.
    settings = settings_class.model_validate(
        {(variable if fields[name].validation_alias else name): env[variable]
         for variable, name in field_of.items() if variable in env}
    )  # fmt: skip
    for name in set(given) - POD_SPECIFIC:
        assert getattr(settings, name) == fields[name].default, f"{component}.{name}"
    # The channels in their own namespace; the sealing keys in the release namespace.
    assert given["namespace"] == CHANNELS_NS
    if component in {"operator", "facade"}:
        assert given["keys_namespace"] == RELEASE_NS


@pytest.mark.parametrize("component", COMPONENTS)
def test_each_process_serves_metrics_on_a_port_of_its_own(
    cluster: Cluster, manifests: list[Manifest], component: str
) -> None:
    """The metrics port is a settings field (the test above) and the container's `metrics`
    port; the public Service never carries it, a ClusterIP Service of its own may."""
    _, prefix = SETTINGS[component]
    deployment = deployments(manifests)[component]
    ports = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    assert ports["metrics"] == int(env_of(deployment)[f"{prefix}METRICS_PORT"]) == 9090
    assert len(set(ports.values())) == len(ports)
    assert not [m for m in manifests if m["metadata"]["name"].endswith("-metrics")]
    service = one(
        render(cluster, "--set", "metrics.services=true"), "Service", f"-{component}-metrics"
    )
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    assert not [a for a in annotations if a.startswith("prometheus.io/")]


def test_metrics_can_be_turned_off_or_announced_to_prometheus(cluster: Cluster) -> None:
    off = render(cluster, "--set", "metrics.enabled=false,metrics.services=true")
    assert not [m for m in off if m["metadata"]["name"].endswith("-metrics")]
    for component, deployment in deployments(off).items():
        _, prefix = SETTINGS[component]
        assert f"{prefix}METRICS_PORT" not in env_of(deployment)
        assert "metrics" not in {p["name"] for p in container(deployment)["ports"]}
    announced = render(cluster, "--set", "metrics.scrapeAnnotations=true,facade.metrics.port=9100")
    for component, deployment in deployments(announced).items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        expected = "9100" if component == "facade" else "9090"
        assert annotations["prometheus.io/port"] == expected
    error = helm_fails(cluster, "-f", str(TEST_VALUES), "--set", "receiver.metrics.port=8080")
    assert "receiver.metrics.port must differ from the port it serves on (8080)" in error


def test_the_contracts_names_are_the_charts(manifests: list[Manifest]) -> None:
    roles = {r["metadata"]["name"]: r for r in manifests if r["kind"] == "Role"}
    facade_rules = roles[component_name("wa", "facade")]["rules"]
    assert facade_rules[0]["apiGroups"] == [model.GROUP]
    assert facade_rules[0]["resources"] == [model.PLURAL]
    public_key = roles[component_name("wa", "facade-sealing-key")]["rules"]
    assert public_key[0]["resourceNames"] == [model.SEALING_PUBLIC_CONFIGMAP]
    keys = roles[component_name("wa", "operator-keys")]["rules"]
    assert keys[1]["resourceNames"] == [model.SEALING_KEYS_SECRET]
    assert keys[3]["resourceNames"] == [model.SEALING_PUBLIC_CONFIGMAP]
    operator = deployments(manifests)["operator"]
    assert env_of(operator)["WA_OPERATOR_WEBHOOK_BASE_URL"] == "https://hooks.example.com"


# --- RBAC -----------------------------------------------------------------------------------

CHANNELS = model.PLURAL
STATUS = f"{model.PLURAL}/status"
# Role (by name suffix) -> its namespace and its rules.
EXPECTED_ROLES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "operator": (CHANNELS_NS, [
        {"apiGroups": [model.GROUP], "resources": [CHANNELS],
         "verbs": ["get", "list", "watch", "patch"]},
        {"apiGroups": [model.GROUP], "resources": [STATUS], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["secrets"],
         "verbs": ["get", "list", "watch", "create", "update", "delete"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]),
    "operator-keys": (RELEASE_NS, [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"],
         "resourceNames": [model.SEALING_KEYS_SECRET],
         "verbs": ["get", "update", "list", "watch"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["configmaps"],
         "resourceNames": [model.SEALING_PUBLIC_CONFIGMAP],
         "verbs": ["get", "update", "list", "watch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": [component_name("wa", "operator")], "verbs": ["get", "update"]},
    ]),
    "facade": (CHANNELS_NS, [
        {"apiGroups": [model.GROUP], "resources": [CHANNELS],
         "verbs": ["get", "list", "watch", "create", "update", "delete"]},
    ]),
    "facade-sealing-key": (RELEASE_NS, [
        {"apiGroups": [""], "resources": ["configmaps"],
         "resourceNames": [model.SEALING_PUBLIC_CONFIGMAP], "verbs": ["get"]},
    ]),
    "receiver": (CHANNELS_NS, [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["list", "watch"]},
        {"apiGroups": [model.GROUP], "resources": [STATUS], "verbs": ["patch"]},
    ]),
}  # fmt: skip


def test_each_component_has_exactly_its_namespaced_rules(manifests: list[Manifest]) -> None:
    """The whole grant, verb by verb: adding one is a deliberate change of this test. The
    end-to-end flow (test_flow.py) shows these are enough."""
    kinds = {m["kind"] for m in manifests}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding"}
    roles = [m for m in manifests if m["kind"] == "Role"]
    assert {r["metadata"]["name"] for r in roles} == {
        component_name("wa", suffix) for suffix in EXPECTED_ROLES
    }
    for suffix, (namespace, rules) in EXPECTED_ROLES.items():
        name = component_name("wa", suffix)
        role = one(roles, "Role", name)
        assert role["metadata"]["namespace"] == namespace, suffix
        assert role["rules"] == rules, suffix
        binding = one(manifests, "RoleBinding", name)
        assert binding["metadata"]["namespace"] == namespace
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": name,
        }
        account_name = component_name("wa", suffix.split("-")[0])
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account_name, "namespace": RELEASE_NS}
        ]
    for component in COMPONENTS:
        account = one(manifests, "ServiceAccount", f"-{component}")
        assert account["metadata"]["namespace"] == RELEASE_NS
        assert account["automountServiceAccountToken"] is False  # the pod mounts its own


def test_no_role_lets_anyone_but_the_operator_near_a_secret_value(
    manifests: list[Manifest],
) -> None:
    """The facade has nothing on Secrets; the receiver only lists/watches them (its
    cache) in the channel namespace and has nothing in the release namespace, where the
    operator may read only its keys Secret, by name; nobody may create pods or tokens, bind
    roles or escalate."""
    for role in (m for m in manifests if m["kind"] == "Role"):
        name, namespace = role["metadata"]["name"], role["metadata"]["namespace"]
        assert not name.endswith("-receiver") or namespace == CHANNELS_NS
        for rule in role["rules"]:
            assert not set(rule["resources"]) & {
                "pods", "serviceaccounts", "serviceaccounts/token", "roles", "rolebindings",
            }  # fmt: skip
            assert not set(rule["verbs"]) & {"*", "escalate", "bind", "impersonate"}
            if "-facade" in name:
                assert "secrets" not in rule["resources"]
            if namespace == RELEASE_NS and "secrets" in rule["resources"]:
                readable = set(rule["verbs"]) & {"get", "list", "watch"}
                assert not readable or rule["resourceNames"] == [model.SEALING_KEYS_SECRET]


def test_the_channel_namespace_is_created_and_kept_and_holds_no_chart_secret(
    manifests: list[Manifest],
) -> None:
    namespace = one(manifests, "Namespace")
    assert namespace["metadata"]["name"] == CHANNELS_NS
    # Uninstall must never delete the tenants' channels with their namespace.
    assert namespace["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert namespace["metadata"]["labels"]["app.kubernetes.io/component"] == "channels"
    cluster_scoped = {
        "Namespace",
        "CustomResourceDefinition",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
    namespaced = [m for m in manifests if m["kind"] not in cluster_scoped]
    in_channels = {m["kind"] for m in namespaced if m["metadata"]["namespace"] == CHANNELS_NS}
    assert in_channels == {"Role", "RoleBinding"}  # no Secret, no pod, nothing else
    for secret in (m for m in manifests if m["kind"] == "Secret"):
        assert secret["metadata"]["namespace"] == RELEASE_NS


def test_a_channel_namespace_of_ones_choosing_may_exist_already(cluster: Cluster) -> None:
    rendered = render(
        cluster, "--set", "channelNamespace.name=channels,channelNamespace.create=false"
    )
    assert not [m for m in rendered if m["kind"] == "Namespace"]
    for component in COMPONENTS:
        assert one(rendered, "Role", f"-{component}")["metadata"]["namespace"] == "channels"
        binding = one(rendered, "RoleBinding", f"-{component}")
        assert binding["metadata"]["namespace"] == "channels"
        assert binding["subjects"][0]["namespace"] == "wa"  # the accounts stay with the pods
        deployment = deployments(rendered)[component]
        assert deployment["metadata"]["namespace"] == "wa"
        assert env_of(deployment)["WA_CHANNELS_NAMESPACE"] == "channels"
    created = one(render(cluster, "--set", "channelNamespace.name=channels"), "Namespace")
    assert created["metadata"]["name"] == "channels"


def test_the_channels_may_not_share_the_release_namespace(cluster: Cluster) -> None:
    """There the receiver could read the sealing keys, the API keys and the forward secret."""
    for create in ("true", "false"):
        error = helm_fails(
            cluster, "-n", "wa", "-f", str(TEST_VALUES),
            "--set", f"channelNamespace.name=wa,channelNamespace.create={create}",
        )  # fmt: skip
        assert "channelNamespace.name must not be the release namespace (wa)" in error
    long = "n" * 60  # "<namespace>-channels" would pass 63 characters
    error = helm_fails(cluster, "-n", long, "-f", str(TEST_VALUES))
    assert "longer than 63 characters: set channelNamespace.name" in error


# --- Secrets and the Ingress ----------------------------------------------------------------


def _secret_text(manifests: list[Manifest], suffix: str, key: str) -> str:
    return base64.b64decode(one(manifests, "Secret", suffix)["data"][key]).decode()


def test_generated_api_key_and_forward_secret_are_usable(manifests: list[Manifest]) -> None:
    (key,) = parse_api_keys(_secret_text(manifests, "-api-keys", "api-keys"))
    assert key.name == "admin"
    assert key.instances is None
    assert len(_secret_text(manifests, "-forward-secret", "forward-secret")) >= 32
    for suffix in ("-api-keys", "-forward-secret"):
        annotations = one(manifests, "Secret", suffix)["metadata"]["annotations"]
        assert annotations == {"whatsapp.hydracore.io/generated-by-chart": "true"}


def test_api_keys_from_values_become_the_facades_key_file(cluster: Cluster) -> None:
    admin, tenant = "a" * 32, "t" * 40
    rendered = render(
        cluster,
        "--set", f"facade.apiKeys.keys[0].name=platform,facade.apiKeys.keys[0].key={admin}",
        "--set", f"facade.apiKeys.keys[1].name=tenant-a,facade.apiKeys.keys[1].key={tenant}",
        "--set", f"facade.apiKeys.keys[1].instances[0]={UUID}",
        "--set", "receiver.forwardSecret.value=0123456789abcdef0123",
    )  # fmt: skip
    keys = parse_api_keys(_secret_text(rendered, "-api-keys", "api-keys"))
    assert [(k.name, k.instances) for k in keys] == [
        ("platform", None),
        ("tenant-a", frozenset({UUID})),
    ]
    assert "annotations" not in one(rendered, "Secret", "-api-keys")["metadata"]
    assert _secret_text(rendered, "-forward-secret", "forward-secret") == "0123456789abcdef0123"
    # The receiver reads its key once: a new key rolls its pods.
    pod = deployments(rendered)["receiver"]["spec"]["template"]
    assert pod["metadata"]["annotations"]["checksum/forward-secret"]


def test_existing_secrets_are_mounted_instead_of_the_charts(cluster: Cluster) -> None:
    rendered = render(
        cluster,
        "--set", "facade.apiKeys.existingSecret=my-keys,facade.apiKeys.existingSecretKey=keys",
        "--set", "receiver.forwardSecret.existingSecret=my-forward",
    )  # fmt: skip
    assert not [m for m in rendered if m["kind"] == "Secret"]
    mounted = {
        component: deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]
        for component, deployment in deployments(rendered).items()
        if component != "operator"
    }
    assert mounted["facade"]["secretName"] == "my-keys"
    assert mounted["facade"]["items"] == [{"key": "keys", "path": "api-keys"}]
    assert mounted["receiver"]["secretName"] == "my-forward"
    assert mounted["receiver"]["items"] == [{"key": "forward-secret", "path": "forward-secret"}]
    facade_env = env_of(deployments(rendered)["facade"])
    assert facade_env["WA_FACADE_API_KEYS_FILE"] == "/etc/whatsapp-channels/api-keys/api-keys"


def test_the_ingress_exposes_only_the_webhook_path(cluster: Cluster) -> None:
    assert not [m for m in render(cluster) if m["kind"] == "Ingress"]
    rendered = render(
        cluster,
        "--set", "receiver.ingress.enabled=true,receiver.ingress.host=hooks.example.com",
        "--set", "receiver.ingress.className=nginx,receiver.ingress.tlsSecretName=hooks-tls",
    )  # fmt: skip
    ingress = one(rendered, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["hooks.example.com"], "secretName": "hooks-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "hooks.example.com"
    assert rule["http"]["paths"] == [
        {
            "path": "/hooks/whatsapp",
            "pathType": "Prefix",
            "backend": {
                "service": {"name": component_name("wa", "receiver"), "port": {"name": "http"}}
            },
        }
    ]
    error = helm_fails(cluster, "-f", str(TEST_VALUES), "--set", "receiver.ingress.enabled=true")
    assert "receiver.ingress.host is required" in error


def test_trusted_proxies_reach_the_pods_only_when_set(cluster: Cluster) -> None:
    """An empty variable would be dropped by the apiserver (an env entry without a value);
    the chart leaves it out, and the settings' default (no proxy trusted) applies."""
    plain = deployments(render(cluster))
    for component in ("facade", "receiver"):
        assert all("value" in e for e in container(plain[component])["env"])
        assert not any(name.endswith("TRUSTED_PROXIES") for name in env_of(plain[component]))
    proxied = deployments(
        render(
            cluster,
            "--set",
            "receiver.http.trustedProxies={10.0.0.0/8,2001:db8::1}",
            "--set",
            "facade.http.trustedProxies={10.1.2.3}",
        )
    )
    assert env_of(proxied["receiver"])["WA_RECEIVER_TRUSTED_PROXIES"] == "10.0.0.0/8,2001:db8::1"
    assert env_of(proxied["facade"])["WA_FACADE_TRUSTED_PROXIES"] == "10.1.2.3"


def test_the_platform_app_secret_is_mounted_into_the_operator_only(cluster: Cluster) -> None:
    """`operator.platformApp.existingSecret`: the Secret is mounted read-only where
    WA_OPERATOR_PLATFORM_APP_DIR points, and the facade is told (a POST may leave out
    app_secret); without it, neither."""
    plain = deployments(render(cluster))
    assert "WA_OPERATOR_PLATFORM_APP_DIR" not in env_of(plain["operator"])
    assert "WA_FACADE_PLATFORM_APP" not in env_of(plain["facade"])
    given = deployments(render(cluster, "--set", "operator.platformApp.existingSecret=meta-app"))
    operator = given["operator"]
    directory = env_of(operator)["WA_OPERATOR_PLATFORM_APP_DIR"]
    pod = operator["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "meta-app")
    mount = next(m for m in container(operator)["volumeMounts"] if m["name"] == volume["name"])
    assert (mount["mountPath"], mount["readOnly"]) == (directory, True)
    assert env_of(given["facade"])["WA_FACADE_PLATFORM_APP"] == "true"
    for component in ("facade", "receiver"):
        volumes = given[component]["spec"]["template"]["spec"].get("volumes") or []
        assert all(v.get("secret", {}).get("secretName") != "meta-app" for v in volumes)


def test_the_onboarding_page_reads_only_the_ids_of_the_platform_app(cluster: Cluster) -> None:
    """`facade.onboardingPage.enabled`: the facade gets the app id and the configuration id
    from the platform app's Secret (never app_secret); without that Secret, refused."""
    facade = deployments(
        render(
            cluster,
            "--set",
            "operator.platformApp.existingSecret=meta-app,facade.onboardingPage.enabled=true",
        )
    )["facade"]
    env = {e["name"]: e for e in container(facade)["env"]}
    assert env["WA_FACADE_ONBOARDING_PAGE"]["value"] == "true"
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
    assert refs == {
        "WA_FACADE_PLATFORM_APP_ID": {"name": "meta-app", "key": "app_id"},
        "WA_FACADE_SIGNUP_CONFIG_ID": {"name": "meta-app", "key": "config_id"},
    }
    error = helm_fails(
        cluster, "-f", str(TEST_VALUES), "--set", "facade.onboardingPage.enabled=true"
    )
    assert "operator.platformApp.existingSecret" in error

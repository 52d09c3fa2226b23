"""The CRD in crds/ is the generator's output, and its schema agrees with the pydantic models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from whatsapp_channel import crd, model

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "whatsappchannels.yaml"


def _schema() -> dict[str, Any]:
    version = crd.build_crd()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_file_in_crds_is_the_generators_output() -> None:
    assert CRD_FILE.read_text() == crd.render(), (
        "crds/whatsappchannels.yaml is stale: run "
        "`python -m whatsapp_channel.crd > crds/whatsappchannels.yaml`"
    )
    assert yaml.safe_load(CRD_FILE.read_text()) == crd.build_crd()


def test_names_come_from_the_contract() -> None:
    spec = crd.build_crd()["spec"]
    assert spec["group"] == model.GROUP
    assert spec["names"]["kind"] == model.KIND
    assert spec["names"]["plural"] == model.PLURAL
    assert spec["names"]["singular"] == model.SINGULAR
    assert spec["names"]["shortNames"] == list(model.SHORT_NAMES)
    assert spec["names"]["categories"] == list(model.CATEGORIES)
    assert [v["name"] for v in spec["versions"]] == [model.VERSION]
    assert spec["versions"][0]["subresources"] == {"status": {}}
    assert crd.build_crd()["metadata"]["name"] == f"{model.PLURAL}.{model.GROUP}"


def _agree(schema: dict[str, Any], model_cls: type[BaseModel], where: str) -> None:
    """Same property names (by alias), same required set, same string constraints."""
    fields = {f.alias or name: f for name, f in model_cls.model_fields.items()}
    assert set(schema["properties"]) == set(fields), where
    required = {alias for alias, f in fields.items() if f.is_required()}
    assert set(schema.get("required", [])) == required, where
    pydantic_props = model_cls.model_json_schema(by_alias=True)["properties"]
    for alias, prop in schema["properties"].items():
        theirs: dict[str, Any] = pydantic_props[alias]
        # Optional fields are anyOf [X, null] in pydantic's JSON schema.
        theirs = next((s for s in theirs.get("anyOf", [theirs]) if s.get("type") != "null"), {})
        for key in ("pattern", "minLength", "maxLength", "enum"):
            if key in theirs:
                assert prop.get(key) == theirs[key], f"{where}.{alias}.{key}"
        if "maxLength" in prop and "maxLength" not in theirs:
            # The CRD may bound a length only where the pattern bounds it already (CEL cost).
            assert "pattern" in prop, f"{where}.{alias} has a maxLength the model lacks"
        if theirs.get("type") in {"string", "boolean", "integer"}:
            assert prop["type"] == theirs["type"], f"{where}.{alias}.type"


def test_spec_schema_agrees_with_the_models() -> None:
    spec = _schema()["properties"]["spec"]
    _agree(spec, model.ChannelSpec, "spec")
    _agree(spec["properties"]["sealed"], model.SealedCredentials, "spec.sealed")
    _agree(spec["properties"]["secretRef"], model.SecretRef, "spec.secretRef")
    assert spec["properties"]["enabled"]["default"] is True
    assert model.ChannelSpec.model_fields["enabled"].default is True


def test_status_schema_agrees_with_the_models() -> None:
    status = _schema()["properties"]["status"]
    _agree(status, model.ChannelStatus, "status")
    _agree(status["properties"]["conditions"]["items"], model.Condition, "status.conditions")
    assert status["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_cel_rules_are_there_with_readable_messages() -> None:
    schema = _schema()
    root_rules = schema["x-kubernetes-validations"]
    assert root_rules[0]["rule"] == "self.metadata.name == self.spec.instanceId"
    spec = schema["properties"]["spec"]
    assert "exactly one" in spec["x-kubernetes-validations"][0]["message"]
    instance_rules = spec["properties"]["instanceId"]["x-kubernetes-validations"]
    assert instance_rules == [{"rule": "self == oldSelf", "message": "instanceId is immutable"}]


def test_printer_columns_show_phone_ready_reason_age() -> None:
    columns = crd.build_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    shown = [c["name"] for c in columns if not c.get("priority")]
    assert shown == ["Phone", "Ready", "Reason", "Age"]

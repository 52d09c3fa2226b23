"""charts/values_schema.py: the chart's values.schema.json is generated from the annotated
values.yaml (`make schema`), so the schema and the defaults cannot drift apart; what the schema
refuses is tested against the real helm in test_chart.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.chart import CHART

GENERATOR = CHART.parent / "values_schema.py"


def generated(values: Path | None = None) -> str:
    args = [] if values is None else ["--values", str(values)]
    result = subprocess.run(
        [sys.executable, str(GENERATOR), *args], capture_output=True, text=True, check=True
    )
    return result.stdout


def schema_of(tmp_path: Path, values: str) -> dict[str, Any]:
    path = tmp_path / "values.yaml"
    path.write_text(values)
    loaded: dict[str, Any] = json.loads(generated(path))
    return loaded


def test_the_committed_schema_is_the_generated_one() -> None:
    committed = (CHART / "values.schema.json").read_text()
    assert committed == generated(), "values.schema.json is stale: run `make schema`"


def test_types_come_from_the_defaults_and_mappings_refuse_other_keys(tmp_path: Path) -> None:
    schema = schema_of(
        tmp_path, "a: 1\nb: 1.5\nc: x\nd: true\ne: []\nf: {}\ng:\n  h: 2\n  i:\n    j: y\n"
    )
    properties = schema["properties"]
    assert [properties[k]["type"] for k in "abcdefg"] == [
        "integer", "number", "string", "boolean", "array", "object", "object",
    ]  # fmt: skip
    assert schema["additionalProperties"] is False
    assert schema["required"] == list("abcdefg")
    g = properties["g"]
    assert g["additionalProperties"] is False
    assert g["required"] == ["h", "i"]
    assert g["properties"]["i"]["properties"]["j"] == {"type": "string"}
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"


def test_annotations_descriptions_refs_and_open_maps(tmp_path: Path) -> None:
    schema = schema_of(
        tmp_path,
        """# @schema.root
# title: t
# definitions:
#   port: {type: integer, minimum: 1}
# @schema.root

# not a description
# @schema {type: number}
# -- Seconds to wait,
# in one sentence.
# @schema
# minimum: 0
# @schema
wait: 5
# @schema {$ref: "#/definitions/port"}
port: 80
# @schema {additionalProperties: {type: string}}
labels:
  example: x
service:
  # @schema {enum: [A, B]}
  type: A
  # a comment that is not the next key's
list:
  - name: x
    type: ignored
""",
    )
    assert schema["title"] == "t"
    assert schema["definitions"] == {"port": {"type": "integer", "minimum": 1}}
    properties = schema["properties"]
    assert properties["wait"] == {
        "type": "number",
        "minimum": 0,
        "description": "Seconds to wait, in one sentence.",
    }
    assert properties["port"] == {"$ref": "#/definitions/port"}
    assert properties["labels"] == {"type": "object", "additionalProperties": {"type": "string"}}
    assert properties["service"]["properties"]["type"] == {"type": "string", "enum": ["A", "B"]}
    assert properties["list"] == {"type": "array"}


def test_an_unclosed_block_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("# @schema\n# minimum: 0\nwait: 5\n")
    result = subprocess.run(
        [sys.executable, str(GENERATOR), "--values", str(path)], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "values.yaml wait: an @schema block is not closed" in result.stderr

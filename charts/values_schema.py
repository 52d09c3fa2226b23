"""Generate the chart's values.schema.json from its annotated values.yaml (`make schema`).

The schema follows the values: every key's type comes from its default, every mapping with
keys becomes an object that requires them and refuses any other, and a key's description is
its helm-docs comment (`# -- ...` and the comment lines after it). What a default cannot say
is written beside the key, in the comments just above it, as JSON Schema in YAML:

    # @schema {minimum: 1, maximum: 65535}        one line
    # @schema                                     or a block between two markers
    # items: {type: string}
    # @schema

An annotation is merged over what the default says (its keys win; `properties` merge key by
key). With `$ref` it is the whole schema; with an `additionalProperties` other than false the
mapping is open (a map of anything, or of the values that schema allows) and its default's
keys are examples, not properties. A `# @schema.root` block (same markers) is merged into the
top of the schema: the title and the `definitions` that `$ref`s point at.

Why our own and not a maintained generator: the annotations are those of dadav/helm-schema
(`# @schema` blocks), and it or losisin/helm-values-schema-json is what this would be built
from, as helm is, but the Go module proxy refuses both (403, tried 2026-12-06 and again
2026-12-07); nothing on PyPI generates a chart schema, and Bitnami's readme-generator-for-helm
(npm) cannot say an enum, a pattern or a bound, which the schema's refusals need. Once a
generator is served, `make schema` runs it instead and this file goes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "whatsapp-channels"
VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"

# A mapping key, or the start of a list item (whose keys are no values' keys: "-" in a path).
_NODE = re.compile(r"^(?P<indent>\s*)(?:(?P<item>-) |(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?:\s|$))")
_MARKER = "@schema"
_ROOT_MARKER = "@schema.root"

Schema = dict[str, Any]
Path_ = tuple[str, ...]


class Comments:
    """The comment lines right above each key of values.yaml, by the key's path."""

    def __init__(self, text: str) -> None:
        self.by_path: dict[Path_, list[str]] = {}
        self.root: list[str] = []
        stack: list[tuple[int, str]] = []
        pending: list[str] = []
        in_root = False
        for line in text.splitlines():
            stripped = line.strip()
            if stripped == f"# {_ROOT_MARKER}":
                in_root = not in_root
                continue
            if in_root:
                self.root.append(_uncomment(line))
                continue
            if stripped.startswith("#"):
                pending.append(_uncomment(line))
                continue
            if node := _NODE.match(line):
                indent = len(node.group("indent"))
                while stack and stack[-1][0] >= indent:
                    stack.pop()
                stack.append((indent, node.group("key") or node.group("item")))
                path = tuple(name for _, name in stack)
                if "-" not in path:
                    self.by_path[path] = pending
            pending = []

    def annotation(self, path: Path_) -> Schema:
        return _annotation(self.by_path.get(path, []), f"values.yaml {'.'.join(path)}")

    def description(self, path: Path_) -> str | None:
        words: list[str] | None = None
        in_block = False
        for line in self.by_path.get(path, []):
            if line.startswith(_MARKER):
                in_block ^= line.strip() == _MARKER
            elif line.startswith("--") and not in_block:
                words = [line[2:].strip()]
            elif words is not None and not in_block:
                words.append(line.strip())
        return " ".join(w for w in words if w) if words else None


def _uncomment(line: str) -> str:
    text = line.strip()[1:]
    return text[1:] if text.startswith(" ") else text


def _annotation(lines: list[str], where: str) -> Schema:
    """Merge the `@schema` lines and blocks of one key's comments."""
    found: Schema = {}
    block: list[str] | None = None
    for line in lines:
        if line.strip() == _MARKER:
            if block is not None:
                found = _merge(found, _load(block, where))
            block = None if block is not None else []
        elif block is not None:
            block.append(line)
        elif line.startswith(_MARKER + " "):
            found = _merge(found, _load([line[len(_MARKER) :]], where))
    if block is not None:
        raise ValueError(f"{where}: an @schema block is not closed")
    return found


def _load(lines: list[str], where: str) -> Schema:
    loaded = yaml.safe_load("\n".join(lines))
    if not isinstance(loaded, dict):
        raise ValueError(f"{where}: an @schema annotation must be a mapping, got {loaded!r}")
    return loaded


def _merge(base: Schema, over: Schema) -> Schema:
    merged = dict(base)
    for key, value in over.items():
        if key == "properties" and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def _inferred(value: Any, path: Path_, comments: Comments) -> Schema:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, list):
        return {"type": "array"}
    if isinstance(value, dict):
        if not value:
            return {"type": "object"}
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {k: _schema(v, (*path, k), comments) for k, v in value.items()},
            "required": list(value),
        }
    return {}


def _schema(value: Any, path: Path_, comments: Comments) -> Schema:
    annotation = comments.annotation(path)
    if "$ref" in annotation:
        schema = annotation
    else:
        schema = _inferred(value, path, comments)
        if annotation.get("additionalProperties", False) is not False:
            schema = {"type": "object"}
        schema = _merge(schema, annotation)
    description = comments.description(path)
    if description and "description" not in schema:
        schema["description"] = description
    return schema


def generate(values_text: str) -> str:
    """values.schema.json for this values.yaml text."""
    comments = Comments(values_text)
    values = yaml.safe_load(values_text)
    root: Schema = {"$schema": "http://json-schema.org/draft-07/schema#"}
    if comments.root:
        root = _merge(root, _load(comments.root, "values.yaml @schema.root"))
    schema = _merge(root, _schema(values, (), comments))
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--values", type=Path, default=VALUES, help="the values file to read")
    parser.add_argument("--write", action="store_true", help=f"write the chart's {SCHEMA.name}")
    args = parser.parse_args()
    try:
        generated = generate(args.values.read_text())
    except (ValueError, yaml.YAMLError) as error:
        sys.exit(f"values_schema.py: {error}")
    if args.write:
        SCHEMA.write_text(generated)
    else:
        sys.stdout.write(generated)


if __name__ == "__main__":
    main()

"""The tests' own layout: a suite imports test code only from itself and from tests/support,
always as `tests.<...>` (no relative imports), so a suite can move or go without breaking
another."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_suites_import_only_themselves_and_support() -> None:
    problems = []
    for path in sorted(TESTS.rglob("*.py")):
        where = path.relative_to(TESTS).parts
        own = where[0] if len(where) > 1 else None
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
                if node.level:
                    problems.append(f"{path.relative_to(TESTS)}: relative import")
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] != "tests" or len(parts) < 2:
                    continue
                if parts[1] not in {"support", own}:
                    problems.append(f"{path.relative_to(TESTS)}: imports {module}")
    assert problems == []

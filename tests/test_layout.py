"""The tests' own layout: a suite imports test code only from itself and from tests/support,
always as `tests.<...>` (no relative imports), so a suite can move or go without breaking
another; and a test that starts the control plane is marked so that `make unit` skips it."""

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


# What starts or builds the control plane without the fixtures tests/conftest.py marks
# `cluster` for; `make unit` (pytest -m "not cluster") must not run such a test.
STARTS_A_CLUSTER = ("Cluster.start(", "ensure_built(", "whatsapp-dev")
CLUSTER_MARK = "pytest.mark.cluster"


def test_tests_that_start_a_cluster_themselves_are_marked_cluster() -> None:
    problems = []
    for path in sorted(TESTS.rglob("test_*.py")):
        tree = ast.parse(path.read_text())
        if any(
            isinstance(node, ast.Assign)
            and [ast.unparse(t) for t in node.targets] == ["pytestmark"]
            and ast.unparse(node.value) == CLUSTER_MARK
            for node in tree.body
        ):
            continue
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if not any(starter in ast.unparse(node) for starter in STARTS_A_CLUSTER):
                continue
            marked = CLUSTER_MARK in (ast.unparse(d) for d in node.decorator_list)
            if not (node.name.startswith("test_") and marked):
                problems.append(f"{path.relative_to(TESTS)}::{node.name}")
    assert problems == []

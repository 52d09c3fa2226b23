"""The layout: no import circle between the project's modules; a test suite imports test code
only from itself and from tests/support, always as `tests.<...>` (no relative imports), so a
suite can move or go without breaking another; and a test that starts the control plane is
marked so that `make unit` skips it."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Mapping
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


def project_modules() -> dict[str, Path]:
    """Every module of the packages pyproject.toml installs, and of tests/ and bench/, by
    dotted name (a package by its own name, for its __init__)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    roots = [REPO / where for where in pyproject["tool"]["setuptools"]["packages"]["find"]["where"]]
    modules = {}
    for root, base in [*((root, root) for root in roots), (TESTS, REPO), (REPO / "bench", REPO)]:
        for path in root.rglob("*.py"):
            parts = path.relative_to(base).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported(name: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """The project modules `name` imports anywhere in it (under TYPE_CHECKING and inside
    functions too: a circle there is a circle in the design)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *filter(None, [base])])
            # `from package import module` imports the module; `from module import name`, it.
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import a.b.c` of a module a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def circles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component: list[str] = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_between_the_projects_modules() -> None:
    modules = project_modules()
    assert {"localkube.cluster", "channel_operator.main", "tests.support.fake_kube"} <= set(modules)
    graph = {name: imported(name, path, modules) for name, path in modules.items()}
    assert circles(graph) == []


def test_the_control_plane_imports_nothing_of_the_product() -> None:
    """localkube runs a cluster for anything; the product on it is channel_launcher's."""
    modules = project_modules()
    product = ("whatsapp_channel", "channel_operator", "channel_api", "channel_launcher")
    problems = {
        f"{name} imports {target}"
        for name, path in modules.items()
        if name.split(".")[0] == "localkube"
        for target in imported(name, path, modules)
        if target.split(".")[0] in {*product, "graph_standin"}
    }
    assert problems == set()


def test_the_circle_check_finds_circles_and_resolves_imports() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []
    modules = project_modules()
    node = imported("localkube.node", modules["localkube.node"], modules)
    assert {"localkube.image", "localkube.processes"} <= node  # `from localkube import image`
    dev = imported("channel_launcher.dev", modules["channel_launcher.dev"], modules)
    assert {"whatsapp_channel.settings", "channel_launcher.product"} <= dev


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

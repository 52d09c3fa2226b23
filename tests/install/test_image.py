"""The Dockerfile agrees with the project and the chart. No Docker engine exists here, so the
image itself is never built in these tests: what is checked is that its build context holds
every package the distribution is built from, that it runs as the chart's non-root user,
and that the commands the chart runs are console scripts of the distribution."""

from __future__ import annotations

import fnmatch
import shutil
import tomllib
from pathlib import Path

import yaml

from tests.support.chart import CHART, COMPONENTS, REPO

DOCKERFILE = REPO / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            steps.append((word.upper(), rest.strip()))
    return steps


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for step in _instructions():
        if step[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(step)
    return stages


def _pyproject() -> dict[str, object]:
    with open(REPO / "pyproject.toml", "rb") as file:
        return tomllib.load(file)


def _packages(root: Path) -> set[str]:
    """The import packages setuptools' `packages.find` (pyproject) finds under `root`."""
    find = _pyproject()["tool"]["setuptools"]["packages"]["find"]  # type: ignore[index]
    found: set[str] = set()
    for where in find["where"]:
        base = root / where
        for init in base.rglob("__init__.py"):
            name = ".".join(init.parent.relative_to(base).parts)
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in find["include"]):
                found.add(name)
    return found


def test_the_image_is_built_in_stages_and_runs_as_the_charts_user() -> None:
    build, run = _stages()
    assert "AS build" in build[0][1]
    copies = [args for word, args in run if word == "COPY"]
    assert copies == ["--from=build /opt/venv /opt/venv"]  # only the environment, no sources
    users = [args for word, args in run if word == "USER"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pod = values["podSecurityContext"]
    assert users == [f"{pod['runAsUser']}:{pod['runAsGroup']}"]
    assert pod["runAsUser"] != 0


def test_the_build_context_holds_every_package_of_the_distribution(tmp_path: Path) -> None:
    """Copy what the build stage COPYs (what .dockerignore lets through) and find the
    distribution's packages in it, as setuptools will inside the image."""
    build = _stages()[0]
    sources = [args.split()[0] for word, args in build if word == "COPY"]
    allowed = {
        line[1:]
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert set(sources) == allowed
    for source in sources:
        origin, target = REPO / source, tmp_path / source
        if origin.is_dir():
            shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "go"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(origin, target)
    assert _packages(tmp_path) == _packages(REPO)
    assert {"whatsapp_channel", "channel_operator", "channel_api"} <= _packages(tmp_path)


def test_the_charts_commands_are_console_scripts_of_the_image() -> None:
    scripts = _pyproject()["project"]["scripts"]  # type: ignore[index]
    packages = _packages(REPO)
    for component in COMPONENTS:
        target = scripts[f"whatsapp-{component}"]
        assert target.split(":")[0].rsplit(".", 1)[0] in packages

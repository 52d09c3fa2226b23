""".pre-commit-config.yaml: the real pre-commit, run on a scratch repository with the project's
ruff settings, refuses a commit that `make lint` would refuse (a lint error, an unformatted
file) and lets a clean one through."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".pre-commit-config.yaml"
PRE_COMMIT = Path(sys.executable).parent / "pre-commit"
CLEAN = 'def greeting(name: str) -> str:\n    return f"hello {name}"\n'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    shutil.copy(ROOT / "pyproject.toml", repo / "pyproject.toml")  # the ruff settings
    (repo / ".venv").symlink_to(ROOT / ".venv")  # the hooks run .venv/bin/ruff
    return repo


def hooks(repo: Path, source: str) -> subprocess.CompletedProcess[str]:
    (repo / "module.py").write_text(source)
    subprocess.run(["git", "add", "module.py", "pyproject.toml"], cwd=repo, check=True)
    return subprocess.run(
        [str(PRE_COMMIT), "run", "--all-files", "--config", str(CONFIG)],
        cwd=repo,
        capture_output=True,
        text=True,
        env={**os.environ, "PRE_COMMIT_HOME": str(repo.parent / "store")},
    )


def test_clean_code_passes(repo: Path) -> None:
    result = hooks(repo, CLEAN)
    assert result.returncode == 0, result.stdout
    assert "ruff check" in result.stdout
    assert "ruff format --check" in result.stdout


def test_a_lint_error_is_refused(repo: Path) -> None:
    result = hooks(repo, "import os\n\n" + CLEAN)
    assert result.returncode == 1
    assert "F401" in result.stdout  # `os` imported but unused


def test_an_unformatted_file_is_refused(repo: Path) -> None:
    result = hooks(repo, CLEAN.replace('f"hello {name}"', "f'hello {name}'"))
    assert result.returncode == 1
    assert "1 file would be reformatted" in result.stdout
    assert (repo / "module.py").read_text() != CLEAN  # checked, never rewritten

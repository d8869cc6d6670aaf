"""The layers of docs/architecture.md, checked by import-linter (``make lint``, ``[tool.importlinter]`` in
pyproject.toml): the project keeps its contracts, and an upward import breaks them, named."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="import-linter is the dev extra's (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(project: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` run in ``project`` (its ``pyproject.toml``, its ``hpa_utils``), without a cache."""
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script)] if script.is_file() else [shutil.which("lint-imports") or "lint-imports"]
    env = {**os.environ, "PYTHONPATH": str(project)}  # the package under `project`, not the installed one
    return subprocess.run(
        [*command, "--no-cache", "--no-logo"], cwd=project, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_project_keeps_its_layer_contracts():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken\.", done.stdout), done.stdout


def test_an_upward_import_breaks_the_contracts_and_is_named(tmp_path):
    shutil.copytree(ROOT / "hpa_utils", tmp_path / "hpa_utils", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    labels = tmp_path / "hpa_utils" / "data" / "labels.py"
    labels.write_text(labels.read_text() + "\nfrom hpa_utils.run.runner import run  # noqa: E402  (data imports run)\n")
    line = len(labels.read_text().splitlines())
    done = _lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "hpa_utils.data is not allowed to import hpa_utils.run" in done.stdout
    assert f"hpa_utils.data.labels -> hpa_utils.run.runner (l.{line})" in done.stdout
    assert re.search(r"Nothing imports run but the notebooks, __main__ and the tests\s+BROKEN", done.stdout)


def test_the_configuration_imports_no_heavy_library():
    """Resolving and checking a run's configuration stays fast: the configuration layer, below every other, imports
    neither Keras nor OpenCV nor imgaug (those are imported where they are used)."""
    probe = (
        "import sys, hpa_utils.config.resolve, hpa_utils.config.runtime;"
        "print(sorted(m for m in ('keras', 'tensorflow', 'cv2', 'imgaug') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]", done.stdout

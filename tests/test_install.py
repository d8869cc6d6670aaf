"""A non-editable install works outside the checkout (hpa_utils.config.paths).

The package is built into a wheel (from a copy of the checkout's build inputs, so the build writes nothing
into the checkout), installed without dependencies with ``pip install --target`` into a temporary folder, and
run from another temporary folder with that folder first on ``PYTHONPATH``: the package then imports from the
install, not from the checkout's editable install (checked), and its dependencies from this environment. The
run must find the shipped presets and notebooks in the install's ``share/hpa-utils/``, write its run under
``--output-dir``, the synthetic dataset and the caches under ``$XDG_CACHE_HOME/hpa-utils/``, and nothing into
the checkout; ``hpa publish`` refuses in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = 90417
#: What the wheel is built from (pyproject.toml's packages, package data and data files, and the readme).
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "hpa_utils", "presets", "notebooks", "jupyter-config")
#: A quicker smoke run: one base variant of one epoch (and its stages), notebook 05 off; a synthetic dataset of a
#: seed of its own, so that its name shows where it went (no other run of the checkout makes it).
QUICK = ["-p", "train.variants=[0]", "-p", "report.stage_figure_variant=0", "-p", "train.base.epochs=1"]
QUICK += ["-p", "beyond.run=false", "-p", f"synth.seed={SEED}"]


#: The checkout's tracked files that a run could write (the shipped report's and the sources).
SHIPPED = ("presets", "notebooks", "report", "figures", "README.md")


def _git_status() -> str | None:
    """The status of the checkout's tracked files of :data:`SHIPPED` (None where git or the repository is missing)."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return None
    command = ["git", "status", "--porcelain", "--untracked-files=no", "--", *SHIPPED]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout


def _setuptools_builds_here() -> bool:
    """True when this environment's setuptools is new enough to build the project without build isolation."""
    try:
        from importlib.metadata import version

        return int(version("setuptools").split(".")[0]) >= 77
    except Exception:
        return False


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project's wheel, installed with ``pip install --no-deps --target``; returns the target folder."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.egg-info")
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=junk)
        elif path.is_file():
            shutil.copy2(path, source / name)
    isolation = ["--no-build-isolation"] if _setuptools_builds_here() else []  # else pip fetches setuptools
    _pip("wheel", "--no-deps", *isolation, "-q", "-w", str(base / "wheels"), str(source), cwd=base)
    wheels = sorted((base / "wheels").glob("hpa_course_report-*.whl"))
    assert len(wheels) == 1, wheels
    target = base / "site"
    _pip("install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheels[0]), cwd=base)
    return target


def _environment(target: Path, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HPA_CACHE_DIR", "PYTHONPATH")}
    env.update(PYTHONPATH=str(target), XDG_CACHE_HOME=str(cache), HPA_DEBUG="0")
    return env


def test_wheel_ships_presets_and_notebooks(installed):
    share = installed / "share" / "hpa-utils"
    assert {p.name for p in (share / "presets").glob("*.yaml")} == {p.name for p in (ROOT / "presets").glob("*.yaml")}
    shipped = {p.name for p in (share / "notebooks").glob("*.ipynb")}
    assert shipped == {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}


def test_wheel_ships_the_package_data(installed):
    """Every file of the package that is not Python (templates, tables) is in the install."""
    package = ROOT / "hpa_utils"
    data = {
        p.relative_to(package)
        for p in package.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }
    missing = sorted(str(p) for p in data if not (installed / "hpa_utils" / p).is_file())
    assert not missing, f"not in the wheel (pyproject.toml, [tool.setuptools.package-data]): {missing}"


def test_installed_paths(installed, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    probe = (
        "import json, hpa_utils\n"
        "from hpa_utils.config import run_config as c\n"
        "print(json.dumps({'package': hpa_utils.__file__, 'checkout': c.CHECKOUT and str(c.CHECKOUT),"
        " 'presets': str(c.PRESETS_DIR), 'notebooks': str(c.NOTEBOOKS_DIR), 'runs': str(c.RUNS_DIR),"
        " 'data': str(c.DATA_ROOT), 'cache': str(c.cache_root())}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=work,
        env=_environment(installed, tmp_path / "xdg"),
        capture_output=True,
        text=True,
        check=True,
    )
    paths = json.loads(result.stdout)
    assert Path(paths["package"]).is_relative_to(installed), paths
    assert paths["checkout"] is None
    assert paths["presets"] == str(installed / "share" / "hpa-utils" / "presets")
    assert paths["notebooks"] == str(installed / "share" / "hpa-utils" / "notebooks")
    assert paths["runs"] == str(work.resolve() / "runs")
    assert paths["data"] == str(tmp_path / "xdg" / "hpa-utils" / "data")
    assert paths["cache"] == str(tmp_path / "xdg" / "hpa-utils" / "images")


def test_installed_run_outside_the_checkout(installed, tmp_path):
    before = _git_status()
    work, out, cache = tmp_path / "work", tmp_path / "out", tmp_path / "xdg"
    work.mkdir()
    env = _environment(installed, cache)
    hpa = str(installed / "bin" / "hpa")
    command = [hpa, "run", "--preset", "smoke", "--output-dir", str(out), *QUICK]
    result = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    assert (out / "results" / "run.json").is_file()
    assert (out / "results" / "ensemble.json").is_file()
    for notebook in ("01_eda", "02_baseline", "03_finetune", "04_ensemble"):
        assert (out / "notebooks" / f"{notebook}.ipynb").is_file(), notebook
    assert (out / "report" / "report.html").is_file()
    dataset = f"synthetic-160x128px-test40-seed{SEED}"  # the smoke preset's, of this seed
    assert (cache / "hpa-utils" / "data" / dataset / "train.csv").is_file(), "the dataset is in the user cache"
    assert any((cache / "hpa-utils" / "images").glob(f"{dataset}-*")), "the decoded images are in the user cache"
    assert not (work / "runs").exists()
    # nothing in the checkout: neither its data and cache folders nor its tracked files
    assert not (ROOT / "data" / dataset).exists()
    assert not any((ROOT / ".cache").glob(f"{dataset}-*"))
    assert _git_status() == before

    publish = subprocess.run(
        [hpa, "publish", "--output-dir", str(out)], cwd=work, env=env, capture_output=True, text=True
    )
    assert publish.returncode == 1
    assert len(publish.stderr.strip().splitlines()) == 1, publish.stderr
    assert "checkout" in publish.stderr

"""The one place that knows the project's paths and a run's parameters.

Run parameters come from a preset (``presets/NAME.yaml``: data, not code),
overridden by ``-p key=value`` pairs; the result is a flat dict of literals that
becomes every notebook's papermill parameters. Nothing below this module reads
a global: functions take the values they need as arguments.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

PROJ_ROOT = Path(__file__).resolve().parents[2]
PRESETS_DIR = PROJ_ROOT / "presets"
NOTEBOOKS_DIR = PROJ_ROOT / "notebooks"
FIGURES_DIR = PROJ_ROOT / "figures"
REPORT_DIR = PROJ_ROOT / "report"
DATA_ROOT = PROJ_ROOT / "data"
RUNS_DIR = PROJ_ROOT / "runs"
DEFAULT_PRESET = "quick"


def cache_root() -> Path:
    """Root of the decoded-image caches (``$HPA_CACHE_DIR`` or ``.cache/`` in the project)."""
    return Path(os.environ.get("HPA_CACHE_DIR", PROJ_ROOT / ".cache"))


def cache_dir_for(data_dir: str | Path, root: str | Path | None = None) -> Path:
    """The cache folder of one data directory: outside it, keyed by its resolved path."""
    resolved = Path(data_dir).resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    return Path(root or cache_root()) / f"{resolved.name}-{digest}"


@dataclass(frozen=True)
class RunPaths:
    """The layout of one run's output directory."""

    output_dir: Path

    @property
    def notebooks(self) -> Path:
        return self.output_dir / "notebooks"

    @property
    def figures(self) -> Path:
        return self.output_dir / "figures"

    @property
    def results(self) -> Path:
        return self.output_dir / "results"

    @property
    def models(self) -> Path:
        return self.output_dir / "models"

    @property
    def predictions(self) -> Path:
        return self.output_dir / "predictions"

    @property
    def report(self) -> Path:
        return self.output_dir / "report"

    @property
    def submission(self) -> Path:
        return self.output_dir / "submission.csv"

    def split_file(self, seed: int, val_fraction: float) -> Path:
        """The run's saved train/validation split for one seed and validation share."""
        return self.results / f"split_seed{seed}_val{val_fraction}.csv"

    def make(self) -> RunPaths:
        for folder in (self.notebooks, self.figures, self.results, self.models, self.predictions, self.report):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def list_presets() -> list[str]:
    """Names of the presets shipped in ``presets/``."""
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | Path) -> dict:
    """Read a preset by name (``presets/NAME.yaml``) or path; adds ``preset``: its name.

    Raises:
        ValueError: unknown preset (the message lists the known ones) or not a mapping.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESETS_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown preset {str(name_or_path)!r}; choose one of: {', '.join(list_presets())}")
    params = yaml.safe_load(path.read_text()) or {}
    if not isinstance(params, dict):
        raise ValueError(f"{path}: a preset must be a mapping of parameter names to values")
    params.setdefault("preset", path.stem)
    return params


def parse_override(text: str) -> tuple[str, object]:
    """``"key=value"`` -> (key, value), the value parsed as YAML (``3`` -> 3, ``[0,1]`` -> list)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key.isidentifier():
        raise ValueError(f"override {text!r}: {key!r} is not a parameter name")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key, value


def resolve_params(
    preset: str | Path = DEFAULT_PRESET,
    overrides: list[str] | dict | None = None,
    data_dir: str | Path | None = None,
    output_dir: str | Path | None = None,
) -> dict:
    """A run's full parameters: the preset, then overrides, then absolute paths.

    Unknown override keys are rejected (a typo must not be silently ignored).
    """
    params = load_preset(preset)
    pairs = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides or [])
    for key, value in pairs:
        if key not in params:
            raise ValueError(f"unknown parameter {key!r}; the preset {params['preset']!r} has: {', '.join(params)}")
        params[key] = value
    if data_dir is not None:
        params["data_dir"] = str(data_dir)
    params["synthetic"] = not params.get("data_dir")
    if params["synthetic"]:
        params["data_dir"] = str(synthetic_data_dir(params))
    params["data_dir"] = str(Path(params["data_dir"]).expanduser().resolve())
    if output_dir is not None:
        params["output_dir"] = str(output_dir)
    if not params.get("output_dir"):
        params["output_dir"] = str(RUNS_DIR / params["preset"])
    params["output_dir"] = str(Path(params["output_dir"]).expanduser().resolve())
    if not params.get("cache_dir"):
        params["cache_dir"] = str(cache_dir_for(params["data_dir"]))
    return params


def synthetic_data_dir(params: dict) -> Path:
    """Where the embedded synthetic dataset of a run's ``synth_*`` parameters is generated."""
    return DATA_ROOT / (
        f"synthetic-{params['synth_n_train']}x{params['synth_size']}px"
        f"-test{params['synth_n_test']}-seed{params['synth_seed']}"
    )


def ensure_dataset(params: dict, log=print) -> None:
    """Generate the embedded synthetic dataset when the run uses it (skipped when complete and made
    by this generator version; regenerated otherwise). Only the project's own ``data/synthetic-*``
    folders are ever written: a ``data_dir`` given by the user is read-only input."""
    if not params.get("synthetic"):
        return
    from hpa_utils.data.synth import generate_dataset

    summary = generate_dataset(
        params["data_dir"],
        n_train=params["synth_n_train"],
        n_test=params["synth_n_test"],
        size=params["synth_size"],
        seed=params["synth_seed"],
        overwrite=True,  # the project's own generated data: a newer generator version replaces it
    )
    verb = "ready" if summary.get("skipped") else f"generated in {summary.get('seconds', 0):.0f} s"
    log(f"synthetic dataset {params['data_dir']}: {verb}")


def run_label(params: dict) -> str:
    """One line saying what made an output: preset, data and image size (figures carry it)."""
    data = "synthetic data" if params.get("synthetic") else Path(params["data_dir"]).name
    return f"hpa_utils · preset {params['preset']} · {data} · {params.get('image_size')} px"

"""The trained models and the jobs that make them: model names, the base and stage jobs, the table.

A base model ``v{variant}`` is trained from scratch; each fine-tuning stage of
:data:`~hpa_utils.config.stages.STAGES` starts from its parent stage's model and
re-trains one part, as ``v{variant}-{stage}``. Each job is one :func:`~hpa_utils.training.fit.fit_model`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from hpa_utils.backend import keras
from hpa_utils.config.stages import BASE, STAGES, get_stage, stage_rank
from hpa_utils.training.executor import Job
from hpa_utils.training.fit import fit_model
from hpa_utils.training.models import VARIANTS, build_variant, get_variant, prior_log_odds
from hpa_utils.training.settings import TrainSettings

TABLE_COLUMNS = [
    "model",
    "variant",
    "variant_name",
    "stage",
    "epochs",
    "val_macro_f1",
    "best_val_macro_f1",
    "best_epoch",
    "train_seconds",
    "path",
]


def base_name(variant: int) -> str:
    return f"v{int(variant)}"


def stage_name(variant: int, stage: str) -> str:
    return base_name(variant) if stage == BASE else f"v{int(variant)}-{stage}"


def train_base(
    variant, data, settings, models_dir, predictions_dir=None, log=print, on_epoch=None, check_only=False, name=None
) -> dict | None:
    """Train base model ``variant`` (index into :data:`~hpa_utils.training.models.VARIANTS`) from scratch,
    as ``name`` (default ``v{variant}``; notebook 05 names its variants ``v0+focal``...)."""
    index = _variant_index(variant)
    bias = prior_log_odds(data.y[data.train_indices]) if settings.prior_bias else None
    shape = (data.image_size, data.image_size, data.images.shape[-1])
    meta = {"variant": index, "variant_name": get_variant(index).name, "stage": BASE, "parent": None}
    return fit_model(
        name or base_name(index),
        lambda: build_variant(index, shape, output_bias=bias),
        data,
        settings,
        models_dir,
        meta,
        log,
        on_epoch,
        check_only,
        predictions_dir,
    )


def finetune(
    variant, stage, data, settings, models_dir, predictions_dir=None, log=print, on_epoch=None, check_only=False
) -> dict | None:
    """Fine-tuning stage ``stage`` ("A", "B" or "C") of a base model, from its parent stage's model."""
    index = _variant_index(variant)
    step = get_stage(stage)
    parent_path = Path(models_dir) / f"{stage_name(index, step.parent)}.keras"
    if not parent_path.is_file():
        raise FileNotFoundError(f"{parent_path}: stage {stage} starts from this model; train it first")
    meta = {
        "variant": index,
        "variant_name": get_variant(index).name,
        "stage": stage,
        "parent": stage_name(index, step.parent),
        "parent_mtime_ns": parent_path.stat().st_mtime_ns,
    }
    settings = TrainSettings(**{**asdict(settings), "part": step.part})
    return fit_model(
        stage_name(index, stage),
        lambda: keras.saving.load_model(parent_path, compile=False),
        data,
        settings,
        models_dir,
        meta,
        log,
        on_epoch,
        check_only,
        predictions_dir,
    )


def _variant_index(variant) -> int:
    return VARIANTS.index(get_variant(variant))


def base_jobs(variants, data, settings, models_dir, predictions_dir=None) -> list[Job]:
    """One job per base variant (for :func:`~hpa_utils.training.executor.run_jobs`)."""
    return [
        Job(base_name(_variant_index(v)), train_base, (v, data, settings, models_dir, predictions_dir))
        for v in variants
    ]


def stage_jobs(variants, data, stage_settings: dict, models_dir, predictions_dir=None) -> list[Job]:
    """Stages A, B, C of every base variant (``stage_settings``: stage -> TrainSettings), each after its
    parent; ordered stage by stage, so that workers side by side start on different variants."""
    return [
        Job(
            stage_name(_variant_index(v), stage.name),
            finetune,
            (v, stage.name, data, stage_settings[stage.name], models_dir, predictions_dir),
            after=stage_name(_variant_index(v), stage.parent),
        )
        for stage in STAGES
        for v in variants
    ]


def load_history(models_dir: str | Path, name: str) -> pd.DataFrame:
    """The per-epoch history of model ``name``."""
    return pd.read_csv(Path(models_dir) / f"{name}.history.csv")


def models_table(models_dir: str | Path) -> pd.DataFrame:
    """Every finished model: name, variant, stage, epochs, validation macro F1, path; by variant, then stage order."""
    rows = []
    for path in sorted(Path(models_dir).glob("*.json")):
        summary = json.loads(path.read_text())
        rows.append(
            {
                "model": summary["name"],
                "variant": summary["variant"],
                "variant_name": summary["variant_name"],
                "stage": summary["stage"],
                "epochs": summary["epochs_trained"],
                "val_macro_f1": summary["val_macro_f1"],
                "best_val_macro_f1": summary["best_val_macro_f1"],
                "best_epoch": summary["best_epoch"],
                "train_seconds": summary["train_seconds"],
                "path": str(Path(models_dir) / summary["path"]),
            }
        )
    frame = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return frame.sort_values(
        ["variant", "stage"], key=lambda s: s.map(stage_rank) if s.name == "stage" else s, ignore_index=True
    )

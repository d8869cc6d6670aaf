"""The trained models and the jobs that make them: model names, the base and stage jobs, the table.

A base model ``v{variant}`` is trained from scratch; each fine-tuning stage of
:data:`~hpa_utils.config.stages.STAGES` starts from its parent stage's model and
re-trains one part, as ``v{variant}-{stage}``. Each job is one :func:`~hpa_utils.training.fit.fit_model`.
A run that trains each model with several training seeds names every model with its seed:
``v{variant}-s{seed}``, ``v{variant}-{stage}-s{seed}``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd

from hpa_utils.backend import keras
from hpa_utils.config.stages import BASE, CONTROL, STAGES, get_stage, stage_rank
from hpa_utils.training.executor import Job
from hpa_utils.training.fit import fit_model
from hpa_utils.training.models import VARIANTS, build_variant, get_variant, prior_log_odds
from hpa_utils.training.settings import TrainSettings

TABLE_COLUMNS = [
    "model",
    "variant",
    "variant_name",
    "stage",
    "seed",
    "epochs",
    "val_macro_f1",
    "best_val_macro_f1",
    "best_epoch",
    "train_seconds",
    "path",
]


def base_name(variant: int, seed: int | None = None) -> str:
    """``v0``; with the training seed shown (a run of several seeds), ``v0-s1``."""
    return stage_name(variant, BASE, seed)


def stage_name(variant: int, stage: str, seed: int | None = None) -> str:
    """``v0-A`` (``v0`` for the base stage); with the training seed shown, ``v0-A-s1``."""
    name = f"v{int(variant)}" if stage == BASE else f"v{int(variant)}-{stage}"
    return name if seed is None else f"{name}-s{int(seed)}"


def shown_seed(seed: int, seeds) -> int | None:
    """The seed a model's name shows: none when the run trains every model with one seed."""
    return None if len(tuple(seeds)) < 2 else int(seed)


def train_base(
    variant, data, settings, models_dir, predictions_dir=None, name=None, log=print, on_epoch=None, check_only=False
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
    variant,
    stage,
    data,
    settings,
    models_dir,
    predictions_dir=None,
    shown: int | None = None,
    log=print,
    on_epoch=None,
    check_only=False,
) -> dict | None:
    """Fine-tuning stage ``stage`` ("A", "B" or "C", or the control "ctl") of a base model, from its parent
    stage's model (``shown``: the seed the names show, :func:`shown_seed`)."""
    index = _variant_index(variant)
    step = get_stage(stage)
    parent_path = Path(models_dir) / f"{stage_name(index, step.parent, shown)}.keras"
    if not parent_path.is_file():
        raise FileNotFoundError(f"{parent_path}: stage {stage} starts from this model; train it first")
    meta = {
        "variant": index,
        "variant_name": get_variant(index).name,
        "stage": stage,
        "parent": stage_name(index, step.parent, shown),
        "parent_mtime_ns": parent_path.stat().st_mtime_ns,
    }
    settings = TrainSettings(**{**asdict(settings), "part": step.part})
    return fit_model(
        stage_name(index, stage, shown),
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


def base_jobs(variants, data, settings, models_dir, predictions_dir=None, seeds=None) -> list[Job]:
    """One job per base variant and training seed (``seeds``: default ``settings.seed`` alone), for
    :func:`~hpa_utils.training.executor.run_jobs`; seed by seed, so the first seed's models come first."""
    seeds = tuple(seeds or (settings.seed,))
    jobs = []
    for seed in seeds:
        name_seed, seeded = shown_seed(seed, seeds), replace(settings, seed=int(seed))
        for v in variants:
            name = base_name(_variant_index(v), name_seed)
            jobs.append(Job(name, train_base, (v, data, seeded, models_dir, predictions_dir, name)))
    return jobs


def stage_jobs(variants, data, stage_settings: dict, models_dir, predictions_dir=None, seeds=None) -> list[Job]:
    """Stages A, B, C of every base variant and training seed (``stage_settings``: stage -> TrainSettings),
    each after its parent; ordered stage by stage, so that workers side by side start on different variants."""
    seeds = tuple(seeds or (next(iter(stage_settings.values())).seed,))
    return [
        Job(
            stage_name(_variant_index(v), stage.name, shown_seed(seed, seeds)),
            finetune,
            (
                v,
                stage.name,
                data,
                replace(stage_settings[stage.name], seed=int(seed)),
                models_dir,
                predictions_dir,
                shown_seed(seed, seeds),
            ),
            after=stage_name(_variant_index(v), stage.parent, shown_seed(seed, seeds)),
        )
        for seed in seeds
        for stage in STAGES
        for v in variants
    ]


def control_jobs(variants, data, settings: TrainSettings, models_dir, predictions_dir=None, seeds=None) -> list[Job]:
    """Finding 2's control (:data:`~hpa_utils.config.stages.CONTROL`) of each of ``variants`` and training seed:
    from its base model, nothing frozen, for ``settings.epochs`` (the stages' together) at their rate."""
    seeds = tuple(seeds or (settings.seed,))
    return [
        Job(
            stage_name(_variant_index(v), CONTROL.name, shown_seed(seed, seeds)),
            finetune,
            (
                v,
                CONTROL.name,
                data,
                replace(settings, seed=int(seed)),
                models_dir,
                predictions_dir,
                shown_seed(seed, seeds),
            ),
            after=base_name(_variant_index(v), shown_seed(seed, seeds)),
        )
        for seed in seeds
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
                "seed": summary.get("settings", {}).get("seed"),
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
        ["seed", "variant", "stage"], key=lambda s: s.map(stage_rank) if s.name == "stage" else s, ignore_index=True
    )

"""Notebook 05's second question: where the run's best model looks (Grad-CAM), and on synthetic data how much
of each map falls where the generator drew the class's pattern (the pointing game), against maps that ignore
the class.

:func:`run_gradcam`: the run's best model on validation. On synthetic data every labelled validation image
gives one map per label, and each (image, class) is scored by the same pointing-game scorer
(:func:`pattern_mask`, :func:`pointing_scores`) for four maps (:data:`MAPS`):

* ``gradcam``: the model's Grad-CAM for the class;
* ``uniform``: an even map, chance: its mass on the pattern is exactly the pattern's share of the image; its
  peak is undefined, so its peak score is the chance level, the probability that a uniformly drawn pixel lies
  on the pattern (again the pattern's share);
* ``cellstain``: the class-agnostic cell-stain map, the red + yellow channels of the image at the model's
  input size (where the cells are, not where the class's protein is);
* ``green``: the green (protein) channel itself. It ignores the class too but sees every pattern the image
  carries (the synthetic green channel is their sum), so it is an upper bound of what a class-agnostic map
  that reads the protein stain reaches, not a chance level.

Each map's overall lift is its mean mass on the pattern over the mean pattern share; its peak rate the share
of maps whose peak is on the pattern. Grad-CAM minus the cell-stain map (lift and peak) gets a paired 95%
bootstrap interval over the maps (:func:`pointing_summary`), and the verdict, whether Grad-CAM points at the
class's pattern better than, no better than or worse than a map that ignores the class, is read from the lift
interval (:func:`pointing_verdict`).

Per class (:func:`per_class_pointing`), only the classes the model predicts are scored: at least one
validation image predicted positive at :data:`THRESHOLD`, by the rule the model's F1 is scored with (a class
never predicted has no evidence for a map to show; its F1 is 0 whatever its lift). The classes drawn are
chosen by :func:`shown_classes`. Writes ``results/beyond_pointing.csv``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpa_utils.config.run_config import RunConfig
from hpa_utils.data.labels import NUM_CLASSES, class_name
from hpa_utils.evaluation.bootstrap import N_RESAMPLES, paired_mean_difference
from hpa_utils.evaluation.metrics import binarize, f1_per_class, macro_f1
from hpa_utils.io import save_table
from hpa_utils.studies.training import best_single_model, training_data

#: The share of a pattern's peak above which a pixel counts as on the pattern (pointing game).
PATTERN_LEVEL = 0.2
#: The threshold on the model's probabilities for its validation F1 and for "the model predicts the class", by
#: the project's scoring rule (:func:`~hpa_utils.evaluation.metrics.binarize`: an image with no class at or
#: above it gets its most probable class). The maps are of the run's best single model, which has no threshold
#: of its own (the run's tuned thresholds are the ensemble's), so the report's plain 0.5 is kept.
THRESHOLD = 0.5
#: The four maps scored per (image, class), and how the report names them.
MAPS = {
    "gradcam": "Grad-CAM of the class",
    "uniform": "uniform (chance)",
    "cellstain": "cell stains (red + yellow), ignores the class",
    "green": "protein channel (green), ignores the class, sees every pattern",
}
#: The per-class pointing columns of ``results/beyond_pointing.csv``, in order (:func:`per_class_pointing`).
POINTING_COLUMNS = (
    "maps",
    "mass_on_pattern",
    "pattern_share",
    "peak_on_pattern",
    "lift",
    "lift_cellstain",
    "lift_green",
    "lift_vs_cellstain",
    "peak_cellstain",
    "peak_green",
    "peak_chance",
)
#: Verdicts against the class-agnostic cell-stain map, read from the paired interval.
BETTER, NO_BETTER, WORSE = "better than", "no better than", "worse than"


@dataclass
class GradCam:
    """Grad-CAM of the run's best model.

    Attributes:
        model: the model's name; ``val_f1`` its validation macro F1 (threshold :data:`THRESHOLD`).
        per_class: per class: validation F1 of the model, validation images, images predicted positive, and
            (synthetic data, classes the model predicts only) the pointing game of the four maps
            (``results/beyond_pointing.csv``, :func:`per_class_pointing`).
        best, worst: the classes shown (:func:`shown_classes`).
        panels: the images shown: class, kind ("best"/"worst"), Id, the four channels (H, W, 4) uint8, the
            map (H, W), the pattern mask or None, the model's probability for the class.
        layer: what the maps weight (:data:`~hpa_utils.training.gradcam.MAPS_DESCRIPTION`).
        pointing: overall pointing-game figures (:func:`pointing_summary`), or None without ground truth.
    """

    model: str
    val_f1: float
    per_class: pd.DataFrame
    best: list[int]
    worst: list[int]
    panels: list[dict]
    layer: str
    pointing: dict | None = None


def pattern_mask(pattern: np.ndarray, size: int, level: float = PATTERN_LEVEL) -> np.ndarray:
    """Where a pattern (peak 1, at the generator's size) is drawn, at the model's input size: the pixels
    whose area-averaged intensity reaches ``level`` of the resized pattern's peak."""
    # deferred: OpenCV
    import cv2

    resized = cv2.resize(np.asarray(pattern, dtype=np.float32), (size, size), interpolation=cv2.INTER_AREA)
    peak = float(resized.max())
    return resized >= level * peak if peak > 0 else np.zeros((size, size), bool)


def pointing_scores(cam: np.ndarray, mask: np.ndarray) -> tuple[float, float, bool]:
    """(share of the map's mass on the mask, the mask's share of the image, whether the map's peak is on it).

    A map spread evenly puts the mask's share of the image on it; a map with no mass scores 0. The peak is
    the first maximum (row-major) when several pixels tie.
    """
    cam = np.maximum(np.asarray(cam, dtype=np.float64), 0)
    mask = np.asarray(mask, dtype=bool)
    total = cam.sum()
    mass = float((cam * mask).sum() / total) if total > 0 else 0.0
    hit = bool(mask.flat[int(np.argmax(cam))]) if total > 0 else False
    return mass, float(mask.mean()), hit


def baseline_maps(image: np.ndarray) -> dict[str, np.ndarray]:
    """The class-agnostic maps of one image ((H, W, 4), channels red, green, blue, yellow, at the model's input
    size), as float: ``cellstain`` (red + yellow) and ``green``."""
    image = np.asarray(image, dtype=np.float32)
    return {"cellstain": image[..., 0] + image[..., 3], "green": image[..., 1].copy()}


def map_scores(cam: np.ndarray, agnostic: dict[str, np.ndarray], mask: np.ndarray) -> dict:
    """One (image, class)'s record for the four maps of :data:`MAPS`: ``share`` (the pattern's share of the
    image) and, per map, ``mass_<map>`` (share of its mass on the pattern) and ``peak_<map>`` (1.0 when its
    peak is on the pattern, else 0.0). The uniform map's mass is the share exactly, and its peak, undefined,
    scores the chance level: the share again."""
    mass, share, hit = pointing_scores(cam, mask)
    record = {"share": share, "mass_gradcam": mass, "peak_gradcam": float(hit)}
    record["mass_uniform"] = record["peak_uniform"] = share
    for name in ("cellstain", "green"):
        mass, _, hit = pointing_scores(agnostic[name], mask)
        record[f"mass_{name}"], record[f"peak_{name}"] = mass, float(hit)
    return record


def pointing_verdict(interval) -> str:
    """Whether Grad-CAM points at the class's pattern better than, no better than or worse than the cell-stain
    map, from the paired 95% interval of Grad-CAM minus the cell-stain map: above 0, containing 0, below 0."""
    if interval.low > 0:
        return BETTER
    if interval.high < 0:
        return WORSE
    return NO_BETTER


def pointing_summary(
    scores: pd.DataFrame, level: float = PATTERN_LEVEL, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> dict:
    """The overall pointing game of the maps in ``scores`` (one row per (image, class), as :func:`map_scores`).

    Per map of :data:`MAPS`: ``lift`` (its mean mass on the pattern over the mean pattern share; 1 = chance)
    and ``peak`` (share of maps whose peak is on the pattern; the uniform map's is the chance level, also
    ``peak_chance``). ``vs_cellstain``: Grad-CAM minus the cell-stain map, lift and peak, each with its paired
    95% bootstrap interval over the maps (``n_images`` counts maps; the lift's per-map values are the masses
    over the overall mean share, one denominator for both maps). The maps of one image share that image, so
    the interval, which draws maps independently, may be somewhat narrow. ``verdict``: :func:`pointing_verdict`
    of the lift interval; ``verdict_peak`` the same rule on the peak interval. The top-level ``maps``,
    ``mass_on_pattern``, ``pattern_share``, ``peak_on_pattern`` and ``level`` are Grad-CAM's, as older runs
    stored them.
    """
    share = float(scores["share"].mean())
    baselines = {
        name: {
            "mass": float(scores[f"mass_{name}"].mean()),
            "lift": float(scores[f"mass_{name}"].mean() / share) if share > 0 else None,
            "peak": float(scores[f"peak_{name}"].mean()),
        }
        for name in MAPS
    }
    if share > 0:
        baselines["uniform"]["lift"] = 1.0  # exactly: its mass is the share
    scale = share if share > 0 else 1.0
    lift = paired_mean_difference(
        scores["mass_gradcam"].to_numpy() / scale, scores["mass_cellstain"].to_numpy() / scale, n_resamples, seed
    )
    peak = paired_mean_difference(
        scores["peak_gradcam"].to_numpy(float), scores["peak_cellstain"].to_numpy(float), n_resamples, seed
    )
    return {
        "maps": int(len(scores)),
        "mass_on_pattern": baselines["gradcam"]["mass"],
        "pattern_share": share,
        "peak_on_pattern": baselines["gradcam"]["peak"],
        "level": level,
        "threshold": THRESHOLD,
        "peak_chance": share,
        "baselines": baselines,
        "names": dict(MAPS),
        "vs_cellstain": {"lift": lift.as_dict(), "peak": peak.as_dict()},
        "verdict": pointing_verdict(lift),
        "verdict_peak": pointing_verdict(peak),
    }


def per_class_pointing(scores: pd.DataFrame, predicted: np.ndarray) -> pd.DataFrame:
    """Per class of ``scores`` that the model predicts (``predicted``: a bool per class), indexed by class:
    ``maps``, Grad-CAM's ``mass_on_pattern``, ``pattern_share``, ``peak_on_pattern`` and ``lift``; each
    baseline's ``lift_cellstain``, ``lift_green``, ``peak_cellstain``, ``peak_green`` and ``peak_chance`` (the
    uniform map's peak score, the pattern's mean share); and ``lift_vs_cellstain``, the class's pointing score:
    Grad-CAM's lift over the cell-stain map's on the same maps (1: no better than the cell stains). Classes
    never predicted are left out."""
    kept = scores[np.asarray(predicted, bool)[scores["class"].to_numpy(int)]]
    grouped = kept.groupby("class")
    table = grouped.agg(
        maps=("share", "size"),
        mass_on_pattern=("mass_gradcam", "mean"),
        pattern_share=("share", "mean"),
        peak_on_pattern=("peak_gradcam", "mean"),
        mass_cellstain=("mass_cellstain", "mean"),
        mass_green=("mass_green", "mean"),
        peak_cellstain=("peak_cellstain", "mean"),
        peak_green=("peak_green", "mean"),
    )
    share = table["pattern_share"].where(table["pattern_share"] > 0)
    table["lift"] = table["mass_on_pattern"] / share
    table["lift_cellstain"] = table["mass_cellstain"] / share
    table["lift_green"] = table["mass_green"] / share
    table["lift_vs_cellstain"] = table["mass_on_pattern"] / table["mass_cellstain"].where(table["mass_cellstain"] > 0)
    table["peak_chance"] = table["pattern_share"]
    table["maps"] = table["maps"].astype(int)
    return table[list(POINTING_COLUMNS)]


def shown_classes(score: np.ndarray, images: np.ndarray, candidates: np.ndarray, k: int) -> tuple[list[int], list[int]]:
    """The ``k`` best and ``k`` worst of the ``candidates`` (a bool per class) by ``score`` (one per class).

    Best: highest score first; worst: lowest first; among equal scores the class with more validation
    images (``images``) comes first, then the lower class id, so a tie is never settled by the id alone while
    the images differ. A class with no score (NaN) is not a candidate; a class among the best is not repeated
    among the worst. The study's score is the class's pointing score (Grad-CAM's lift over the cell-stain
    map's, :func:`per_class_pointing`) on synthetic data, else its validation F1; the candidates are the
    classes the model predicts that have validation images.
    """
    score = np.asarray(score, dtype=np.float64)
    images = np.asarray(images)
    pool = [int(c) for c in np.flatnonzero(np.asarray(candidates, bool)) if np.isfinite(score[c])]
    best = sorted(pool, key=lambda c: (-score[c], -images[c], c))[:k]
    worst = [c for c in sorted(pool, key=lambda c: (score[c], -images[c], c)) if c not in best][:k]
    return best, worst


def run_gradcam(config: RunConfig, log: Callable[[str], None] = print, batch_size: int = 32) -> GradCam:
    """Grad-CAM of the run's best model on validation images, and on synthetic data the pointing game against
    the baselines (see the module docstring).

    The classes shown are :func:`shown_classes` (``beyond.gradcam_classes`` each way; at most half the
    candidates) of the classes the model predicts at :data:`THRESHOLD` with validation images: by pointing
    score on synthetic data, by validation F1 on real data. Should the model predict none, every class with
    validation images is a candidate (``pointing["shown_from"]`` says which).
    """
    # deferred: Keras, OpenCV
    from hpa_utils.backend import keras
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.data.synth.writer import pattern_maps
    from hpa_utils.training.gradcam import MAPS_DESCRIPTION, grad_cam
    from hpa_utils.training.predictions import predict_models
    from hpa_utils.training.registry import models_table

    paths = config.paths
    data = training_data(config)
    source = open_dataset(config.data_dir)
    best_row = best_single_model(models_table(paths.models), config)
    name = str(best_row["model"])
    probs = predict_models(
        {name: best_row["path"]}, {"val": (data.images, data.val_indices)}, paths.predictions, log=log
    )
    p_val = probs["val"][name]
    y_val = data.y[data.val_indices].astype(bool)
    y_hat = binarize(p_val, THRESHOLD)
    per_class_f1 = f1_per_class(y_val, y_hat)
    counts = y_val.sum(axis=0)
    n_predicted = np.asarray(y_hat, bool).sum(axis=0)
    predicted = n_predicted > 0

    model = keras.saving.load_model(best_row["path"], compile=False)
    val_ids = [source.train_ids[i] for i in data.val_indices]
    synthetic = (config.data_dir / "synth.json").is_file()

    def images_of(rows) -> np.ndarray:
        return np.asarray(data.images[[data.val_indices[r] for r in rows]])

    per_class = pd.DataFrame(
        {
            "class": np.arange(NUM_CLASSES),
            "name": [class_name(c) for c in range(NUM_CLASSES)],
            "val_images": counts,
            "val_f1": per_class_f1,
            "val_predicted": n_predicted,
        }
    )
    pointing = None
    score = per_class_f1.astype(np.float64)
    if synthetic:
        # every (validation image, label) pair: four maps each, scored
        pairs = [(row, int(c)) for row in range(len(val_ids)) for c in np.flatnonzero(y_val[row])]
        records = []
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            raw = images_of([r for r, _ in chunk])
            maps = grad_cam(model, raw.astype(np.float32) / 255.0, [c for _, c in chunk])
            patterns = pattern_maps(config.data_dir, "train", sorted({val_ids[r] for r, _ in chunk}))
            for (r, c), cam, image in zip(chunk, maps, raw):
                mask = pattern_mask(patterns[val_ids[r]][c], data.image_size)
                records.append({"class": c, **map_scores(cam, baseline_maps(image), mask)})
        log(f"Grad-CAM: {len(pairs)} maps of {name}, each scored with the uniform, cell-stain and green maps")
        if records:
            scores = pd.DataFrame(records)
            pointing = pointing_summary(scores)
            per_class = per_class.join(per_class_pointing(scores, predicted), on="class")
            score = per_class["lift_vs_cellstain"].to_numpy(np.float64)
    candidates = predicted & (counts > 0)
    shown_from = "predicted"
    if not candidates.any():
        candidates = counts > 0
        shown_from = "all"
        if synthetic and pointing is not None:  # nothing predicted: score every class with maps for the choice
            everything = per_class_pointing(pd.DataFrame(records), np.ones(NUM_CLASSES, bool))
            score = everything["lift_vs_cellstain"].reindex(range(NUM_CLASSES)).to_numpy(np.float64)
    k = min(config.beyond.gradcam_classes, int((candidates & np.isfinite(score)).sum()) // 2 or 1)
    best, worst = shown_classes(score, counts, candidates, k)
    if pointing is not None:
        pointing["shown_by"] = "pointing score"
        pointing["shown_from"] = shown_from
        pointing["classes_scored"] = int(per_class["maps"].notna().sum())
    save_table(per_class, paths.results / "beyond_pointing.csv")

    shown_rows = {
        (kind, c): [int(r) for r in np.flatnonzero(y_val[:, c])[np.argsort(-p_val[y_val[:, c], c], kind="stable")]][
            : config.beyond.gradcam_images
        ]
        for kind, classes in (("best", best), ("worst", worst))
        for c in classes
    }
    wanted = sorted({(r, c) for (_, c), rs in shown_rows.items() for r in rs})
    cams: dict[tuple[int, int], np.ndarray] = {}
    for start in range(0, len(wanted), batch_size):
        chunk = wanted[start : start + batch_size]
        maps = grad_cam(model, images_of([r for r, _ in chunk]).astype(np.float32) / 255.0, [c for _, c in chunk])
        cams.update(zip(chunk, maps))
    panels = []
    for (kind, c), rows_ in shown_rows.items():
        for r in rows_:
            mask = None
            if synthetic:
                mask = pattern_mask(
                    pattern_maps(config.data_dir, "train", [val_ids[r]])[val_ids[r]][c], data.image_size
                )
            panels.append(
                {
                    "class": c,
                    "kind": kind,
                    "id": val_ids[r],
                    "image": np.asarray(data.images[data.val_indices[r]]),
                    "cam": cams[(r, c)],
                    "mask": mask,
                    "probability": float(p_val[r, c]),
                }
            )
    return GradCam(
        model=name,
        val_f1=macro_f1(y_val, y_hat),
        per_class=per_class,
        best=best,
        worst=worst,
        panels=panels,
        layer=MAPS_DESCRIPTION,
        pointing=pointing,
    )

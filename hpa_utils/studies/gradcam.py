"""Notebook 05's second question: where the run's best model looks (Grad-CAM), and on synthetic data how much
of each map falls where the generator drew the class's pattern (the pointing game).

:func:`run_gradcam`: the run's best model on validation; its per-class validation F1 picks the classes it
does best and worst on; maps of validation images carrying those classes are drawn over the green channel.
On synthetic data every map of every labelled validation image is scored by how much of its mass falls
where the generator drew the class's pattern (against the share of the image the pattern covers, the mass
a map spread evenly would put there) and whether its peak is on the pattern. Writes
``results/beyond_pointing.csv``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpa_utils.config.run_config import RunConfig
from hpa_utils.data.labels import NUM_CLASSES, class_name
from hpa_utils.evaluation.metrics import binarize, f1_per_class, macro_f1
from hpa_utils.io import save_table
from hpa_utils.studies.training import run_models, training_data

#: The share of a pattern's peak above which a pixel counts as on the pattern (pointing game).
PATTERN_LEVEL = 0.2


@dataclass
class GradCam:
    """Grad-CAM of the run's best model.

    Attributes:
        model: the model's name; ``val_f1`` its validation macro F1 (threshold 0.5).
        per_class: per class: validation F1 of the model, validation images, and (synthetic data) the
            pointing game: mean map mass on the pattern, the pattern's mean share of the image (chance),
            the share of maps whose peak is on the pattern (``results/beyond_pointing.csv``).
        best, worst: the classes shown (best and worst validation F1 among classes with validation images).
        panels: the images shown: class, kind ("best"/"worst"), Id, the four channels (H, W, 4) uint8, the
            map (H, W), the pattern mask or None, the model's probability for the class.
        layer: what the maps weight (:data:`~hpa_utils.training.gradcam.MAPS_DESCRIPTION`).
        pointing: overall pointing-game figures, or None without ground truth.
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

    A map spread evenly puts the mask's share of the image on it; a map with no mass scores 0.
    """
    cam = np.maximum(np.asarray(cam, dtype=np.float64), 0)
    mask = np.asarray(mask, dtype=bool)
    total = cam.sum()
    mass = float((cam * mask).sum() / total) if total > 0 else 0.0
    hit = bool(mask.flat[int(np.argmax(cam))]) if total > 0 else False
    return mass, float(mask.mean()), hit


def run_gradcam(config: RunConfig, log: Callable[[str], None] = print, batch_size: int = 32) -> GradCam:
    """Grad-CAM of the run's best model on validation images (see the module docstring)."""
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
    table = models_table(paths.models)
    table = run_models(table, config)
    best_row = table.loc[table["val_macro_f1"].idxmax()]
    name = str(best_row["model"])
    probs = predict_models(
        {name: best_row["path"]}, {"val": (data.images, data.val_indices)}, paths.predictions, log=log
    )
    p_val = probs["val"][name]
    y_val = data.y[data.val_indices].astype(bool)
    per_class_f1 = f1_per_class(y_val, binarize(p_val, 0.5))
    counts = y_val.sum(axis=0)
    present = np.flatnonzero(counts > 0)
    order = present[np.argsort(-per_class_f1[present], kind="stable")]
    k = min(config.beyond.gradcam_classes, len(order) // 2 or 1)
    best, worst = [int(c) for c in order[:k]], [int(c) for c in order[::-1][:k] if c not in order[:k]]

    model = keras.saving.load_model(best_row["path"], compile=False)
    val_ids = [source.train_ids[i] for i in data.val_indices]
    synthetic = (config.data_dir / "synth.json").is_file()
    # every (validation image, label) pair: one map each, scored on synthetic data
    pairs = [(row, c) for row in range(len(val_ids)) for c in np.flatnonzero(y_val[row])]
    shown_rows = {
        (kind, c): [int(r) for r in np.flatnonzero(y_val[:, c])[np.argsort(-p_val[y_val[:, c], c], kind="stable")]][
            : config.beyond.gradcam_images
        ]
        for kind, classes in (("best", best), ("worst", worst))
        for c in classes
    }
    wanted = {(r, c) for (_, c), rs in shown_rows.items() for r in rs}
    score_pairs = pairs if synthetic else sorted(wanted)
    cams: dict[tuple[int, int], np.ndarray] = {}
    records = []
    for start in range(0, len(score_pairs), batch_size):
        chunk = score_pairs[start : start + batch_size]
        images = np.asarray(data.images[[data.val_indices[r] for r, _ in chunk]], dtype=np.float32) / 255.0
        maps = grad_cam(model, images, [c for _, c in chunk])
        patterns = pattern_maps(config.data_dir, "train", sorted({val_ids[r] for r, _ in chunk})) if synthetic else {}
        for (r, c), cam in zip(chunk, maps):
            if (r, c) in wanted:
                cams[(r, c)] = cam
            if synthetic:
                mask = pattern_mask(patterns[val_ids[r]][int(c)], data.image_size)
                mass, chance, hit = pointing_scores(cam, mask)
                records.append({"class": int(c), "mass": mass, "chance": chance, "hit": hit})
    log(f"Grad-CAM: {len(score_pairs)} maps of {name}")

    per_class = pd.DataFrame(
        {
            "class": np.arange(NUM_CLASSES),
            "name": [class_name(c) for c in range(NUM_CLASSES)],
            "val_images": counts,
            "val_f1": per_class_f1,
        }
    )
    pointing = None
    if records:
        scores = pd.DataFrame(records)
        grouped = scores.groupby("class").agg(
            maps=("mass", "size"),
            mass_on_pattern=("mass", "mean"),
            pattern_share=("chance", "mean"),
            peak_on_pattern=("hit", "mean"),
        )
        per_class = per_class.join(grouped, on="class")
        per_class["lift"] = per_class["mass_on_pattern"] / per_class["pattern_share"]
        pointing = {
            "maps": int(len(scores)),
            "mass_on_pattern": float(scores["mass"].mean()),
            "pattern_share": float(scores["chance"].mean()),
            "peak_on_pattern": float(scores["hit"].mean()),
            "level": PATTERN_LEVEL,
        }
    save_table(per_class, paths.results / "beyond_pointing.csv")
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
        val_f1=macro_f1(y_val, binarize(p_val, 0.5)),
        per_class=per_class,
        best=best,
        worst=worst,
        panels=panels,
        layer=MAPS_DESCRIPTION,
        pointing=pointing,
    )

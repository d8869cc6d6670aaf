"""Notebook 06: what a finished run's chosen predictor does on each validation image.

:func:`open_exploration` reads what notebooks 01-04 left (the split, the decoded-image cache, the stored
validation predictions of the ensemble's members, ``results/ensemble.json``) and returns an
:class:`Exploration`: the validation images and labels, the chosen predictor's probabilities, its global
threshold and per-class thresholds fitted on validation, and :meth:`Exploration.grad_cam`, the Grad-CAM maps
of the ensemble's heaviest member, computed only for the images asked for (and kept). Nothing is trained,
predicted again or written.

What the explorer (:mod:`hpa_utils.reporting.explore`, the widgets) shows, as plain numpy/pandas functions tested
without a browser:

* which validation images of a class the predictor gets right, misses, or raises a false alarm on, and where the
  model looks: :func:`select_images` (the :data:`FILTERS`), :func:`outcomes`, :func:`gallery_panels`;
* what a class's threshold does to its F1 and to the macro F1: :func:`scores_at`, by the project's one rule
  (:func:`~hpa_utils.evaluation.metrics.binarize`), so its macro F1 is
  :func:`~hpa_utils.evaluation.metrics.macro_f1`'s; :func:`threshold_table`;
* what a class is confused with: :func:`cooccurrence` (true against predicted classes), :func:`confusions`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from hpa_utils.data.labels import CLASS_NAMES, NUM_CLASSES
from hpa_utils.evaluation.ensemble import weighted_mean
from hpa_utils.evaluation.metrics import binarize, f1_per_class
from hpa_utils.evaluation.thresholds import fit_per_class_thresholds
from hpa_utils.studies.ensemble import EnsembleSummary
from hpa_utils.studies.training import training_data

if TYPE_CHECKING:
    from collections.abc import Callable

    from hpa_utils.config.run_config import RunConfig


@dataclass
class Exploration:
    """A finished run's validation images with the chosen predictor's output.

    Attributes:
        ids: the validation Ids, in the split's order.
        y_true: (N, C) bool validation labels.
        probabilities: (N, C) the chosen predictor's probabilities (the ensemble's weighted mean).
        predictor: how figures name it ("weighted ensemble of 3 models").
        members: model -> weight (normalised to sum to 1) of the ensemble's members.
        threshold: the chosen global threshold (``ensemble.json``; the submission's).
        fitted: (C,) per-class thresholds fitted on these same validation images (an optimistic choice).
        images: the decoded images of the whole training set (a memory map: nothing is read until shown).
        rows: the validation images' rows in ``images``.
        cam_model: the member whose Grad-CAM maps are drawn (the heaviest; the maps of an average of
            probabilities are not defined).
        cam_model_path: its ``.keras`` file.
        label: the run, as figures name it (preset, data, size).
    """

    ids: list[str]
    y_true: np.ndarray
    probabilities: np.ndarray
    predictor: str
    members: dict[str, float]
    threshold: float
    fitted: np.ndarray
    images: np.ndarray
    rows: np.ndarray
    cam_model: str
    cam_model_path: Path
    label: str = ""
    _cams: dict = field(default_factory=dict, repr=False)
    _model: object = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, index: int) -> np.ndarray:
        """Validation image ``index`` as stored: (H, W, 4) uint8, channels R, G, B, Y."""
        return np.asarray(self.images[int(self.rows[int(index)])])

    def grad_cam(self, indices, class_id: int) -> np.ndarray:
        """Grad-CAM maps (n, H, W) in [0, 1] of :attr:`cam_model` for class ``class_id`` on validation images
        ``indices``; computed once per (image, class) and kept."""
        indices = [int(i) for i in indices]
        wanted = [i for i in indices if (i, int(class_id)) not in self._cams]
        if wanted:
            from hpa_utils.training.gradcam import grad_cam

            images = np.stack([self.image(i) for i in wanted]).astype(np.float32) / 255.0
            for i, cam in zip(wanted, grad_cam(self._load_model(), images, int(class_id))):
                self._cams[(i, int(class_id))] = cam
        side = self.images.shape[1:3]
        return np.stack([self._cams[(i, int(class_id))] for i in indices]) if indices else np.zeros((0, *side))

    def _load_model(self):
        if self._model is None:
            from hpa_utils.backend import keras
            from hpa_utils.training import predictions  # noqa: F401  (registers the models' layers)

            self._model = keras.saving.load_model(self.cam_model_path, compile=False)
        return self._model

    def _repr_markdown_(self) -> str:
        members = ", ".join(f"`{m}` ({w:.2f})" for m, w in self.members.items())
        return (
            f"{len(self)} validation images; the chosen predictor is the {self.predictor} ({members}), thresholded"
            f" at {self.threshold:.2f}; Grad-CAM maps of `{self.cam_model}`, its heaviest member."
        )


def open_exploration(config: RunConfig, log: Callable[[str], None] = print) -> Exploration:
    """The run's validation images with its chosen predictor (see the module docstring).

    Raises:
        FileNotFoundError: the run has no ``results/ensemble.json`` yet (notebook 04 writes it).
    """
    # deferred: OpenCV (the dataset's reader) and Keras (the predictions and the registry)
    from hpa_utils.data.dataset import open_dataset
    from hpa_utils.training.predictions import predict_models
    from hpa_utils.training.registry import models_table

    paths = config.paths
    summary_path = paths.results / "ensemble.json"
    if not summary_path.is_file():
        raise FileNotFoundError(
            f"{summary_path}: no chosen predictor yet; run notebook 04 first (hpa run --preset {config.preset})"
        )
    summary = EnsembleSummary.from_dict(json.loads(summary_path.read_text()))
    weights = {m: float(w) for m, w in summary.weights.items() if w > 0}
    total = sum(weights.values())
    members = {m: w / total for m, w in sorted(weights.items(), key=lambda item: (-item[1], item[0]))}
    table = models_table(paths.models).set_index("model")
    missing = [m for m in members if m not in table.index]
    if missing:
        raise FileNotFoundError(f"{paths.models}: the ensemble's models {missing} are not there; re-run hpa run")
    data = training_data(config)
    # stored by notebook 04 (the same models, rows and test-time augmentation): loaded, not predicted again
    probs = predict_models(
        {m: table.loc[m, "path"] for m in members},
        {"val": (data.images, data.val_indices)},
        paths.predictions,
        log=log,
        tta=config.ensemble.tta,
    )["val"]
    p_val = weighted_mean({m: probs[m] for m in members}, members)
    y_val = data.y[data.val_indices].astype(bool)
    source = open_dataset(config.data_dir)
    cam_model = next(iter(members))
    n = len(members)
    return Exploration(
        ids=[source.train_ids[i] for i in data.val_indices],
        y_true=y_val,
        probabilities=p_val,
        predictor="weighted ensemble of " + ("1 model" if n == 1 else f"{n} models"),
        members=members,
        threshold=float(summary.threshold),
        fitted=fit_per_class_thresholds(y_val, p_val),
        images=data.images,
        rows=np.asarray(data.val_indices),
        cam_model=cam_model,
        cam_model_path=Path(table.loc[cam_model, "path"]),
        label=config.label,
    )


# --------------------------------------------------------------------------- what the explorer shows

#: The image filters: name -> what it shows (for the class picked, at the thresholds set).
FILTERS = {
    "all": "every validation image of the class",
    "hits": "images of the class on which it is predicted",
    "misses": "images of the class on which it is not predicted (the surest misses first)",
    "false alarms": "images without the class on which it is predicted (the surest first)",
}


def outcomes(y_true: np.ndarray, y_pred: np.ndarray, class_id: int) -> np.ndarray:
    """Each image's outcome for one class: "hit", "miss", "false alarm" or "true negative"."""
    truth = np.asarray(y_true, dtype=bool)[:, class_id]
    said = np.asarray(y_pred, dtype=bool)[:, class_id]
    return np.select([truth & said, truth, said], ["hit", "miss", "false alarm"], "true negative")


def predicted(probabilities: np.ndarray, thresholds) -> np.ndarray:
    """(N, C) 0/1 predictions at ``thresholds`` (one, or one per class), by the project's one rule."""
    return binarize(probabilities, thresholds)


def select_images(
    y_true: np.ndarray, y_pred: np.ndarray, probabilities: np.ndarray, class_id: int, kind: str = "all"
) -> np.ndarray:
    """The images a filter of :data:`FILTERS` shows for one class, in the order shown.

    Args:
        y_true: (N, C) 0/1 labels.
        y_pred: (N, C) 0/1 predictions (thresholded).
        probabilities: (N, C) the probabilities they were thresholded from (the order).
        class_id: the class picked.
        kind: "all" and "hits" (the most probable first), "misses" (the least probable first: the surest
            mistakes) or "false alarms" (the most probable first).

    Returns:
        Row indices into the arrays.

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in FILTERS:
        raise ValueError(f"filter {kind!r} is not one of {list(FILTERS)}")
    outcome = outcomes(y_true, y_pred, class_id)
    wanted = {"all": ("hit", "miss"), "hits": ("hit",), "misses": ("miss",), "false alarms": ("false alarm",)}[kind]
    rows = np.flatnonzero(np.isin(outcome, wanted))
    p = np.asarray(probabilities, dtype=float)[rows, class_id]
    return rows[np.argsort(p if kind == "misses" else -p, kind="stable")]


@dataclass(frozen=True)
class Scores:
    """F1 of every class and the macro F1 at one set of thresholds."""

    per_class: np.ndarray
    macro: float


def scores_at(y_true: np.ndarray, probabilities: np.ndarray, thresholds) -> Scores:
    """Validation F1 per class and macro F1 with ``thresholds`` (one, or one per class), scored by the project's
    one rule (:func:`~hpa_utils.evaluation.metrics.binarize`: an image with no class at or above its threshold
    gets its most probable one; so a class's threshold can move another class's F1 a little)."""
    per_class = f1_per_class(y_true, binarize(probabilities, thresholds))
    return Scores(per_class, float(per_class.mean()))


def cooccurrence(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """(C, C) counts: row i, column j is the number of images that carry class i and on which j is predicted."""
    truth = np.asarray(y_true, dtype=np.int64)
    said = np.asarray(y_pred, dtype=np.int64)
    return truth.T @ said


def confusions(y_true: np.ndarray, y_pred: np.ndarray, class_id: int) -> pd.DataFrame:
    """What one class is confused with, both ways (its row and column of :func:`cooccurrence`, split).

    Returns:
        One row per class j (index: class id): ``name``; ``predicted_on_true`` (images of the picked class on
        which j is predicted) and ``predicted_on_true_wrong`` (of them, those that do not carry j);
        ``true_on_predicted`` (images the picked class is predicted on that carry j) and
        ``true_on_predicted_false_alarm`` (of them, those that do not carry the picked class: its false alarms,
        by what they really are). ``attrs``: ``n_true``, ``n_predicted`` (images of the class, images it is
        predicted on).
    """
    truth = np.asarray(y_true, dtype=bool)
    said = np.asarray(y_pred, dtype=bool)
    of_class, on_class = truth[:, class_id], said[:, class_id]
    table = pd.DataFrame(
        {
            "name": list(CLASS_NAMES[: truth.shape[1]]),
            "predicted_on_true": (said & of_class[:, None]).sum(axis=0),
            "predicted_on_true_wrong": (said & ~truth & of_class[:, None]).sum(axis=0),
            "true_on_predicted": (truth & on_class[:, None]).sum(axis=0),
            "true_on_predicted_false_alarm": (truth & (on_class & ~of_class)[:, None]).sum(axis=0),
        }
    )
    table.attrs.update(n_true=int(of_class.sum()), n_predicted=int(on_class.sum()))
    return table


def threshold_table(exploration: Exploration, thresholds) -> pd.DataFrame:
    """Per class: validation images, the fitted threshold, the threshold set and its F1, the F1 at the chosen
    global threshold (the static form of the threshold view)."""
    now = scores_at(exploration.y_true, exploration.probabilities, thresholds)
    chosen = scores_at(exploration.y_true, exploration.probabilities, exploration.threshold)
    return pd.DataFrame(
        {
            "class": [f"{c} {CLASS_NAMES[c]}" for c in range(NUM_CLASSES)],
            "val images": exploration.y_true.sum(axis=0).astype(int),
            "fitted threshold": exploration.fitted,
            "threshold": np.broadcast_to(np.asarray(thresholds, dtype=float), (NUM_CLASSES,)),
            "F1": now.per_class,
            f"F1 at {exploration.threshold:.2f}": chosen.per_class,
        }
    ).set_index("class")


def gallery_panels(exploration: Exploration, indices, class_id: int, y_pred: np.ndarray) -> list[dict]:
    """What the explorer's gallery draws for validation images ``indices``: each image, its Grad-CAM map for the
    class (computed here, for these images only), its true classes, the predictor's probabilities and its
    outcome."""
    indices = [int(i) for i in indices]
    cams = exploration.grad_cam(indices, class_id)
    outcome = outcomes(exploration.y_true, y_pred, class_id)
    return [
        {
            "id": exploration.ids[i],
            "image": exploration.image(i),
            "cam": cam,
            "true": np.flatnonzero(exploration.y_true[i]).tolist(),
            "probabilities": exploration.probabilities[i],
            "outcome": str(outcome[i]),
        }
        for i, cam in zip(indices, cams)
    ]

"""Macro F1 as Kaggle scores it, thresholding, the per-image loss, and the Keras F1 metric.

Numpy only, except :func:`keras_f1_metric`, which returns Keras' own
``F1Score`` metric for the per-epoch training curves. Choosing thresholds is
:mod:`hpa_utils.evaluation.thresholds`.
"""

from __future__ import annotations

import numpy as np

from hpa_utils.data.labels import NUM_CLASSES


def as_binary_matrix(y: np.ndarray, name: str) -> np.ndarray:
    """``y`` as a boolean (samples, classes) matrix; ``name`` is how an error names it."""
    y = np.asarray(y)
    if y.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (samples, classes) array, got shape {y.shape}")
    return y.astype(bool)


def f1_per_class(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-class F1 of binary predictions; a class with no true and no predicted
    positives scores 0 (sklearn's ``zero_division=0``).

    Args:
        y_true: (N, C) 0/1 labels.
        y_pred: (N, C) 0/1 predictions (already thresholded).

    Returns:
        (C,) float64 array of F1 scores.
    """
    t = as_binary_matrix(y_true, "y_true")
    p = as_binary_matrix(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    tp = np.sum(t & p, axis=0).astype(np.float64)
    denom = np.sum(t, axis=0) + np.sum(p, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return f1


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro F1 over all classes (columns), as Kaggle scored HPA 2018.

    Equal to ``sklearn.metrics.f1_score(y_true, y_pred, average="macro",
    zero_division=0)`` on binary predictions.
    """
    return float(np.mean(f1_per_class(y_true, y_pred)))


def binarize(probabilities: np.ndarray, thresholds: float | np.ndarray = 0.5, at_least_one: bool = True) -> np.ndarray:
    """Threshold probabilities (N, C) with one global or (C,) per-class thresholds.

    The project's one scoring convention (every score of a predictor, in every table, figure and
    submission, goes through here): every HPA image carries at least one label, so an image with no
    class at or above its threshold gets its single most probable class (``at_least_one``), as the
    submission writer does. ``at_least_one=False`` gives the plain threshold.
    """
    probabilities = np.asarray(probabilities)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim not in (0, 1) or (thresholds.ndim == 1 and thresholds.shape[0] != probabilities.shape[1]):
        raise ValueError(
            f"thresholds must be one number or one per class ({probabilities.shape[1]}), got shape {thresholds.shape}"
        )
    binary = (probabilities >= thresholds).astype(np.uint8)
    if at_least_one and binary.ndim == 2 and binary.shape[0]:
        empty = np.flatnonzero(~binary.any(axis=1))
        binary[empty, probabilities[empty].argmax(axis=1)] = 1
    return binary


def per_image_log_loss(y_true: np.ndarray, probabilities: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Each image's binary cross-entropy, averaged over the classes (Keras' loss, per image)."""
    p = np.clip(np.asarray(probabilities, np.float64), eps, 1 - eps)
    y = np.asarray(y_true, np.float64)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p), axis=1)


#: How the report states the convention, once.
SCORING_RULE = (
    "an image with no class at or above the threshold is given its most probable class (every HPA image has "
    "at least one label, and Kaggle's submission needs one)"
)


def keras_f1_metric(num_classes: int = NUM_CLASSES, threshold: float = 0.5, name: str = "f1"):
    """Keras' own macro F1 metric (``keras.metrics.F1Score``), accumulated over an epoch.

    This is what the training curves plot as train/validation F1; the exact
    validation macro F1 is computed in numpy by :func:`macro_f1` at each epoch end.
    """
    from hpa_utils.backend import keras  # deferred: Keras (the metrics are numpy otherwise)

    return keras.metrics.F1Score(average="macro", threshold=threshold, name=name)

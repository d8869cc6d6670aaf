"""Threshold choices: the fitted global and per-class thresholds, and the study that scores them on held-out data.

Numpy/pandas only; callers pass arrays in. Per-class thresholds fitted on little data overfit:
:func:`threshold_study` shows by how much, on a hold-out set (e.g. one of the :func:`halves` of validation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hpa_utils.evaluation.metrics import as_binary_matrix, binarize, macro_f1

#: Candidate thresholds searched by the threshold fitters.
DEFAULT_THRESHOLD_GRID = np.round(np.arange(0.02, 0.96, 0.01), 2)


def best_global_threshold(
    y_true: np.ndarray, probabilities: np.ndarray, grid: np.ndarray = DEFAULT_THRESHOLD_GRID
) -> tuple[float, float]:
    """The single threshold on ``grid`` that maximises macro F1.

    Returns:
        (threshold, macro F1 at that threshold). Ties go to the threshold nearest 0.5.
    """
    scores = np.array([macro_f1(y_true, binarize(probabilities, t)) for t in grid])
    best = np.flatnonzero(scores == scores.max())
    pick = best[np.argmin(np.abs(np.asarray(grid)[best] - 0.5))]
    return float(grid[pick]), float(scores[pick])


def fit_per_class_thresholds(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    grid: np.ndarray = DEFAULT_THRESHOLD_GRID,
    default: float = 0.5,
) -> np.ndarray:
    """One threshold per class maximising that class's F1 on (y_true, probabilities).

    A class with no positives in ``y_true`` keeps ``default``: there is nothing
    to fit it on. Per-class thresholds fitted on little data overfit; compare them
    on held-out data.

    Returns:
        (C,) float64 thresholds.
    """
    t = as_binary_matrix(y_true, "y_true")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    thresholds = np.full(t.shape[1], float(default))
    for c in range(t.shape[1]):
        if not t[:, c].any():
            continue
        pred = probabilities[:, c][None, :] >= grid[:, None]  # (G, N)
        tp = (pred & t[:, c][None, :]).sum(axis=1)
        denom = pred.sum(axis=1) + t[:, c].sum()
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
        best = np.flatnonzero(f1 == f1.max())
        thresholds[c] = grid[best[np.argmin(np.abs(grid[best] - default))]]
    return thresholds


def threshold_study(
    y_val_fit: np.ndarray,
    p_val_fit: np.ndarray,
    y_holdout: np.ndarray,
    p_holdout: np.ndarray,
    grid: np.ndarray = DEFAULT_THRESHOLD_GRID,
) -> pd.DataFrame:
    """Compare threshold choices fitted on one set and scored on held-out data.

    Rows: (a) the fixed global 0.5; (b) the best single global threshold fitted on the fit set;
    (c) per-class thresholds fitted on the fit set. A large ``fit_f1 - holdout_f1`` gap for (c) is the
    per-class thresholds overfitting the fit set.

    Returns:
        DataFrame with columns ``key`` (the stable machine name: "fixed", "global", "per_class"),
        ``method`` (its label for people), ``thresholds`` (a description), ``fit_f1``, ``holdout_f1`` and
        ``gap``; ``attrs["global_threshold"]`` and ``attrs["per_class_thresholds"]`` hold the fitted values.
    """
    global_t, _ = best_global_threshold(y_val_fit, p_val_fit, grid)
    per_class = fit_per_class_thresholds(y_val_fit, p_val_fit, grid)
    choices = [
        ("fixed", "fixed 0.5", "0.50", 0.5),
        ("global", "best global (fitted)", f"{global_t:.2f}", global_t),
        ("per_class", "per-class (fitted)", f"per class, {per_class.min():.2f}-{per_class.max():.2f}", per_class),
    ]
    rows = []
    for key, method, text, thresholds in choices:
        fit = macro_f1(y_val_fit, binarize(p_val_fit, thresholds))
        holdout = macro_f1(y_holdout, binarize(p_holdout, thresholds))
        rows.append(
            {
                "key": key,
                "method": method,
                "thresholds": text,
                "fit_f1": fit,
                "holdout_f1": holdout,
                "gap": fit - holdout,
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["global_threshold"] = global_t
    table.attrs["per_class_thresholds"] = per_class
    return table


def halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of ``range(n)`` (fit, hold-out), sorted; deterministic for a seed."""
    order = np.random.default_rng([seed, n]).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2 :])


def label_ratio_thresholds(probabilities: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Per-class thresholds that make each class's predicted positive rate on ``probabilities`` match ``rates``.

    What the 1st- and 3rd-place solutions did on the test images: a class seen in 3% of the training
    labels is predicted for the 3% of test images the model ranks highest for it. No labels are needed,
    so the thresholds are set on the very images they are applied to. Class c's threshold is its
    ``round(rate_c * N)``-th largest probability (ties can add images); a rate that rounds to no image
    gives a threshold above every probability.

    Args:
        probabilities: (N, C) probabilities of the images to be thresholded.
        rates: (C,) each class's share of images in the training labels, in [0, 1].

    Returns:
        (C,) float64 thresholds, for :func:`~hpa_utils.evaluation.metrics.binarize`.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    rates = np.asarray(rates, dtype=np.float64)
    if probabilities.ndim != 2 or rates.shape != (probabilities.shape[1],):
        raise ValueError(f"need (N, C) probabilities and C rates, got {probabilities.shape} and {rates.shape}")
    if np.any((rates < 0) | (rates > 1)):
        raise ValueError("label rates must be shares of images, between 0 and 1")
    n = probabilities.shape[0]
    ranked = -np.sort(-probabilities, axis=0)  # each column from the largest down
    counts = np.rint(rates * n).astype(int)
    thresholds = np.full(probabilities.shape[1], np.nextafter(1.0, 2.0))
    positive = counts > 0
    columns = np.flatnonzero(positive)
    thresholds[columns] = ranked[np.minimum(counts[columns], n) - 1, columns]
    return thresholds

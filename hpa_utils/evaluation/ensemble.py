"""Weighted ensembles of predicted probabilities and the shift sweep.

The report (SPEC.md, "What the report did", items 5-6) weights each model by its
validation macro F1 minus a shift of 0.34, averages the predicted probabilities
with those weights and thresholds the average. This module computes the weights,
the averages, the sweep over the shift, the shift at the original's position on the
members' F1 scale (:func:`original_position_shift`), the greedy forward selection of
Caruana et al. (:func:`greedy_selection`), the table that compares single models and
ensembles, and the validation winner that becomes the submission
(:func:`validation_winner`; the threshold choices are :mod:`hpa_utils.evaluation.thresholds`).

Numpy/pandas only; nothing here reads files: callers pass arrays in. Probabilities
are (N, C) arrays; a set of models is a dict ``name -> (N, C) array``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hpa_utils.evaluation.metrics import binarize, macro_f1
from hpa_utils.evaluation.thresholds import DEFAULT_THRESHOLD_GRID, best_global_threshold

#: The report's shift: weight = validation F1 - 0.34.
DEFAULT_SHIFT = 0.34
#: The validation F1 of the report's fine-tuned models (lowest, highest), which its shift of 0.34 was placed below.
ORIGINAL_F1_SPAN = (0.42, 0.47)
#: Greedy forward selection: at most this many additions after the first model.
GREEDY_STEPS = 20
#: Shifts swept by :func:`shift_sweep`: 0.30, 0.31, ..., 0.40 (0.34 and 0.36 exactly).
DEFAULT_SHIFTS = np.round(np.arange(0.30, 0.401, 0.01), 2)

Probabilities = Mapping[str, np.ndarray] | Sequence[np.ndarray]


def _f1_series(f1_scores: Mapping[str, float] | pd.Series | Sequence[float]) -> tuple[pd.Series, bool]:
    """F1 scores as a float Series, and whether the input carried model names."""
    if isinstance(f1_scores, pd.Series):
        series, named = f1_scores.astype(np.float64), True
    elif isinstance(f1_scores, Mapping):
        series, named = pd.Series(dict(f1_scores), dtype=np.float64), True
    else:
        values = np.asarray(f1_scores, dtype=np.float64).ravel()
        series, named = pd.Series(values, index=[f"model {i}" for i in range(values.size)]), False
    if series.empty:
        raise ValueError("no model F1 scores were given: at least one model is required")
    bad = series.index[~np.isfinite(series.to_numpy())]
    if len(bad):
        raise ValueError(f"F1 scores must be finite numbers; not finite for: {', '.join(map(str, bad))}")
    return series, named


def weights_from_f1(
    f1_scores: Mapping[str, float] | pd.Series | Sequence[float], shift: float = DEFAULT_SHIFT
) -> np.ndarray | pd.Series:
    """Ensemble weights as the report computed them: weight = F1 - shift, negatives clipped to 0.

    A warning names every model whose weight was clipped.

    Args:
        f1_scores: validation macro F1 per model: a dict or Series ``name -> F1``, or a sequence.
        shift: subtracted from every F1 (the report used 0.34).

    Returns:
        A Series indexed by model name (same order) for dict/Series input, else an ndarray.

    Raises:
        ValueError: every weight is zero (the shift is at or above every model's F1).
    """
    series, named = _f1_series(f1_scores)
    raw = series - float(shift)
    if not (raw > 0).any():
        raise ValueError(
            f"shift {shift} is at or above every model's F1 (highest {series.max():.4f}): "
            "all ensemble weights would be zero; use a smaller shift"
        )
    clipped = raw.index[raw < 0]
    if len(clipped):
        warnings.warn(
            f"F1 below the shift {shift}: weight clipped to 0 for {', '.join(map(str, clipped))}",
            UserWarning,
            stacklevel=2,
        )
    weights = raw.clip(lower=0.0)
    return weights if named else weights.to_numpy()


def _aligned(probabilities: Probabilities, weights) -> tuple[list, list[np.ndarray], np.ndarray]:
    """Model names, their arrays and their weights in one order; checks shapes and weights."""
    if isinstance(probabilities, Mapping):
        names, arrays = list(probabilities), [np.asarray(p) for p in probabilities.values()]
    else:
        arrays = [np.asarray(p) for p in probabilities]
        names = [f"model {i}" for i in range(len(arrays))]
    if not arrays:
        raise ValueError("no model probabilities were given: at least one model is required")
    if isinstance(weights, Mapping) and not isinstance(probabilities, Mapping):
        raise ValueError("weights by name need probabilities by name (a dict); else give a sequence of weights")
    if isinstance(weights, Mapping | pd.Series) and isinstance(probabilities, Mapping):
        weights = pd.Series(weights, dtype=np.float64)
        missing = [n for n in names if n not in weights.index]
        if missing:
            raise ValueError(f"no weight given for model(s) {', '.join(map(str, missing))}")
        unknown = [n for n in weights.index if n not in probabilities and weights[n] != 0]
        if unknown:
            raise ValueError(f"weight given for model(s) without probabilities: {', '.join(map(str, unknown))}")
        weights = weights.reindex(names)
    weights = np.asarray(weights, dtype=np.float64).ravel()
    if weights.size != len(arrays):
        raise ValueError(f"got {weights.size} weights for {len(arrays)} models")
    if not np.all(np.isfinite(weights)) or (weights < 0).any():
        raise ValueError(f"weights must be finite and >= 0, got {weights.tolist()}")
    if weights.sum() <= 0:
        raise ValueError("the weights sum to zero: at least one model needs a positive weight")
    reference = arrays[0].shape
    for name, array in zip(names, arrays, strict=True):
        if array.ndim != 2 or array.shape != reference:
            raise ValueError(
                f"probabilities of {name} have shape {array.shape}; expected (samples, classes) = {reference}"
            )
    return names, arrays, weights


def weighted_mean(probabilities: Probabilities, weights) -> np.ndarray:
    """Weighted average of the models' predicted probabilities; weights are normalised by their sum.

    Args:
        probabilities: dict ``name -> (N, C)`` or a list of (N, C) arrays.
        weights: one weight >= 0 per model: a dict/Series by name (for dict probabilities) or a
            sequence in the models' order. Models with weight 0 do not contribute.

    Raises:
        ValueError: shapes differ (the message names the model), or the weights are invalid.
    """
    _, arrays, weights = _aligned(probabilities, weights)
    total = np.zeros(arrays[0].shape, dtype=np.float64)
    for array, weight in zip(arrays, weights, strict=True):
        if weight > 0:
            total += weight * array
    return total / weights.sum()


def equal_weight_mean(probabilities: Probabilities) -> np.ndarray:
    """Plain average of the models' probabilities (the report's 32-model ensemble)."""
    count = len(probabilities)
    return weighted_mean(probabilities, np.ones(count))


def model_f1_scores(probabilities: Mapping[str, np.ndarray], y_true: np.ndarray, threshold=0.5) -> pd.Series:
    """Macro F1 of each model at ``threshold`` (one number or one per class), as a Series by name."""
    return pd.Series(
        {name: macro_f1(y_true, binarize(p, threshold)) for name, p in probabilities.items()},
        dtype=np.float64,
    )


def shift_sweep(
    val_probs: Mapping[str, np.ndarray],
    val_f1: Mapping[str, float] | pd.Series,
    y_val: np.ndarray,
    shifts: Sequence[float] = DEFAULT_SHIFTS,
    threshold: float | np.ndarray | str = 0.5,
    extra_sets: Mapping[str, tuple[Mapping[str, np.ndarray], np.ndarray]] | None = None,
) -> pd.DataFrame:
    """Macro F1 of the F1-minus-shift ensemble for each shift, on validation and on extra labelled sets.

    The weights always come from ``val_f1`` (validation only); ``extra_sets`` (e.g. ``{"public": (probs,
    y), "private": (probs, y)}``) are only scored. Shifts at which every weight is zero give a row of NaN.
    ``threshold="fit"``: each shift's ensemble is thresholded at its own best global threshold on
    validation (the rule the chosen ensemble is then scored with), recorded in the ``threshold`` column.

    Returns:
        DataFrame with columns ``shift``, ``n_models`` (models with nonzero weight), ``threshold``,
        ``val_f1`` and ``<set>_f1`` per extra set, one row per shift (rounded to 6 decimals, so 0.34 is
        exactly 0.34).
    """
    f1, _ = _f1_series(val_f1)
    names = list(val_probs)
    missing = [n for n in names if n not in f1.index]
    if missing:
        raise ValueError(f"no validation F1 given for model(s) {', '.join(map(str, missing))}")
    f1 = f1.reindex(names)
    extra_sets = dict(extra_sets or {})
    if "val" in extra_sets:
        raise ValueError("'val' is the validation set's name; give the extra sets other names")
    sets = {"val": (val_probs, y_val), **extra_sets}
    rows = []
    for shift in np.round(np.asarray(shifts, dtype=np.float64), 6):
        row = {"shift": float(shift)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                weights = weights_from_f1(f1, shift)
            except ValueError:
                weights = None
        row["n_models"] = 0 if weights is None else int((weights > 0).sum())
        row["threshold"] = math.nan
        for set_name, (probs, y) in sets.items():
            if weights is None:
                row[f"{set_name}_f1"] = math.nan
                continue
            used = weights[weights > 0]
            absent = [n for n in used.index if n not in probs]
            if absent:
                raise ValueError(f"set {set_name!r} has no probabilities for model(s) {', '.join(map(str, absent))}")
            mean = weighted_mean({n: probs[n] for n in used.index}, used)
            if set_name == "val":
                row["threshold"] = fit_threshold(y, mean, threshold)
            row[f"{set_name}_f1"] = macro_f1(y, binarize(mean, row["threshold"]))
        rows.append(row)
    return pd.DataFrame(rows)


def select_models(
    val_f1: Mapping[str, float] | pd.Series,
    k: int | None = None,
    min_f1: float | None = None,
    groups: Mapping[str, Hashable] | None = None,
) -> list[str]:
    """Choose ensemble members from their validation F1 alone.

    Selection never looks at test labels (public/private): choosing members by their test score would
    make that score optimistic. Keeps the ``k`` best by validation F1 and/or those with F1 >= ``min_f1``.

    Args:
        val_f1: validation F1 per model.
        k, min_f1: keep the k best, and/or those with F1 >= min_f1.
        groups: model -> group (e.g. its base variant): at most one model per group, its best by
            ``val_f1`` (ties: the first in ``val_f1``'s order), before ``k`` and ``min_f1`` apply; so the
            members are different networks, not successive fine-tuning stages of one.

    Returns:
        Model names, best validation F1 first (ties keep the input order).
    """
    if k is None and min_f1 is None:
        raise ValueError("give k (keep the k best models) and/or min_f1 (keep models with F1 >= min_f1)")
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    f1, _ = _f1_series(val_f1)
    ranked = f1.iloc[np.argsort(-f1.to_numpy(), kind="stable")]
    if groups is not None:
        missing = [str(n) for n in ranked.index if n not in groups]
        if missing:
            raise ValueError(f"no group given for model(s) {', '.join(missing)}")
        first = ~pd.Series([groups[n] for n in ranked.index]).duplicated().to_numpy()
        ranked = ranked[first]
    if min_f1 is not None:
        ranked = ranked[ranked >= min_f1]
    if k is not None:
        ranked = ranked.iloc[:k]
    return list(ranked.index)


def original_position_shift(
    f1_scores: Mapping[str, float] | pd.Series | Sequence[float],
    original_shift: float = DEFAULT_SHIFT,
    original_span: tuple[float, float] = ORIGINAL_F1_SPAN,
) -> float:
    """The shift placed on the members' F1 scale where the report's 0.34 was on its models' 0.42-0.47.

    The report subtracted 0.34 from models scoring 0.42-0.47: its shift lay
    ``(0.42 - 0.34) / (0.47 - 0.42) = 1.6`` F1 spans below its lowest model. The same position on the
    members' scale is::

        shift = min_F1 - (0.42 - 0.34) / (0.47 - 0.42) * (max_F1 - min_F1)
              = min_F1 - 1.6 * (max_F1 - min_F1)

    so every member keeps a positive weight and the best member's weight is to the worst's as in the report
    (0.13 / 0.08 = 1.625). A fixed 0.34 means nothing on a run whose models score 0.25-0.30 (no weight is
    positive) or 0.60-0.70 (nearly equal weights); the position does.

    Degenerate cases: equal scores (no span to place it on) give 0, so weights = F1, all equal; a shift
    below 0 (the members' scores spread wider than 1.6 spans above 0) is raised to 0, so the weights are the
    F1 themselves (never F1 plus something).

    Args:
        f1_scores: the members' validation F1 (the F1 the weights are computed from).
        original_shift, original_span: the report's shift and its models' (lowest, highest) F1.

    Returns:
        The shift, rounded to 6 decimals (as :func:`shift_sweep` records its shifts).
    """
    f1, _ = _f1_series(f1_scores)
    low, high = original_span
    if not high > low:
        raise ValueError(f"the original span must have its highest F1 above its lowest, got {original_span}")
    below = (low - original_shift) / (high - low)  # 1.6 for the report: spans of F1 below the lowest model
    lowest, highest = float(f1.min()), float(f1.max())
    if highest - lowest <= 1e-12:
        return 0.0
    return round(max(0.0, lowest - below * (highest - lowest)), 6)


def compare_models(
    probs: Mapping[str, Mapping[str, np.ndarray]],
    labels: Mapping[str, np.ndarray],
    ensembles: Mapping[str, Mapping[str, float] | pd.Series] | None = None,
    threshold: float | np.ndarray | str = 0.5,
    singles: bool = True,
) -> pd.DataFrame:
    """Macro F1 of every single model and of every ensemble on every split, each at its threshold.

    Args:
        probs: ``split -> {model name -> (N, C) probabilities}``, e.g. splits "val", "public", "private".
        labels: ``split -> (N, C)`` true labels, for every split in ``probs``.
        ensembles: ``ensemble name -> {model name -> weight}``; models left out weigh 0.
            Use ``{m: 1 for m in models}`` for an equal-weight ensemble.
        threshold: one number for every row, or ``"fit"``: each row's own best global threshold on
            the ``"val"`` split (the same rule for every predictor).
        singles: False leaves the single models' rows out (the ensembles' rows only).

    Returns:
        DataFrame with columns ``name``, ``kind`` ("single"/"ensemble"), ``n_models``, ``threshold`` and
        ``<split>_f1``; a model absent from a split scores NaN there.
    """
    missing = [s for s in probs if s not in labels]
    if missing:
        raise ValueError(f"no labels given for split(s) {', '.join(missing)}")
    if threshold == "fit" and "val" not in probs:
        raise ValueError("threshold='fit' fits each row's threshold on the 'val' split, which was not given")
    model_names = list(dict.fromkeys(name for split in probs.values() for name in split))
    predictors = [(name, "single", {name: 1.0}) for name in model_names] if singles else []
    for name, weights in (ensembles or {}).items():
        weights = pd.Series(weights, dtype=np.float64)
        predictors.append((name, "ensemble", weights[weights != 0]))
    rows = []
    for name, kind, weights in predictors:
        row = {"name": name, "kind": kind, "n_models": len(weights), "threshold": math.nan}
        means = {}
        for split, split_probs in probs.items():
            absent = [m for m in weights.keys() if m not in split_probs]
            if absent and kind == "ensemble":
                raise ValueError(f"ensemble {name!r}: split {split!r} has no probabilities for {', '.join(absent)}")
            means[split] = None if absent else weighted_mean({m: split_probs[m] for m in weights.keys()}, weights)
        if isinstance(threshold, str):  # "fit": this predictor's own best threshold on validation
            cut = fit_threshold(labels["val"], means["val"], threshold) if means["val"] is not None else math.nan
            row["threshold"] = cut
        else:  # one number (recorded) or one per class (not a column)
            cut = threshold
            row["threshold"] = float(threshold) if np.ndim(threshold) == 0 else math.nan
        for split, mean in means.items():
            row[f"{split}_f1"] = math.nan if mean is None else macro_f1(labels[split], binarize(mean, cut))
        rows.append(row)
    return pd.DataFrame(rows)


def fit_threshold(y_val: np.ndarray, p_val: np.ndarray, setting: float | str = "fit") -> float:
    """The global threshold a predictor is scored with: ``"fit"``, its best on validation; else the number."""
    if isinstance(setting, str):
        if setting != "fit":
            raise ValueError(f"threshold must be a number or 'fit', got {setting!r}")

        return best_global_threshold(y_val, p_val)[0]
    return float(setting)


def evaluation_sets(
    probs: Mapping[str, Mapping[str, np.ndarray]],
    y_val: np.ndarray,
    y_test: np.ndarray | None = None,
    usage: np.ndarray | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Regroup predictions into the labelled sets the study scores: "val", and, when the test
    labels are known (the synthetic solution.csv), Kaggle's "public" and "private" parts.

    Args:
        probs: ``"val"``/``"test"`` -> model -> probabilities.
        y_val: validation labels.
        y_test, usage: test labels and their Usage ("Public"/"Private"), or None.

    Returns:
        (set -> model -> probabilities, set -> labels).
    """
    sets = {"val": dict(probs["val"])}
    labels = {"val": np.asarray(y_val)}
    if y_test is not None and usage is not None and "test" in probs:
        for part in ("Public", "Private"):
            mask = np.asarray(usage) == part
            if mask.any():
                sets[part.lower()] = {name: p[mask] for name, p in probs["test"].items()}
                labels[part.lower()] = np.asarray(y_test)[mask]
    return sets, labels


def sweep_shifts(f1_scores: Mapping[str, float] | pd.Series, step: float = 0.01) -> np.ndarray:
    """The shifts to sweep: the report's 0.30-0.40 always, widened to cover 0 up to the best model's F1
    (so runs whose models score below the report's shift still show where weights vanish)."""
    f1, _ = _f1_series(f1_scores)
    top = max(float(f1.max()), 0.40)
    return np.unique(np.round(np.concatenate([DEFAULT_SHIFTS, np.arange(0.0, top, step)]), 2))


@dataclass(frozen=True)
class WeightChoice:
    """The chosen ensemble: shift, weights, threshold and, when the setting was overruled, why."""

    shift: float
    weights: pd.Series
    threshold: float
    note: str = ""

    @property
    def members(self) -> list[str]:
        return [str(m) for m in self.weights.index[self.weights > 0]]


def choose_weights(
    f1_scores: Mapping[str, float] | pd.Series,
    sweep: pd.DataFrame,
    shift_setting: float | str = "fit",
    min_members: int = 2,
) -> WeightChoice:
    """The ensemble's shift, weights and threshold, chosen on validation only.

    Args:
        f1_scores: validation F1 of the chosen models.
        sweep: :func:`shift_sweep` over those models (its ``threshold`` column: each shift's threshold).
        shift_setting: a number (the report: 0.34); ``"fit"``: the shift with the best validation
            F1 in ``sweep`` among those that keep ``min_members`` positive weights (ties: the smallest);
            ``"original"``: :func:`original_position_shift` of ``f1_scores`` (the report's 0.34 placed on
            these models' F1 scale; include it in the sweep's shifts to score it exactly).
        min_members: an ensemble has at least this many members (fewer only if fewer models were given).
            A fixed shift that leaves fewer is lowered to the largest swept shift that keeps them, and the
            choice says so in its ``note``; never silently.

    Returns:
        A :class:`WeightChoice`; when no swept shift keeps enough members, equal weights with a NaN shift
        and threshold (the caller fits the threshold on the equal-weight average) and a note.
    """
    f1, _ = _f1_series(f1_scores)
    need = min(min_members, len(f1))
    valid = sweep.dropna(subset=["val_f1"])
    enough = valid[valid["n_models"] >= need]
    if enough.empty:  # e.g. a smoke run whose models learned nothing: every F1 is 0
        note = f"no swept shift keeps {need} models with a positive weight (best F1 {f1.max():.3f}); equal weights"
        warnings.warn(note, UserWarning, stacklevel=2)
        return WeightChoice(shift=math.nan, weights=pd.Series(1.0, index=f1.index), threshold=math.nan, note=note)
    note = ""
    if shift_setting == "fit":
        row = enough.loc[enough["val_f1"].idxmax()]
    else:
        wanted = original_position_shift(f1) if shift_setting == "original" else float(shift_setting)
        kept = int((f1 > wanted).sum())
        if kept >= need:
            hit = valid[(valid["shift"] - wanted).abs() < 1e-9]
            row = hit.iloc[0] if not hit.empty else None
            if row is None:  # not swept: score it as the sweep would, at the threshold of the nearest swept shift
                row = enough.iloc[(enough["shift"] - wanted).abs().argmin()].copy()
                row["shift"] = wanted
        else:
            row = enough.loc[enough["shift"].idxmax()]
            note = (
                f"the set shift {wanted:g} leaves {kept} model(s) with a positive weight; lowered to "
                f"{float(row['shift']):g}, the largest swept shift that keeps {need}"
            )
            warnings.warn(note, UserWarning, stacklevel=2)
    shift = float(row["shift"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        weights = weights_from_f1(f1, shift)
    threshold = float(row["threshold"]) if "threshold" in row and not pd.isna(row["threshold"]) else 0.5
    return WeightChoice(shift=shift, weights=weights, threshold=threshold, note=note)


def _grid_f1(y_true: np.ndarray, probabilities: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Macro F1 of ``binarize(probabilities, t)`` for every ``t`` of ``grid`` (ascending) at once: equal to
    ``[macro_f1(y_true, binarize(probabilities, t)) for t in grid]``, the project's scoring rule included (an
    image with no class at or above ``t`` gets its most probable class), by counting instead of thresholding
    once per ``t``: ``p >= grid[g]`` exactly when ``g`` is below ``searchsorted(grid, p, "right")``."""
    truth = np.asarray(y_true).astype(bool)
    p = np.asarray(probabilities)
    n_images, n_classes = p.shape
    size = len(grid) + 1
    offsets = size * np.arange(n_classes)

    def at_or_above(index: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """(G, C): per threshold and class, the (weighted) count of images whose ``index`` is above ``g``."""
        hist = np.bincount((index + offsets).ravel(), weights=weights, minlength=size * n_classes)
        tail = np.cumsum(hist.reshape(n_classes, size)[:, ::-1], axis=1)[:, ::-1]  # tail[c, j]: index >= j
        return tail[:, 1:].T

    index = np.searchsorted(grid, p, side="right")  # (N, C): p >= grid[g] for g < index
    predicted = at_or_above(index)
    true_positive = at_or_above(index, truth.ravel().astype(np.float64))
    if n_images:  # the images with no class at or above t (their highest p below t) get their top class
        top = p.argmax(axis=1)
        below = np.searchsorted(grid, p.max(axis=1), side="right")  # empty for g >= below
        cells = top * size + below
        hits = truth[np.arange(n_images), top].astype(np.float64)
        for counts, weights in ((predicted, None), (true_positive, hits)):
            hist = np.bincount(cells, weights=weights, minlength=size * n_classes).reshape(n_classes, size)
            counts += np.cumsum(hist, axis=1)[:, : size - 1].T.astype(counts.dtype)
    tp = true_positive.astype(np.float64)
    denom = truth.sum(axis=0)[None, :] + predicted.astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    return np.array([np.mean(np.ascontiguousarray(row)) for row in f1])


def _best_on_grid(y_true: np.ndarray, probabilities: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    """(threshold, macro F1) of the best threshold on ``grid``; ties go to the one nearest 0.5, as
    :func:`~hpa_utils.evaluation.thresholds.best_global_threshold`."""
    order = np.argsort(grid, kind="stable")
    grid = grid[order]
    scores = _grid_f1(y_true, probabilities, grid)
    best = np.flatnonzero(scores == scores.max())
    pick = best[np.argmin(np.abs(grid[best] - 0.5))]
    return float(grid[pick]), float(scores[pick])


@dataclass(frozen=True)
class GreedySelection:
    """The result of :func:`greedy_selection`.

    Attributes:
        counts: model -> how many times it was picked, in the order of first pick.
        history: one row per pick: ``step`` (0: the first model), ``added``, ``n_models`` (distinct models so
            far), ``size`` (picks so far), ``threshold`` and ``val_f1`` of the ensemble after that pick.
        threshold: the final ensemble's threshold on validation; ``val_f1`` its validation macro F1.
        stopped: why the selection stopped: ``"no improvement"`` or ``"max steps"``.
    """

    counts: pd.Series
    history: pd.DataFrame
    threshold: float
    val_f1: float
    stopped: str

    @property
    def weights(self) -> pd.Series:
        """Model -> count / total count (sums to 1)."""
        return self.counts / self.counts.sum()

    @property
    def members(self) -> list[str]:
        return [str(m) for m in self.counts.index]


def greedy_selection(
    probabilities: Mapping[str, np.ndarray],
    y_val: np.ndarray,
    max_steps: int = GREEDY_STEPS,
    threshold: float | str = "fit",
    grid: np.ndarray = DEFAULT_THRESHOLD_GRID,
    tolerance: float = 1e-12,
) -> GreedySelection:
    """Greedy forward ensemble selection with replacement, on validation.

    Caruana, Niculescu-Mizil, Crew and Ksikes (2004), "Ensemble selection from libraries of models", ICML:
    start from the best single model; at each step add, with replacement (a model may be added again, which
    raises its weight), the model whose addition gives the ensemble (the plain mean of the picks) the best
    validation macro F1; stop when no addition improves it (by more than ``tolerance``) or after
    ``max_steps`` additions. Weights = picks per model / total picks. Several top solutions of the Kaggle HPA
    competition ensembled their models this way.

    Every ensemble is scored at its own best global threshold on validation (``threshold="fit"``: the best of
    ``grid``, ties nearest 0.5, the comparison's rule) or at a fixed number. The validation score of the
    result is fitted on validation twice over (the picks and the threshold), so optimistic: compare it on
    held-out data before trusting a small gain.

    Deterministic: models are tried in the order of their names and a tie keeps the first, so ties go to the
    model whose name sorts first.

    Args:
        probabilities: model -> (N, C) validation probabilities.
        y_val: (N, C) validation labels.
        max_steps: at most this many additions after the first model (Caruana et al.: until the score stops
            improving or the library is exhausted; 20 bounds the work and the overfitting).
        threshold: ``"fit"`` or one global threshold.
        grid: the thresholds ``"fit"`` searches.
        tolerance: an addition must raise validation F1 by more than this.

    Returns:
        A :class:`GreedySelection`.
    """
    if not probabilities:
        raise ValueError("no model probabilities were given: at least one model is required")
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}")
    if isinstance(threshold, str) and threshold != "fit":
        raise ValueError(f"threshold must be a number or 'fit', got {threshold!r}")
    names = sorted(probabilities, key=str)
    arrays = {name: np.asarray(probabilities[name], dtype=np.float64) for name in names}
    y_val = np.asarray(y_val)
    shapes = {name: a.shape for name, a in arrays.items() if a.shape != y_val.shape}
    if shapes:
        raise ValueError(f"probabilities must have the labels' shape {y_val.shape}; got {shapes}")
    grid = np.asarray(grid, dtype=np.float64) if isinstance(threshold, str) else np.array([float(threshold)])

    def best_addition(total: np.ndarray | None, size: int) -> tuple[str, float, float]:
        best = (names[0], -math.inf, math.nan)
        for name in names:
            mean = arrays[name] if total is None else (total + arrays[name]) / (size + 1)
            cut, score = _best_on_grid(y_val, mean, grid)
            if score > best[1]:
                best = (name, score, cut)
        return best

    first, score, cut = best_addition(None, 0)
    total, counts = arrays[first].copy(), {first: 1}
    history = [{"step": 0, "added": first, "n_models": 1, "size": 1, "threshold": cut, "val_f1": score}]
    stopped = "max steps"
    for step in range(1, max_steps + 1):
        name, new_score, new_cut = best_addition(total, step)
        if not new_score > score + tolerance:
            stopped = "no improvement"
            break
        total += arrays[name]
        counts[name] = counts.get(name, 0) + 1
        score, cut = new_score, new_cut
        history.append(
            {"step": step, "added": name, "n_models": len(counts), "size": step + 1, "threshold": cut, "val_f1": score}
        )
    if max_steps == 0:
        stopped = "max steps"
    return GreedySelection(
        counts=pd.Series(counts, dtype=np.int64),
        history=pd.DataFrame(history),
        threshold=cut,
        val_f1=score,
        stopped=stopped,
    )


@dataclass(frozen=True)
class Winner:
    """The validation winner among candidate predictors (:func:`validation_winner`).

    Attributes:
        name: the winner; ``val_f1`` its validation macro F1.
        runner_up: the best of the other candidates (None when there is no other); ``runner_up_f1`` its F1.
        margin: ``val_f1 - runner_up_f1`` (>= 0; None without a runner-up).
    """

    name: str
    val_f1: float
    runner_up: str | None
    runner_up_f1: float | None
    margin: float | None


def validation_winner(val_f1: Mapping[str, float] | pd.Series) -> Winner:
    """The candidate with the best validation macro F1: the predictor validation chooses for the submission.

    Args:
        val_f1: candidate -> validation macro F1 (each at its own threshold, by the same rule), in order of
            preference: a tie goes to the earlier (e.g. the best single model before the ensembles: the
            simpler predictor). NaN scores (a predictor not scored) are skipped.

    Returns:
        A :class:`Winner`: the winner, the runner-up and the margin between them.
    """
    scores = pd.Series(val_f1, dtype=np.float64).dropna()
    if scores.empty:
        raise ValueError("no candidate has a validation score")
    order = np.argsort(-scores.to_numpy(), kind="stable")
    ranked = scores.iloc[order]
    name, best = str(ranked.index[0]), float(ranked.iloc[0])
    if len(ranked) == 1:
        return Winner(name, best, None, None, None)
    second = float(ranked.iloc[1])
    return Winner(name, best, str(ranked.index[1]), second, best - second)


def leaderboard_entries(
    comparison: pd.DataFrame, ensembles: Mapping[str, Mapping[str, float]], submitted: str | None = None
) -> list[tuple[str, str, str, dict[str, float]]]:
    """The submissions of the leaderboard table: the submitted predictor first (the run's
    ``submission.csv``), then every other ensemble, then the best single model on validation unless it is
    the one submitted (all chosen on validation only). Each entry: (file stem, the comparison row's name,
    description, model -> weight).

    Args:
        comparison: :func:`compare_models`' table (``kind``, ``name``, ``val_f1``; a boolean ``submitted``
            column marks the submitted row when ``submitted`` is None).
        ensembles: ensemble name -> weights, as given to :func:`compare_models`.
        submitted: the comparison row's name of the predictor to submit; None: the row marked in the
            ``submitted`` column, else the first ensemble.
    """
    singles = comparison[comparison["kind"] == "single"]
    best = singles.loc[singles["val_f1"].idxmax(), "name"] if not singles.empty else None
    if submitted is None and "submitted" in comparison.columns:
        marked = comparison.loc[comparison["submitted"].fillna(False).astype(bool), "name"]
        submitted = str(marked.iloc[0]) if not marked.empty else None
    chosen_on_validation = submitted is not None
    if submitted is None:
        submitted = next(iter(ensembles), best)
    if submitted not in ensembles and submitted not in set(singles["name"]):
        raise ValueError(f"the submitted predictor {submitted!r} is neither an ensemble nor a single model")

    def describe(name, members, single):
        if single:
            return f"best single model on validation: {name}"
        count = sum(1 for w in members.values() if w > 0)
        return f"{name}: {count} model{'s' if count != 1 else ''}"

    entries = []
    candidates = [(name, dict(members), False) for name, members in ensembles.items()]
    if best is not None:
        candidates.append((best, {best: 1.0}, True))
    if submitted not in ensembles and submitted != best:
        candidates.append((submitted, {submitted: 1.0}, True))
    for name, members, single in sorted(candidates, key=lambda c: c[0] != submitted):  # the submitted first
        if name == submitted:
            stem, description = "submission", describe(name, members, single)
            description += " (submitted: best on validation)" if chosen_on_validation else ""
        elif single:
            stem, description = f"single_{name}", describe(name, members, single)
        else:
            stem = "ensemble_" + "".join(c if c.isalnum() else "_" for c in name).strip("_")
            description = describe(name, members, single)
        entries.append((stem, name, description, members))
    return entries

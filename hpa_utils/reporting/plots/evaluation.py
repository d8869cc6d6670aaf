"""Ensemble and threshold figures: shift sweep, single models vs ensembles, threshold study, per-class F1."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from hpa_utils.data.labels import NUM_CLASSES
from hpa_utils.reporting.plots.style import (
    _PALETTE,
    _as_class_series,
    _as_counts,
    _class_label,
    _palette,
    _require_columns,
    _row_names,
    _styled,
    _wrap,
)

_SERIES_LABELS = {
    "val_f1": "validation",
    "public_f1": "Kaggle public",
    "private_f1": "Kaggle private",
    "fit_f1": "fit set (thresholds chosen here)",
    "holdout_f1": "hold-out set",
}


@_styled
def plot_shift_sweep(
    df: pd.DataFrame,
    marked_shifts: Sequence[float] = (0.34, 0.36),
    title: str = "Ensemble score vs weight shift",
) -> Figure:
    """Macro F1 of the weighted ensemble as the shift (weight = val F1 - shift) varies.

    Args:
        df: DataFrame with column ``shift`` and one or more score columns:
            ``val_f1`` and optionally ``public_f1``, ``private_f1`` (any other
            column ending in ``_f1`` is drawn too); one row per shift.
        marked_shifts: shifts drawn as dotted vertical lines (the report's
            0.34 and 0.36).
        title: figure title.

    Returns:
        The figure (one axes).
    """
    _require_columns(df, ["shift"], "df")
    columns = [c for c in ("val_f1", "public_f1", "private_f1") if c in df.columns]
    columns += [c for c in df.columns if c.endswith("_f1") and c not in columns]
    if not columns:
        raise ValueError(f"df needs at least one score column ending in _f1 (e.g. val_f1); it has {list(df.columns)}")
    data = df.sort_values("shift")
    fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
    marker = "o" if len(data) <= 30 else None
    for color, column in zip(_palette(len(columns)), columns, strict=True):
        ax.plot(
            data["shift"],
            data[column],
            marker=marker,
            markersize=4,
            color=color,
            label=_SERIES_LABELS.get(column, column),
        )
    label_box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}
    for k, shift in enumerate(marked_shifts):
        ax.axvline(shift, color="black", linestyle=":", linewidth=1.2, label="marked shifts" if k == 0 else None)
        ax.annotate(
            f"shift {shift:g}",
            (shift, 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            xytext=(-2, -4),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=9.5,
            bbox=label_box,
        )
    ax.margins(y=0.2)
    ax.set_xlabel("shift subtracted from validation F1")
    ax.set_ylabel("macro F1")
    ax.legend(loc="best")
    ax.set_title(title)
    return fig


@_styled
def plot_ensemble_comparison(df: pd.DataFrame, title: str = "Single models vs ensembles") -> Figure:
    """Grouped horizontal bars of validation / public / private macro F1; ensembles highlighted.

    Args:
        df: one row per model or ensemble; the name in column ``name`` or
            ``model`` (else the index); score columns among ``val_f1``,
            ``public_f1``, ``private_f1`` (NaN = not scored); column ``kind``
            ``"single"`` or ``"ensemble"``.
        title: figure title.

    Returns:
        The figure (one axes).
    """
    _require_columns(df, ["kind"], "df")
    metrics = [c for c in ("val_f1", "public_f1", "private_f1") if c in df.columns]
    if not metrics:
        raise ValueError(f"df needs at least one of val_f1, public_f1, private_f1; it has {list(df.columns)}")
    kinds = set(df["kind"].astype(str))
    if not kinds <= {"single", "ensemble"}:
        raise ValueError(f"kind must be 'single' or 'ensemble', got {sorted(kinds - {'single', 'ensemble'})}")
    names = [_wrap(n, 34) for n in _row_names(df, ("name", "model"))]
    is_ensemble = (df["kind"].astype(str) == "ensemble").to_numpy()
    values = df[metrics].to_numpy(dtype=float)
    # Each row gets one bar slot per score it has (a single model often has validation only).
    slots = np.maximum(np.isfinite(values).sum(axis=1), 1)
    gap = 0.7
    ends = np.cumsum(slots + gap)
    starts = ends - slots - gap / 2
    centers = starts + slots / 2
    fig, ax = plt.subplots(figsize=(10, max(3.5, 0.27 * ends[-1] + 1.6)), layout="constrained")
    for k in np.flatnonzero(is_ensemble):
        ax.axhspan(ends[k] - slots[k] - gap, ends[k], color="#fff2b3", zorder=0)
    colors = dict(zip(metrics, _palette(len(metrics)), strict=True))
    for start, row_values in zip(starts, values, strict=True):
        present = [(m, v) for m, v in zip(metrics, row_values, strict=True) if np.isfinite(v)]
        for slot, (metric, value) in enumerate(present):
            bars = ax.barh(start + slot + 0.5, value, 0.85, color=colors[metric], zorder=2)
            ax.bar_label(bars, [f"{value:.3f}"], padding=2, fontsize=9)
    ax.set_yticks(centers, names)
    for tick, ensemble in zip(ax.get_yticklabels(), is_ensemble, strict=True):
        if ensemble:
            tick.set_fontweight("bold")
    ax.set_ylim(ends[-1] - gap / 2, -gap / 2)
    top = np.nanmax(values) if np.isfinite(values).any() else 1.0
    ax.set_xlim(0, top * 1.15)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("macro F1")
    ax.set_ylabel("model / ensemble")
    handles = [Patch(color=colors[m], label=_SERIES_LABELS[m]) for m in metrics]
    handles.append(Patch(color="#fff2b3", label="ensemble (bold)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    ax.set_title(title)
    return fig


@_styled
def plot_threshold_study(df: pd.DataFrame, title: str = "Threshold choice: fitted vs hold-out") -> Figure:
    """Grouped bars of macro F1 per thresholding method, on the fit set and on a hold-out set.

    Args:
        df: one row per method (e.g. "global 0.5", "best global", "per-class");
            the name in column ``method`` (else the index); columns ``fit_f1``
            (macro F1 where the thresholds were chosen) and/or ``holdout_f1``.
        title: figure title.

    Returns:
        The figure (one axes).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    metrics = [c for c in ("fit_f1", "holdout_f1") if c in df.columns]
    if not metrics:
        raise ValueError(f"df needs column fit_f1 and/or holdout_f1; it has {list(df.columns)}")
    names = [_wrap(n, 16) for n in _row_names(df, ("method",))]
    x = np.arange(len(df))
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(7, min(12, 1.6 * len(df) + 3)), 5.5), layout="constrained")
    for k, (color, metric) in enumerate(zip(_palette(len(metrics)), metrics, strict=True)):
        values = df[metric].to_numpy(dtype=float)
        bars = ax.bar(
            x + (k - (len(metrics) - 1) / 2) * width,
            np.nan_to_num(values),
            width,
            color=color,
            label=_SERIES_LABELS[metric],
        )
        ax.bar_label(bars, ["" if np.isnan(v) else f"{v:.3f}" for v in values], padding=2, fontsize=9.5)
    ax.set_xticks(x, names)
    top = np.nanmax(df[metrics].to_numpy(dtype=float)) if df[metrics].notna().any().any() else 1.0
    ax.set_ylim(0, top * 1.25)
    ax.grid(axis="x", visible=False)
    ax.set_xlabel("thresholding method")
    ax.set_ylabel("macro F1")
    ax.legend(loc="upper left", ncol=len(metrics))
    ax.set_title(title)
    return fig


@_styled
def plot_per_class_f1(
    f1,
    counts=None,
    title: str = "Per-class F1 (validation)",
    sort: str | None = None,
) -> Figure:
    """Horizontal bars of F1 per class, with the macro mean as a dotted line.

    Args:
        f1: per-class F1 in 0..1: (28,) array or Series indexed by class id;
            NaN (class not scored) is shown as "n/a".
        counts: optional training images per class (same formats); shown in
            the class label as "(n=...)".
        title: figure title.
        sort: ``"id"``, ``"count"`` (most frequent first; needs ``counts``) or
            ``"f1"`` (best first). Default: ``"count"`` with counts, else ``"id"``.

    Returns:
        The figure (one axes).
    """
    scores = _as_class_series(f1, "f1")
    if ((scores < 0) | (scores > 1)).any():
        raise ValueError("f1 values must lie in 0..1 (NaN allowed for a class not scored)")
    count_series = None if counts is None else _as_counts(counts, "counts")
    sort = sort or ("count" if count_series is not None else "id")
    if sort == "count" and count_series is None:
        raise ValueError("sort='count' needs counts")
    if sort not in ("id", "count", "f1"):
        raise ValueError(f"sort must be 'id', 'count' or 'f1', got {sort!r}")
    if sort == "id":
        order = list(range(NUM_CLASSES))
    elif sort == "count":
        order = list(count_series.sort_values(ascending=False, kind="stable").index)
    else:
        order = list(scores.sort_values(ascending=False, kind="stable", na_position="last").index)
    labels = [_class_label(i) for i in order]
    if count_series is not None:
        labels = [f"{label} (n={count_series[i]:,.0f})" for label, i in zip(labels, order, strict=True)]
    values = scores[order].to_numpy()
    y = np.arange(NUM_CLASSES)
    fig, ax = plt.subplots(figsize=(10, 9), layout="constrained")
    ax.barh(y, np.nan_to_num(values), 0.75, color=sns.color_palette(_PALETTE)[0])
    for yi, v in zip(y, values, strict=True):
        ax.text((0 if np.isnan(v) else v) + 0.01, yi, "n/a" if np.isnan(v) else f"{v:.2f}", va="center", fontsize=9)
    mean = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    if np.isfinite(mean):
        name = "mean of scored classes" if np.isnan(values).any() else "macro F1"
        ax.axvline(mean, color="black", linestyle=":", label=f"{name} = {mean:.3f}")
        ax.legend(loc="lower right")
    ax.set_yticks(y, labels)
    ax.set_ylim(NUM_CLASSES - 0.4, -0.6)
    ax.set_xlim(0, 1.08)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("F1 score")
    ax.set_ylabel("class")
    ax.set_title(title)
    return fig

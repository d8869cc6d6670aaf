"""Ensemble and threshold figures: shift sweep, single models vs ensembles, threshold study, per-class F1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
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
    "fit_f1": "fit set (thresholds chosen here)",
    "holdout_f1": "hold-out set",
}
#: How the test set's two parts are named: by where their labels come from (``synthetic``), or, when the
#: caller does not say (None), without claiming a source.
_TEST_PART_LABELS = {
    True: "{part} (synthetic solution)",
    False: "Kaggle {part}",
    None: "{part} (test labels)",
}


def set_labels(synthetic: bool | None = None) -> dict[str, str]:
    """Legend names of the score columns: ``val_f1``, ``public_f1``, ``private_f1``, ``fit_f1``, ``holdout_f1``.

    Args:
        synthetic: True when the test labels are the synthetic dataset's ``solution.csv`` ("public (synthetic
            solution)"), False for Kaggle's own ("Kaggle public"); None (the default) derives nothing and
            names no source ("public (test labels)"). A notebook passes ``run.config.synthetic``.

    Returns:
        Column -> legend name.
    """
    if synthetic not in _TEST_PART_LABELS:
        raise ValueError(f"synthetic must be True, False or None, got {synthetic!r}")
    parts = {f"{part}_f1": _TEST_PART_LABELS[synthetic].format(part=part) for part in ("public", "private")}
    return {**_SERIES_LABELS, **parts}


def _series_labels(synthetic: bool | None, overrides) -> dict[str, str]:
    labels = set_labels(synthetic)
    if overrides is not None:
        labels.update({str(k): str(v) for k, v in dict(overrides).items()})
    return labels


@_styled
def plot_shift_sweep(
    df: pd.DataFrame,
    marked_shifts: Sequence[float] = (0.34, 0.36),
    title: str = "Ensemble score vs weight shift",
    *,
    synthetic: bool | None = None,
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """Macro F1 of the weighted ensemble as the shift (weight = val F1 - shift) varies.

    Args:
        df: DataFrame with column ``shift`` and one or more score columns:
            ``val_f1`` and optionally ``public_f1``, ``private_f1`` (any other
            column ending in ``_f1`` is drawn too); one row per shift.
        marked_shifts: shifts drawn as dotted vertical lines (the report's
            0.34 and 0.36).
        title: figure title.
        synthetic: where the public/private labels come from (:func:`set_labels`): True "public
            (synthetic solution)", False "Kaggle public", None (default) "public (test labels)".
        labels: optional column -> legend name, over those of ``synthetic``.

    Returns:
        The figure (one axes).
    """
    _require_columns(df, ["shift"], "df")
    columns = [c for c in ("val_f1", "public_f1", "private_f1") if c in df.columns]
    columns += [c for c in df.columns if c.endswith("_f1") and c not in columns]
    if not columns:
        raise ValueError(f"df needs at least one score column ending in _f1 (e.g. val_f1); it has {list(df.columns)}")
    data = df.sort_values("shift")
    names = _series_labels(synthetic, labels)
    fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
    marker = "o" if len(data) <= 30 else None
    for color, column in zip(_palette(len(columns)), columns, strict=True):
        ax.plot(
            data["shift"],
            data[column],
            marker=marker,
            markersize=4,
            color=color,
            label=names.get(column, column),
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


#: Above this many rows the comparison is drawn as a dot plot (one row per predictor) instead of grouped bars.
DOT_PLOT_ROWS = 12


def _comparison_dots(names, is_ensemble, values, metrics, title, series_names) -> Figure:
    """One row per model or ensemble, one marker per score; ensembles on a highlighted band, best first."""
    order = np.argsort(-np.nan_to_num(values[:, 0], nan=-1.0), kind="stable")
    fig, ax = plt.subplots(figsize=(10, 1.8 + 0.3 * len(names)), layout="constrained")
    markers = dict(zip(metrics, ("o", "s", "D"), strict=False))
    colors = dict(zip(metrics, _palette(len(metrics)), strict=True))
    for row, index in enumerate(order):
        if is_ensemble[index]:
            ax.axhspan(row - 0.5, row + 0.5, color="#fff2b3", zorder=0)
        finite = values[index][np.isfinite(values[index])]
        if finite.size:
            ax.hlines(row, finite.min(), finite.max(), color="0.6", linewidth=1, zorder=1)
        for metric, value in zip(metrics, values[index], strict=True):
            if np.isfinite(value):
                ax.plot(value, row, markers[metric], color=colors[metric], markersize=6, zorder=2)
    ax.set_yticks(range(len(order)), [names[i] for i in order])
    for tick, index in zip(ax.get_yticklabels(), order, strict=True):
        if is_ensemble[index]:
            tick.set_fontweight("bold")
    ax.set_ylim(len(order) - 0.5, -0.5)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("macro F1")
    ax.set_ylabel("model / ensemble (best on validation first)")
    handles = [Line2D([], [], marker=markers[m], color=colors[m], linestyle="", label=series_names[m]) for m in metrics]
    handles.append(Patch(color="#fff2b3", label="ensemble (bold)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    ax.set_title(title)
    return fig


@_styled
def plot_ensemble_comparison(
    df: pd.DataFrame,
    title: str = "Single models vs ensembles",
    *,
    synthetic: bool | None = None,
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """Grouped horizontal bars of validation / public / private macro F1; ensembles highlighted.

    Args:
        df: one row per model or ensemble; the name in column ``name`` or
            ``model`` (else the index); score columns among ``val_f1``,
            ``public_f1``, ``private_f1`` (NaN = not scored); column ``kind``
            ``"single"`` or ``"ensemble"``.
        title: figure title.
        synthetic: names of the public/private scores, as :func:`plot_shift_sweep`.
        labels: optional column -> legend name, over those of ``synthetic``.

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
    if len(df) > DOT_PLOT_ROWS:  # many models (e.g. 32): one row each, a marker per score, readable at report size
        return _comparison_dots(names, is_ensemble, values, metrics, title, _series_labels(synthetic, labels))
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
    names = _series_labels(synthetic, labels)
    handles = [Patch(color=colors[m], label=names[m]) for m in metrics]
    handles.append(Patch(color="#fff2b3", label="ensemble (bold)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    ax.set_title(title)
    return fig


@_styled
def plot_threshold_study(
    df: pd.DataFrame,
    title: str = "Threshold choice: fitted vs hold-out",
    *,
    synthetic: bool | None = None,
    labels: Mapping[str, str] | None = None,
) -> Figure:
    """Grouped bars of macro F1 per thresholding method, on the fit set and on a hold-out set.

    Args:
        df: one row per method (e.g. "global 0.5", "best global", "per-class");
            the name in column ``method`` (else the index); columns ``fit_f1``
            (macro F1 where the thresholds were chosen) and/or ``holdout_f1``;
            optionally ``held_out``, the hold-out set's name (``"private"``, ``"public"``
            or e.g. ``"validation half"``), which names the bars.
        title: figure title.
        synthetic: names of a public/private hold-out set, as :func:`plot_shift_sweep`.
        labels: optional column -> legend name, over those derived here.

    Returns:
        The figure (one axes).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    metrics = [c for c in ("fit_f1", "holdout_f1") if c in df.columns]
    if not metrics:
        raise ValueError(f"df needs column fit_f1 and/or holdout_f1; it has {list(df.columns)}")
    names = [_wrap(n, 16) for n in _row_names(df, ("method",))]
    series = _series_labels(synthetic, None)
    held_out = df["held_out"].dropna().astype(str).unique() if "held_out" in df.columns else []
    if len(held_out) == 1:
        part = held_out[0]
        if part in ("public", "private"):
            series["fit_f1"] = "validation (thresholds fitted here)"
            series["holdout_f1"] = f"hold-out: {series[f'{part}_f1']}"
        else:
            series["holdout_f1"] = f"hold-out: {part}"
    series.update({} if labels is None else {str(k): str(v) for k, v in dict(labels).items()})
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
            label=series[metric],
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
    *,
    val_counts=None,
) -> Figure:
    """Horizontal bars of F1 per class, with the macro F1 as a dotted line.

    With ``val_counts`` a class that no validation image carries is shown "n/a" (grey, no bar): it has no
    F1 of its own, but macro F1 averages all 28 classes and counts it as 0 (as
    :func:`hpa_utils.evaluation.metrics.f1_per_class` scores a class with no true and no predicted
    positive), which the figure says; the mean over the classes present is drawn too.

    Args:
        f1: per-class F1 in 0..1: (28,) array or Series indexed by class id;
            NaN (class not scored) is shown as "n/a".
        counts: optional *training* images per class (same formats), shown as "(train n=...)". Kept for
            older callers; pass ``val_counts`` instead.
        title: figure title.
        sort: ``"id"``, ``"count"`` (most frequent first; needs counts) or
            ``"f1"`` (best first). Default: ``"count"`` with counts, else ``"id"``.
        val_counts: validation images carrying each class (same formats), shown as "(n=...)".

    Returns:
        The figure (one axes).
    """
    scores = _as_class_series(f1, "f1")
    if ((scores < 0) | (scores > 1)).any():
        raise ValueError("f1 values must lie in 0..1 (NaN allowed for a class not scored)")
    if counts is not None and val_counts is not None:
        raise ValueError("pass val_counts (validation images per class), not also counts (training images)")
    count_series = None
    if val_counts is not None:
        count_series = _as_counts(val_counts, "val_counts")
        bad = [i for i in range(NUM_CLASSES) if count_series[i] == 0 and scores[i] > 0]
        if bad:
            raise ValueError(
                f"classes {bad} have F1 > 0 but no validation image in val_counts: "
                "val_counts must count the images F1 was scored on"
            )
    elif counts is not None:
        count_series = _as_counts(counts, "counts")
    absent = np.zeros(NUM_CLASSES, dtype=bool) if val_counts is None else (count_series == 0).to_numpy()  # by class id
    sort = sort or ("count" if count_series is not None else "id")
    if sort == "count" and count_series is None:
        raise ValueError("sort='count' needs val_counts (or counts)")
    if sort not in ("id", "count", "f1"):
        raise ValueError(f"sort must be 'id', 'count' or 'f1', got {sort!r}")
    if sort == "id":
        order = list(range(NUM_CLASSES))
    elif sort == "count":
        order = list(count_series.sort_values(ascending=False, kind="stable").index)
    else:
        ranked = scores.where(~absent)
        order = list(ranked.sort_values(ascending=False, kind="stable", na_position="last").index)
    labels = [_class_label(i) for i in order]
    if count_series is not None:
        prefix = "n" if val_counts is not None else "train n"
        labels = [f"{label} ({prefix}={count_series[i]:,.0f})" for label, i in zip(labels, order, strict=True)]
    values = scores[order].to_numpy()
    missing = absent[order] | np.isnan(values)
    y = np.arange(NUM_CLASSES)
    fig, ax = plt.subplots(figsize=(10, 9.5), layout="constrained")
    ax.barh(y[~missing], values[~missing], 0.75, color=sns.color_palette(_PALETTE)[0])
    for yi, v, gone in zip(y, values, missing, strict=True):
        text, style = ("n/a", {"color": "0.45", "fontstyle": "italic"}) if gone else (f"{v:.2f}", {})
        ax.text((0 if gone else v) + 0.01, yi, text, va="center", fontsize=9, **style)
    if absent.any():
        macro = float(np.mean(np.nan_to_num(scores.to_numpy())))  # an absent class counts 0
        present = scores.to_numpy()[~absent]
        ax.axvline(macro, color="black", linestyle=":", label=f"macro F1 (all {NUM_CLASSES} classes) = {macro:.3f}")
        if np.isfinite(present).any():
            mean = float(np.nanmean(present))
            ax.axvline(
                mean,
                color="0.45",
                linestyle="--",
                label=f"mean of the {len(present)} classes in validation = {mean:.3f}",
            )
        ax.legend(loc="lower right", framealpha=0.9)
        n_absent = int(absent.sum())
        ax.annotate(
            f"n/a: {n_absent} class{'es' if n_absent != 1 else ''} with no validation image. Macro F1 averages all "
            f"{NUM_CLASSES} classes and counts such a class as 0.",
            (0.5, 1),
            xycoords="axes fraction",
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=9.5,
            color="0.3",
        )
        ax.set_title(title, pad=20)
    else:
        mean = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        if np.isfinite(mean):
            name = "mean of scored classes" if np.isnan(values).any() else "macro F1"
            ax.axvline(mean, color="black", linestyle=":", label=f"{name} = {mean:.3f}")
            ax.legend(loc="lower right", framealpha=0.9)
        ax.set_title(title)
    ax.set_yticks(y, labels)
    for tick, gone in zip(ax.get_yticklabels(), missing, strict=True):
        if gone:
            tick.set_color("0.45")
    ax.set_ylim(NUM_CLASSES - 0.4, -0.6)
    ax.set_xlim(0, 1.08)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("F1 score")
    ax.set_ylabel("class" + (" (n: validation images carrying it)" if val_counts is not None else ""))
    return fig

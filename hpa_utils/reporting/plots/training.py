"""Training figures: training curves, one model's stages on one epoch axis, validation F1 per model, and the
base variant x stage heatmap.

Stages (their order and labels) come from :mod:`hpa_utils.config.stages`, the project's one table
of stages; that module is plain data and imports no deep-learning library.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from hpa_utils.config.stages import STAGE_LABELS, STAGE_ORDER, stage_rank
from hpa_utils.reporting.plots.style import (
    _PALETTE,
    _epoch_axis,
    _palette,
    _require_columns,
    _styled,
    _two_decimal_axis,
    _value_limits,
)

_HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "f1", "val_f1")


def _stage_order(stages) -> list[str]:
    """The distinct stages in report order (known stages first, then others as they come)."""
    present = dict.fromkeys(str(s) for s in stages)
    return sorted(present, key=stage_rank)


#: The four panels of a training-curve figure: (history column, panel title, y label), row by row.
_PANELS = (
    ("loss", "train loss", "binary cross-entropy"),
    ("val_loss", "validation loss", "binary cross-entropy"),
    ("f1", "train F1", "macro F1"),
    ("val_f1", "validation F1", "macro F1"),
)
_EXACT = "val_macro_f1"
_MARKERS_UP_TO = 25  # epochs: a series this short (or a single epoch) is drawn with a marker per epoch


def _history_items(histories) -> dict[str, pd.DataFrame]:
    if isinstance(histories, pd.DataFrame):
        histories = {"model": histories}
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError("histories must be a non-empty dict of model name -> history DataFrame")
    for name, history in histories.items():
        _require_columns(history, _HISTORY_COLUMNS, f"history of {name!r}")
        if history.empty:
            raise ValueError(f"history of {name!r} has no epoch")
    return {str(name): history.sort_values("epoch") for name, history in histories.items()}


def _has_exact(history: pd.DataFrame) -> bool:
    return _EXACT in history.columns and bool(history[_EXACT].notna().any())


def _darker(color, amount: float = 0.45) -> tuple:
    """``color`` mixed with black: the exact macro F1's dashes stay visible on top of the Keras F1 line."""
    return tuple(float(c) * (1 - amount) for c in to_rgb(color))


def _draw_history(axes, x, history: pd.DataFrame, color, marker: str | None, label: str) -> Line2D:
    """The four curves of one history at positions ``x``; the exact macro F1 dashed on the validation-F1
    panel. Returns the train-loss line (labelled ``label``), the legend's handle for this series."""
    first = None
    for ax, (column, _, _) in zip(axes.flat, _PANELS, strict=True):
        (line,) = ax.plot(x, history[column], color=color, marker=marker, markersize=5, linewidth=1.8, zorder=2)
        first = first or line
    first.set_label(label)
    if _has_exact(history):
        axes[1, 1].plot(
            x,
            history[_EXACT],
            color=_darker(color),
            linestyle="--",
            linewidth=1.3,
            marker="D" if marker else None,
            markersize=7,
            markerfacecolor="none",
            markeredgewidth=1.2,
            zorder=3,
        )
    return first


def _exact_handles(histories, marker: str | None, prefix: str = "") -> list[Line2D]:
    """The key to the validation-F1 panel's two line styles; none when no exact macro F1 is drawn."""
    exact = [h for h in histories if _has_exact(h)]
    if not exact:
        return []
    same = all(np.nanmax(np.abs(h[_EXACT] - h["val_f1"]).to_numpy(dtype=float), initial=0) < 5e-4 for h in exact)
    return [
        Line2D(
            [],
            [],
            color="0.35",
            marker=marker,
            markersize=5,
            linewidth=1.8,
            label=f"{prefix}Keras F1Score (whole epoch)",
        ),
        Line2D(
            [],
            [],
            color="0.15",
            linestyle="--",
            linewidth=1.3,
            marker="D" if marker else None,
            markersize=7,
            markerfacecolor="none",
            label=f"{prefix}exact macro F1" + (" (= Keras F1 here)" if same else ""),
        ),
    ]


def _finish_panels(axes, rows: list[list], headroom: float = 0.0) -> None:
    """Titles, labels, and y axes per row (shared): the data's range, at least 0.04, two-decimal ticks."""
    for ax, (_, panel_title, ylabel) in zip(axes.flat, _PANELS, strict=True):
        ax.set_title(panel_title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("epoch")
        ax.tick_params(axis="x", labelbottom=True)
        _two_decimal_axis(ax.yaxis)
    for row, values in zip(axes, rows, strict=True):
        row[0].set_ylim(*_value_limits(np.concatenate([np.asarray(v, dtype=float) for v in values]), headroom=headroom))


def _row_values(histories) -> list[list]:
    """The values each row of panels shows (losses; F1 with the exact macro F1)."""
    losses = [h[c] for h in histories for c in ("loss", "val_loss")]
    scores = [h[c] for h in histories for c in ("f1", "val_f1", _EXACT) if c in h.columns]
    return [losses, scores]


def _draw_replicates(axes, histories: Sequence[pd.DataFrame], color) -> None:
    """Other training seeds' curves of one model: thin, faint lines in its colour, under its own."""
    for history in histories:
        history = history.sort_values("epoch")
        for ax, (column, _, _) in zip(axes.flat, _PANELS, strict=True):
            ax.plot(history["epoch"], history[column], color=color, linewidth=1.0, alpha=0.35, zorder=1)


@_styled
def plot_training_curves(histories, title: str = "Training curves", replicates=None) -> Figure:
    """The report's four curves per model: train/validation loss and F1 per epoch.

    Every series is visible: a model trained for one epoch (or up to 25) is drawn with a marker per
    epoch; the exact macro F1 is dashed in a darker shade, with hollow diamonds, on top of the Keras F1.
    Y axes span at least 0.04 and are labelled with two decimals; epochs are integer ticks.

    Args:
        histories: dict model name -> history DataFrame (or a single DataFrame),
            one row per epoch with columns ``epoch`` (1-based), ``loss``,
            ``val_loss``, ``f1``, ``val_f1`` and optionally ``val_macro_f1``
            (exact macro F1 on the whole validation set), drawn dashed in a
            darker shade of the model's colour on the validation-F1 panel.
        title: figure title.
        replicates: optional dict model name -> the histories of the same model trained with the run's
            other training seeds, drawn as faint lines in the model's colour (the seed spread).

    Returns:
        The figure: a 2x2 grid (train loss, validation loss, train F1,
        validation F1); losses share a y axis, and so do the F1 panels.
    """
    histories = _history_items(histories)
    replicates = {str(name): list(others) for name, others in (replicates or {}).items() if len(others)}
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), sharex=True, sharey="row", layout="constrained")
    colors = _palette(len(histories))
    handles = []
    markers = []
    for color, (name, history) in zip(colors, histories.items(), strict=True):
        marker = "o" if len(history) <= _MARKERS_UP_TO else None
        markers.append(marker)
        handles.append(_draw_history(axes, history["epoch"], history, color, marker, name))
        _draw_replicates(axes, replicates.get(name, []), color)
    every = [*histories.values(), *(h for others in replicates.values() for h in others)]
    first = min(int(h["epoch"].min()) for h in every)
    last = max(int(h["epoch"].max()) for h in every)
    _epoch_axis(axes[0, 0], first, last)  # the x axis is shared by all four panels
    _finish_panels(axes, _row_values(every))
    keys = _exact_handles(histories.values(), "o" if "o" in markers else None)
    if replicates:
        seeds = 1 + max(len(others) for others in replicates.values())
        keys.append(
            Line2D(
                [],
                [],
                color="0.35",
                linewidth=1.0,
                alpha=0.35,
                label=f"the other {seeds - 1} of {seeds} training seeds",
            )
        )
    if keys:
        axes[1, 1].legend(handles=keys, loc="best", framealpha=0.9)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), title="model")
    fig.suptitle(title)
    return fig


def _stage_entries(histories_by_stage) -> list[tuple[str, str | None, pd.DataFrame]]:
    """(stage, model name or None, history) in report order, from stage -> history or (name, history)."""
    if not isinstance(histories_by_stage, Mapping) or not histories_by_stage:
        raise ValueError("histories_by_stage must be a non-empty dict of stage -> history (or (model, history))")
    by_stage = {str(stage): value for stage, value in histories_by_stage.items()}
    entries = []
    for stage in _stage_order(by_stage):
        value = by_stage[stage]
        name, history = value if isinstance(value, tuple) else (None, value)
        _require_columns(history, _HISTORY_COLUMNS, f"history of stage {stage!r}")
        if history.empty:
            raise ValueError(f"history of stage {stage!r} has no epoch")
        entries.append((stage, None if name is None else str(name), history.sort_values("epoch")))
    return entries


@_styled
def plot_stage_chain(
    histories_by_stage, title: str = "Base model, then fine-tuning stages A, B and C, on one epoch axis"
) -> Figure:
    """One model's whole training on one continuous epoch axis: the base model's epochs, then each stage's.

    Epochs are numbered on across stages (base 1..n, stage A n+1.., and so on); each stage is a shaded,
    labelled span in its colour (the colours of :func:`plot_model_scores`), separated by vertical lines,
    and a thin grey line joins the stages. Every epoch has a marker, so a one-epoch stage shows. The four
    panels are those of :func:`plot_training_curves`, the exact validation macro F1 dashed as there.

    Args:
        histories_by_stage: stage (``"base"``, ``"A"``, ``"B"``, ``"C"``) -> history DataFrame, or ->
            ``(model name, history)`` as :attr:`hpa_utils.studies.training.FineTunedModels.stage_histories`;
            columns as :func:`plot_training_curves`, ``epoch`` counting from 1 within the stage. Drawn in
            report order whatever the dict's order; a stage may be missing.
        title: figure title.

    Returns:
        The figure: a 2x2 grid (train loss, validation loss, train F1, validation F1).
    """
    entries = _stage_entries(histories_by_stage)
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), sharex=True, sharey="row", layout="constrained")
    colors = _palette(len(entries))
    shifted, spans, handles = [], [], []
    offset = 0
    for color, (stage, name, history) in zip(colors, entries, strict=True):
        x = history["epoch"].to_numpy() + offset
        n = len(history)
        label = STAGE_LABELS.get(stage, stage)
        label += f" ({name + ', ' if name else ''}{n} epoch{'s' if n != 1 else ''})"
        handles.append(_draw_history(axes, x, history, color, "o", label))
        shifted.append(history.assign(epoch=x))
        spans.append((stage, offset + 1, int(x.max()), color))
        offset = int(x.max())
    chain = pd.concat(shifted, ignore_index=True)
    for ax, (column, _, _) in zip(axes.flat, _PANELS, strict=True):
        ax.plot(chain["epoch"], chain[column], color="0.6", linewidth=1, zorder=1)
        for k, (stage, start, end, color) in enumerate(spans):
            ax.axvspan(start - 0.5, end + 0.5, color=color, alpha=0.12, linewidth=0, zorder=0)
            if k:
                ax.axvline(start - 0.5, color="0.4", linewidth=1, zorder=1)
            ax.annotate(
                "base" if stage == STAGE_ORDER[0] else stage,
                ((start + end) / 2, 1),
                xycoords=("data", "axes fraction"),
                xytext=(0, -4),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=10,
                fontweight="bold",
                color=_darker(color, 0.3),
            )
    _epoch_axis(axes[0, 0], 1, offset)
    _finish_panels(axes, _row_values(shifted), headroom=0.15)  # room at the top for the stage names
    for ax in axes[1]:
        ax.set_xlabel("epoch (numbered on across the stages)")
    handles += _exact_handles(
        shifted, "o", prefix="validation F1: "
    )  # in the figure's legend: the panel's top holds the stage names
    fig.legend(handles=handles, loc="outside lower center", ncol=2, title="stage (colour) and line style")
    fig.suptitle(title)
    return fig


@_styled
def plot_model_scores(table: pd.DataFrame, title: str = "Validation macro F1 per model") -> Figure:
    """Bars of validation macro F1 per model, coloured by fine-tuning stage; with several training seeds
    (a ``seed`` column), the bar is their mean and a dot marks each seed.

    Args:
        table: the table of trained models (:func:`hpa_utils.training.registry.models_table`):
            columns ``model`` and ``val_macro_f1``, and optionally ``stage`` (``base``, ``A``,
            ``B``, ``C``) and ``variant`` (the base variant the model descends from). With both
            ``variant`` and ``stage`` the bars are grouped by base variant; otherwise one bar per model.
        title: figure title.

    Returns:
        The figure (one axes).
    """
    _require_columns(table, ["model", "val_macro_f1"], "table")
    if table.empty:
        raise ValueError("table has no rows")
    has_stage = "stage" in table.columns
    stages = _stage_order(table["stage"]) if has_stage else []
    colors = dict(zip(stages, _palette(max(len(stages), 1)), strict=False))
    if has_stage and "variant" in table.columns:
        scores = table.pivot_table(
            index="variant", columns=table["stage"].astype(str), values="val_macro_f1", aggfunc="mean"
        ).reindex(columns=stages)
        fig, ax = plt.subplots(figsize=(max(8, min(12, 1.2 * len(scores) + 3)), 5.5), layout="constrained")
        x = np.arange(len(scores))
        width = 0.8 / len(stages)
        for k, stage in enumerate(stages):
            values = scores[stage].to_numpy()
            bars = ax.bar(
                x + (k - (len(stages) - 1) / 2) * width,
                np.nan_to_num(values),
                width,
                color=colors[stage],
                label=STAGE_LABELS.get(stage, stage),
            )
            ax.bar_label(bars, ["" if np.isnan(v) else f"{v:.3f}" for v in values], rotation=90, padding=2, fontsize=9)
            _seed_dots(ax, table, scores.index, stage, x + (k - (len(stages) - 1) / 2) * width)
        ax.set_xticks(x, [str(b) for b in scores.index])
        ax.set_xlabel("base model")
        ax.grid(axis="x", visible=False)
        top = np.nanmax(scores.to_numpy())
    else:
        names = [str(m) for m in table["model"]]
        values = table["val_macro_f1"].to_numpy(dtype=float)
        fig, ax = plt.subplots(figsize=(max(8, min(12, 0.45 * len(names) + 3)), 5.5), layout="constrained")
        bar_colors = (
            [colors[str(s)] for s in table["stage"]] if has_stage else [sns.color_palette(_PALETTE)[0]] * len(names)
        )
        bars = ax.bar(np.arange(len(names)), np.nan_to_num(values), 0.7, color=bar_colors)
        ax.bar_label(bars, ["" if np.isnan(v) else f"{v:.3f}" for v in values], rotation=90, padding=2, fontsize=9)
        ax.set_xticks(
            np.arange(len(names)),
            names,
            rotation=45 if max(map(len, names)) > 3 else 0,
            ha="right" if max(map(len, names)) > 3 else "center",
        )
        ax.set_xlabel("model")
        ax.grid(axis="x", visible=False)
        if has_stage:
            ax.legend(
                handles=[Patch(color=colors[s], label=STAGE_LABELS.get(s, s)) for s in stages],
                title="stage",
                loc="upper left",
            )
        top = np.nanmax(values)
    if has_stage and "variant" in table.columns:
        handles, _ = ax.get_legend_handles_labels()
        seeds = _seed_count(table)
        if seeds > 1:
            handles.append(
                Line2D([], [], color="0.2", marker="o", linestyle="none", markersize=4,
                       label=f"each of {seeds} training seeds (bar: mean)")
            )  # fmt: skip
        ax.legend(handles=handles, title="stage", ncol=min(len(handles), 4), loc="upper left")
    ax.set_ylim(0, (top if np.isfinite(top) and top > 0 else 1) * 1.3)
    ax.set_ylabel("validation macro F1")
    ax.set_title(title)
    return fig


def _seed_count(table: pd.DataFrame) -> int:
    return int(table["seed"].nunique()) if "seed" in table.columns else 1


def _seed_dots(ax, table: pd.DataFrame, variants, stage: str, x) -> None:
    """Each training seed's score of ``stage`` per base variant, as dots on its bar (several seeds only)."""
    if _seed_count(table) < 2:
        return
    rows = table[table["stage"].astype(str) == stage]
    for position, variant in zip(x, variants, strict=True):
        values = rows.loc[rows["variant"] == variant, "val_macro_f1"].to_numpy(dtype=float)
        ax.plot(np.full(len(values), position), values, "o", color="0.2", markersize=3.5, zorder=4)


@_styled
def plot_stage_heatmap(table: pd.DataFrame, title: str = "Validation macro F1: base variant x stage") -> Figure:
    """Annotated heatmap of validation macro F1, base variants (rows) by stage (columns).

    Args:
        table: the table of trained models: columns ``variant``, ``stage`` (``base``, ``A``,
            ``B``, ``C``) and ``val_macro_f1``; duplicates of a (variant, stage) pair are
            averaged; a missing pair is left blank.
        title: figure title.

    Returns:
        The figure (heatmap axes and colour-bar axes).
    """
    _require_columns(table, ["variant", "stage", "val_macro_f1"], "table")
    if table.empty:
        raise ValueError("table has no rows")
    stages = _stage_order(table["stage"])
    grid = (
        table.assign(stage=table["stage"].astype(str))
        .pivot_table(index="variant", columns="stage", values="val_macro_f1", aggfunc="mean")
        .reindex(columns=stages)
    )
    annot: pd.DataFrame | bool = True
    seeds = table["seed"].nunique() if "seed" in table.columns else 1
    if seeds > 1:  # each cell: the mean over the training seeds, and below it their range
        scores = table.assign(stage=table["stage"].astype(str))
        low, high = (
            scores.pivot_table(index="variant", columns="stage", values="val_macro_f1", aggfunc=how).reindex(
                columns=stages
            )
            for how in ("min", "max")
        )
        annot = grid.copy().astype(object)
        for row in grid.index:
            for col in grid.columns:
                mean = grid.at[row, col]
                annot.at[row, col] = (
                    "" if pd.isna(mean) else f"{mean:.3f}\n{low.at[row, col]:.3f}–{high.at[row, col]:.3f}"
                )
        title = f"{title} (mean over {seeds} training seeds; their range below)"
    grid.columns = ["\n".join(textwrap.wrap(STAGE_LABELS.get(s, s), width=18, break_on_hyphens=False)) for s in stages]
    fig, ax = plt.subplots(figsize=(max(7, 1.9 * len(stages) + 3), 0.7 * len(grid) + 2.8), layout="constrained")
    sns.heatmap(
        grid,
        annot=annot.to_numpy() if isinstance(annot, pd.DataFrame) else annot,
        fmt="" if isinstance(annot, pd.DataFrame) else ".3f",
        cmap="viridis",
        ax=ax,
        linewidths=1,
        linecolor="white",
        annot_kws={"fontsize": 10},
        cbar_kws={"label": "validation macro F1"},
    )
    ax.tick_params(axis="y", labelrotation=0)
    ax.tick_params(axis="x", labelrotation=0)
    ax.set_xlabel("fine-tuning stage")
    ax.set_ylabel("base model")
    ax.set_title(title)
    return fig

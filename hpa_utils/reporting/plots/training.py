"""Training figures: training curves, validation F1 per model, and the base variant x stage heatmap.

Stages (their order and labels) come from :mod:`hpa_utils.training.stages`, the project's one table
of stages; that module is plain data and imports no deep-learning library.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from hpa_utils.reporting.plots.style import _PALETTE, _palette, _require_columns, _styled
from hpa_utils.training.stages import STAGE_LABELS, stage_rank

_HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "f1", "val_f1")


def _stage_order(stages) -> list[str]:
    """The distinct stages in report order (known stages first, then others as they come)."""
    present = dict.fromkeys(str(s) for s in stages)
    return sorted(present, key=stage_rank)


@_styled
def plot_training_curves(histories, title: str = "Training curves") -> Figure:
    """The report's four curves per model: train/validation loss and F1 per epoch.

    Args:
        histories: dict model name -> history DataFrame (or a single DataFrame),
            one row per epoch with columns ``epoch`` (1-based), ``loss``,
            ``val_loss``, ``f1``, ``val_f1`` and optionally ``val_macro_f1``
            (exact macro F1 on the whole validation set), drawn dashed in the
            model's colour on the validation-F1 panel.
        title: figure title.

    Returns:
        The figure: a 2x2 grid (train loss, validation loss, train F1,
        validation F1); losses share a y axis, and so do the F1 panels.
    """
    if isinstance(histories, pd.DataFrame):
        histories = {"model": histories}
    if not isinstance(histories, Mapping) or not histories:
        raise ValueError("histories must be a non-empty dict of model name -> history DataFrame")
    for name, history in histories.items():
        _require_columns(history, _HISTORY_COLUMNS, f"history of {name!r}")
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5), sharex=True, sharey="row", layout="constrained")
    panels = [
        (axes[0, 0], "loss", "train loss", "binary cross-entropy"),
        (axes[0, 1], "val_loss", "validation loss", "binary cross-entropy"),
        (axes[1, 0], "f1", "train F1", "macro F1"),
        (axes[1, 1], "val_f1", "validation F1", "macro F1"),
    ]
    colors = _palette(len(histories))
    longest = max(len(h) for h in histories.values())
    marker = "o" if longest <= 25 else None
    exact = False
    handles = []
    for color, (name, history) in zip(colors, histories.items(), strict=True):
        history = history.sort_values("epoch")
        for ax, column, _, _ in panels:
            ax.plot(history["epoch"], history[column], color=color, marker=marker, markersize=4)
        if "val_macro_f1" in history.columns and history["val_macro_f1"].notna().any():
            exact = True
            axes[1, 1].plot(
                history["epoch"],
                history["val_macro_f1"],
                color=color,
                linestyle="--",
                marker=marker,
                markersize=4,
                markerfacecolor="white",
            )
        handles.append(Line2D([], [], color=color, marker=marker, label=str(name)))
    first = min(h["epoch"].min() for h in histories.values())
    last = max(h["epoch"].max() for h in histories.values())
    axes[0, 0].set_xlim(first - 0.5, last + 0.5)  # the x axis is shared by all four panels
    for ax, _, panel_title, ylabel in panels:
        ax.set_title(panel_title)
        ax.set_ylabel(ylabel)
        if last - first < 10:  # short runs (even 1 epoch): a tick per epoch
            ax.set_xticks(np.arange(int(first), int(last) + 1))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[1]:
        ax.set_xlabel("epoch")
        ax.tick_params(axis="x", labelbottom=True)
    for ax in axes[0]:
        ax.set_xlabel("epoch")
        ax.tick_params(axis="x", labelbottom=True)
    if exact:
        axes[1, 1].legend(
            handles=[
                Line2D([], [], color="grey", label="Keras F1Score (whole epoch)"),
                Line2D([], [], color="grey", linestyle="--", label="exact macro F1"),
            ],
            loc="best",
            framealpha=0.9,
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), title="model")
    fig.suptitle(title)
    return fig


@_styled
def plot_model_scores(table: pd.DataFrame, title: str = "Validation macro F1 per model") -> Figure:
    """Bars of validation macro F1 per model, coloured by fine-tuning stage.

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
        ax.legend(title="stage", ncol=min(len(stages), 4), loc="upper left")
    ax.set_ylim(0, (top if np.isfinite(top) and top > 0 else 1) * 1.3)
    ax.set_ylabel("validation macro F1")
    ax.set_title(title)
    return fig


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
    grid.columns = [STAGE_LABELS.get(s, s).replace(": ", "\n") for s in stages]
    fig, ax = plt.subplots(figsize=(max(7, 1.9 * len(stages) + 3), 0.55 * len(grid) + 2.5), layout="constrained")
    sns.heatmap(
        grid,
        annot=True,
        fmt=".3f",
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

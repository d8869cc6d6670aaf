"""Notebook 05's figures: the ablation's differences from the baseline with their intervals, and Grad-CAM maps."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from hpa_utils.reporting.plots.images import rgb_composite
from hpa_utils.reporting.plots.style import _class_label, _palette, _require_columns, _styled, _wrap

_SET_NAMES = {
    "val": "validation",
    "test": "held-out test (public + private)",
    "public": "public part",
    "private": "private part",
}


@_styled
def plot_ablation(
    table: pd.DataFrame,
    sets: Sequence[str] = ("val", "test"),
    title: str = "Each technique against the report's baseline",
    *,
    synthetic: bool | None = None,
) -> Figure:
    """The difference of each technique's macro F1 from the baseline's, with its paired 95% interval.

    Args:
        table: the ablation's table: ``technique``, ``key`` and per set ``d_{set}``, ``d_{set}_low``,
            ``d_{set}_high`` (the baseline's row, key ``baseline``, is left out).
        sets: the labelled sets drawn (those present in ``table``), one marker each per technique.
        title: figure title.
        synthetic: True when the test labels are the synthetic dataset's (said in the legend).

    Returns:
        The figure (one axes; techniques top to bottom, 0 marked).
    """
    _require_columns(table, ["technique", "key"], "table")
    rows = table[table["key"] != "baseline"].reset_index(drop=True)
    sets = [s for s in sets if f"d_{s}" in rows.columns]
    if rows.empty or not sets:
        raise ValueError("table needs at least one technique row and one set's d_<set> columns")
    fig, ax = plt.subplots(figsize=(8.5, 1.0 + 0.62 * len(rows) * max(1, len(sets)) ** 0.5 + 0.8), layout="constrained")
    y = np.arange(len(rows))[::-1].astype(float)
    offsets = (np.arange(len(sets)) - (len(sets) - 1) / 2) * 0.28
    handles = []
    for color, offset, name in zip(_palette(len(sets)), offsets, sets, strict=True):
        est = rows[f"d_{name}"].to_numpy(dtype=float)
        low, high = rows[f"d_{name}_low"].to_numpy(dtype=float), rows[f"d_{name}_high"].to_numpy(dtype=float)
        ax.errorbar(
            est, y + offset, xerr=[est - low, high - est], fmt="o", color=color, capsize=3, markersize=6, lw=1.6
        )
        label = _SET_NAMES.get(name, name)
        if synthetic and name in ("test", "public", "private"):
            label += ", synthetic labels"
        handles.append(Line2D([], [], color=color, marker="o", lw=1.6, label=label))
    ax.axvline(0, color="0.3", lw=1, ls="--")
    ax.set_yticks(y, [_wrap(t, 26) for t in rows["technique"]])
    seeds = int(rows["seeds"].max()) if "seeds" in rows.columns and rows["seeds"].notna().any() else 1
    over = f"over {seeds} training seeds, then images" if seeds > 1 else "over images"
    ax.set_xlabel(f"macro F1 minus the baseline's (paired 95% bootstrap interval {over})")
    ax.set_title(title)
    ax.legend(handles=handles, loc="best", fontsize="small", title="scored on", title_fontsize="small")
    ax.grid(axis="y", visible=False)
    return fig


def _overlay(green: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The green channel in grey with the map in a heat colour over it (alpha by the map's value)."""
    grey = green.astype(np.float32) / max(float(np.percentile(green, 99.5)), 1.0)
    base = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)
    heat = plt.get_cmap("inferno")(np.clip(cam, 0, 1))[..., :3]
    alpha = 0.65 * np.clip(cam, 0, 1)[..., None]
    return (1 - alpha) * base + alpha * heat


@_styled
def plot_gradcam(
    panels: list[dict],
    model: str,
    title: str | None = None,
    images_per_row: int = 2,
) -> Figure:
    """Grad-CAM maps over the protein (green) channel, each beside the image's reference stains.

    Args:
        panels: one dict per image: ``class``, ``kind`` ("best"/"worst"), ``id``, ``image`` (H, W, 4) uint8
            channels R, G, B, Y, ``cam`` (H, W) in [0, 1], ``mask`` (H, W) bool where the pattern was drawn
            or None, ``probability`` (the model's for the class).
        model: the model's name, for the title.
        title: figure title (default names the model).
        images_per_row: images side by side; each takes two panels (stains, then protein + map).

    Returns:
        The figure: per image, the red/blue/yellow stains as a composite (microtubules red, nucleus blue,
        ER yellow) and the green channel with the map (bright = more evidence); the pattern's outline in
        cyan where the generator's ground truth is known.
    """
    if not panels:
        raise ValueError("no Grad-CAM panels to draw")
    n_rows = int(np.ceil(len(panels) / images_per_row))
    fig, axes = plt.subplots(
        n_rows, 2 * images_per_row, figsize=(4.2 * images_per_row, 2.35 * n_rows + 0.9), layout="constrained"
    )
    axes = np.atleast_2d(axes)
    for ax in axes.flat:
        ax.set_axis_off()
    for index, panel in enumerate(panels):
        row, col = divmod(index, images_per_row)
        image = np.asarray(panel["image"])
        stains = image.copy()
        stains[..., 1] = 0  # the reference stains only: red, blue and yellow
        left, right = axes[row, 2 * col], axes[row, 2 * col + 1]
        left.imshow(rgb_composite(stains))
        right.imshow(_overlay(image[..., 1], np.asarray(panel["cam"])))
        if panel.get("mask") is not None and np.asarray(panel["mask"]).any():
            right.contour(np.asarray(panel["mask"], dtype=float), levels=[0.5], colors="cyan", linewidths=0.7)
        name = _wrap(_class_label(panel["class"]), 24)
        left.set_title(f"{panel['kind']}: {name}", fontsize="small", loc="left")
        right.set_title(f"protein + map, p = {panel['probability']:.2f}", fontsize="small", loc="left")
    fig.suptitle(title or f"Where {model} looks: Grad-CAM over the protein channel (cyan: where the pattern is)")
    return fig

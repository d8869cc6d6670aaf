"""Notebook 06's figures: a class's validation images with the predictor's output, and what a class is
confused with. Each draws what it is given (:mod:`hpa_utils.reporting.explore` computes it)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hpa_utils.data.labels import CLASS_NAMES
from hpa_utils.reporting.plots.beyond import _overlay
from hpa_utils.reporting.plots.images import rgb_composite
from hpa_utils.reporting.plots.style import _class_label, _palette, _require_columns, _styled, _wrap

#: How each outcome of an image for the picked class is coloured (its first panel's frame and title).
OUTCOME_COLOURS = {"hit": "#029e73", "miss": "#d55e00", "false alarm": "#cc78bc", "true negative": "0.45"}


def _bare(ax) -> None:
    """No ticks or grid, but the labels and frame stay (an image axis that can carry a caption)."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


@_styled
def plot_class_gallery(
    panels: list[dict],
    class_id: int,
    title: str | None = None,
    images_per_row: int = 4,
    top: int = 3,
) -> Figure:
    """Validation images for one class: each as its colour composite and as its protein (green) channel
    with the class's Grad-CAM map over it.

    Args:
        panels: one dict per image: ``id``, ``image`` (H, W, 4) uint8 channels R, G, B, Y, ``cam`` (H, W) in
            [0, 1], ``true`` (its class ids), ``probabilities`` (C,) the predictor's, ``outcome`` for the class
            (a key of :data:`OUTCOME_COLOURS`).
        class_id: the class picked (its probability is named over each map).
        title: figure title (default names the class).
        images_per_row: images side by side; each takes two panels.
        top: the most probable classes listed under each map.

    Returns:
        The figure; with no panel, one line saying there is no such image.
    """
    name = _class_label(class_id)
    if not panels:
        fig, ax = plt.subplots(figsize=(8, 1.2))
        ax.set_axis_off()
        ax.text(0.5, 0.5, f"No validation image of {name} in this view.", ha="center", va="center")
        return fig
    n_rows = int(np.ceil(len(panels) / images_per_row))
    fig, axes = plt.subplots(
        n_rows, 2 * images_per_row, figsize=(3.3 * images_per_row, 2.75 * n_rows + 0.7), layout="constrained"
    )
    axes = np.atleast_2d(axes)
    for ax in axes.flat:
        ax.set_axis_off()
    for index, panel in enumerate(panels):
        row, col = divmod(index, images_per_row)
        left, right = axes[row, 2 * col], axes[row, 2 * col + 1]
        image = np.asarray(panel["image"])
        probabilities = np.asarray(panel["probabilities"], dtype=float)
        colour = OUTCOME_COLOURS.get(panel["outcome"], "0.3")
        for ax in (left, right):
            ax.set_axis_on()
            _bare(ax)
        left.imshow(rgb_composite(image))
        right.imshow(_overlay(image[..., 1], np.asarray(panel["cam"])))
        for spine in left.spines.values():
            spine.set(color=colour, linewidth=2.5)
        true = ", ".join(CLASS_NAMES[int(c)] for c in panel["true"]) or "none"
        left.set_title(f"{panel['outcome']} · {str(panel['id'])[:8]}", fontsize="small", loc="left", color=colour)
        left.set_xlabel(_wrap(f"true: {true}", 30), fontsize="x-small")
        right.set_title(f"protein + map · p = {probabilities[class_id]:.2f}", fontsize="small", loc="left")
        best = np.argsort(-probabilities, kind="stable")[:top]
        listed = ", ".join(f"{CLASS_NAMES[int(c)]} {probabilities[c]:.2f}" for c in best)
        right.set_xlabel(_wrap(f"top: {listed}", 30), fontsize="x-small")
    fig.suptitle(title or f"{name}: validation images (composite; protein channel with the class's Grad-CAM map)")
    return fig


@_styled
def plot_confusions(table: pd.DataFrame, class_id: int, title: str | None = None, top: int = 8) -> Figure:
    """What one class is confused with, both ways, on validation.

    Args:
        table: one row per class (index: class id), as :func:`hpa_utils.reporting.explore.confusions` gives:
            ``predicted_on_true`` (images of the class on which this class is predicted) with
            ``predicted_on_true_wrong`` (of them, those that do not carry it), and ``true_on_predicted``
            (images the class is predicted on that carry this class) with ``true_on_predicted_false_alarm``
            (of them, those that do not carry the picked class).
        class_id: the picked class.
        title: figure title (default names the class).
        top: classes shown per panel (the most frequent).

    Returns:
        Two panels: left, the classes predicted on the class's images; right, the true classes of the images
        it is predicted on; the share that is a mistake in a second colour.
    """
    columns = ["predicted_on_true", "predicted_on_true_wrong", "true_on_predicted", "true_on_predicted_false_alarm"]
    _require_columns(table, columns, "table")
    name = _class_label(class_id)
    correct, wrong = _palette(4)[0], _palette(4)[3]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.42 * top + 1.8), layout="constrained")
    picked = CLASS_NAMES[class_id]
    panels = (
        ("predicted_on_true", "predicted_on_true_wrong", "the image carries it", "it does not carry it"),
        ("true_on_predicted", "true_on_predicted_false_alarm", f"{picked} is true", f"{picked} is a false alarm"),
    )
    headings = (
        f"Its {int(table.attrs.get('n_true', 0))} image(s): the classes predicted on them",
        f"The {int(table.attrs.get('n_predicted', 0))} image(s) it is predicted on: their true classes",
    )
    for ax, (total, mistaken, ok_label, bad_label), heading in zip(axes, panels, headings):
        # the class itself first (its hits), then the classes it is confused with most, then by count
        order = table.assign(_self=table.index == class_id).sort_values(
            ["_self", mistaken, total], ascending=False, kind="stable"
        )
        shown = order.loc[order[total] > 0, total].astype(int).head(top)
        ax.set_title(heading, fontsize="medium", loc="left")
        if shown.empty:
            ax.set_axis_off()
            ax.text(0.5, 0.5, "none", ha="center", va="center", transform=ax.transAxes)
            continue
        y = np.arange(len(shown))[::-1]
        bad = table.loc[shown.index, mistaken].astype(int).to_numpy()
        good = shown.to_numpy() - bad
        ax.barh(y, good, color=correct, label=ok_label)
        ax.barh(y, bad, left=good, color=wrong, label=bad_label)
        labels = [_wrap(_class_label(int(c)), 28) for c in shown.index]
        ax.set_yticks(y, labels)
        for tick, c in zip(ax.get_yticklabels(), shown.index):
            if int(c) == class_id:
                tick.set_fontweight("bold")
        ax.set_xlabel("validation images")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(axis="y", visible=False)
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=2, fontsize="small", frameon=False)
    fig.suptitle(title or f"{name}: what it is confused with (validation, at the thresholds set)")
    return fig

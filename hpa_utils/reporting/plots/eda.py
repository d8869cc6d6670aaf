"""EDA figures from label data: class counts, labels per image, label co-occurrence, split balance."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure

from hpa_utils.data.labels import NUM_CLASSES
from hpa_utils.reporting.plots.style import _PALETTE, _as_counts, _class_label, _styled


@_styled
def plot_class_counts(
    counts,
    title: str = "Images per class",
    reference=None,
    label: str = "this set",
    reference_label: str = "reference",
) -> Figure:
    """Horizontal bars of images per class on a log axis, most frequent class on top.

    Args:
        counts: images per class: a pandas Series (or dict) indexed by class id
            0..27 (missing ids count 0), or a (28,) array.
        title: figure title.
        reference: optional counts in the same format (e.g. Kaggle's train
            counts scaled to this set's size), drawn as diamonds.
        label: legend label of the bars (shown only with ``reference``).
        reference_label: legend label of the diamonds.

    Returns:
        The figure (one axes).
    """
    series = _as_counts(counts, "counts").sort_values(ascending=False, kind="stable")
    order = list(series.index)
    y = np.arange(NUM_CLASSES)
    fig, ax = plt.subplots(figsize=(10, 9), layout="constrained")
    ax.barh(y, series.to_numpy(), color=sns.color_palette(_PALETTE)[0], label=label)
    ax.set_xscale("log")
    top = max(series.max(), 1.0)
    text_at = np.maximum(series.to_numpy(), 0.8)
    if reference is not None:
        ref = _as_counts(reference, "reference").reindex(order)
        shown = ref.to_numpy() > 0
        ax.scatter(ref.to_numpy()[shown], y[shown], marker="D", s=28, color="black", zorder=3, label=reference_label)
        top = max(top, ref.max())
        text_at = np.maximum(text_at, ref.to_numpy())
        ax.legend(loc="lower right")
    ax.set_xlim(0.8, top * 4)
    for yi, value, x in zip(y, series.to_numpy(), text_at, strict=True):
        ax.text(x * 1.15, yi, f"{value:,.0f}", va="center", fontsize=9)
    ax.set_yticks(y, [_class_label(i) for i in order])
    ax.invert_yaxis()
    ax.set_ylim(NUM_CLASSES - 0.4, -0.6)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("images (log scale)")
    ax.set_ylabel("class")
    ax.set_title(title)
    return fig


@_styled
def plot_labels_per_image(counts, title: str = "Labels per image") -> Figure:
    """Bar chart of how many images carry 1, 2, ... labels, with percentages.

    Args:
        counts: pandas Series (or dict) indexed by number of labels (1..5),
            values = number of images.
        title: figure title.

    Returns:
        The figure (one axes).
    """
    series = pd.Series(counts, dtype=float) if isinstance(counts, Mapping) else pd.Series(counts)
    if series.empty or (series < 0).any():
        raise ValueError("counts must be a non-empty Series of image counts >= 0 indexed by labels per image")
    series = series.sort_index()
    total = series.sum()
    fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    x = np.arange(len(series))
    bars = ax.bar(x, series.to_numpy(), color=sns.color_palette(_PALETTE)[0])
    shares = series / total * 100 if total else series * 0
    ax.bar_label(bars, [f"{p:.1f}%\n({c:,.0f})" for p, c in zip(shares, series, strict=True)], padding=3, fontsize=9.5)
    ax.set_xticks(x, [str(i) for i in series.index])
    ax.set_ylim(0, max(series.max(), 1) * 1.2)
    ax.set_xlabel("labels per image")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.grid(axis="x", visible=False)
    return fig


@_styled
def plot_cooccurrence(
    y,
    normalize: str = "conditional",
    title: str | None = None,
    annotate: bool = False,
    drop_empty: bool = False,
) -> Figure:
    """Heatmap of how often two labels occur on the same image.

    The diagonal (a class with itself) is left grey; so are classes with no
    image in ``y``, unless ``drop_empty`` removes them.

    Args:
        y: (N, 28) multi-hot label matrix (0/1 or bool).
        normalize: ``"conditional"``: cell (row r, column c) = P(c | r), the
            share of images labelled r that are also labelled c;
            ``"count"``: number of images labelled both (log-like colour scale).
        title: figure title; a default names the normalisation.
        annotate: write the value in each cell (values below 0.05 / zero counts
            are left blank to keep 28x28 readable).
        drop_empty: drop classes with no image instead of greying them.

    Returns:
        The figure (heatmap axes and colour-bar axes).
    """
    if normalize not in ("conditional", "count"):
        raise ValueError(f"normalize must be 'conditional' or 'count', got {normalize!r}")
    y = np.asarray(y)
    if y.ndim != 2 or y.shape[1] != NUM_CLASSES:
        raise ValueError(f"y must be an (N, {NUM_CLASSES}) multi-hot matrix, got shape {y.shape}")
    y = y.astype(bool).astype(np.int64)
    both = y.T @ y
    per_class = np.diag(both).astype(float)
    ids = np.flatnonzero(per_class > 0) if drop_empty else np.arange(NUM_CLASSES)
    if len(ids) == 0:
        raise ValueError("y has no positive label: nothing to draw")
    if normalize == "conditional":
        with np.errstate(divide="ignore", invalid="ignore"):
            values = both / per_class[:, None]
        cbar_label, cmap, norm, fmt = "P(column class | row class)", "rocket_r", None, "{:.2f}"
        vmin, vmax = 0.0, 1.0
    else:
        values = both.astype(float)
        off_diag = values[~np.eye(NUM_CLASSES, dtype=bool)]
        cbar_label, cmap, fmt = "images with both labels", "rocket_r", "{:,.0f}"
        norm = SymLogNorm(linthresh=1, vmin=0, vmax=max(off_diag.max(), 1), base=10)
        vmin = vmax = None
    empty = per_class == 0
    mask = np.eye(NUM_CLASSES, dtype=bool) | empty[:, None] | empty[None, :] | ~np.isfinite(values)
    values, mask = values[np.ix_(ids, ids)], mask[np.ix_(ids, ids)]
    labels = [_class_label(i) for i in ids]
    row_labels = [f"{label} (n={per_class[i]:,.0f})" for label, i in zip(labels, ids, strict=True)]

    fig, ax = plt.subplots(figsize=(12, 11), layout="constrained")
    ax.set_facecolor("#d9d9d9")
    annot = False
    if annotate:
        threshold = 0.05 if normalize == "conditional" else 1
        annot = np.where(
            mask | (np.nan_to_num(values) < threshold),
            "",
            np.vectorize(lambda v: fmt.format(v).removeprefix("0"))(np.nan_to_num(values)),
        )
    sns.heatmap(
        pd.DataFrame(values, index=row_labels, columns=labels),
        mask=mask,
        ax=ax,
        cmap=cmap,
        norm=norm,
        vmin=vmin,
        vmax=vmax,
        square=True,
        linewidths=0.5,
        linecolor="white",
        annot=annot,
        fmt="",
        annot_kws={"fontsize": 9},
        cbar_kws={"label": cbar_label, "shrink": 0.6},
        xticklabels=True,
        yticklabels=True,
    )
    ax.tick_params(axis="x", labelrotation=90)
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_xlabel("column class (also present)")
    ax.set_ylabel("row class (given)")
    if title is None:
        kind = "P(column | row)" if normalize == "conditional" else "images with both labels"
        title = f"Label co-occurrence: {kind}"
    grey = "grey: diagonal" + ("" if drop_empty or not empty.any() else " and classes absent from the data")
    ax.set_title(f"{title}\n({grey}; {int(y.shape[0]):,} images)")
    return fig


@_styled
def plot_split_balance(
    train_counts,
    val_counts,
    title: str = "Train / validation split per class",
    *,
    n_train_images: int | None = None,
    n_val_images: int | None = None,
) -> Figure:
    """Images per class in train and validation (log scale), and the validation share.

    The per-class counts add up labels, not images (an image with two labels counts in two classes), so
    the overall validation share of images comes from the numbers of images, when given; the share of
    the labels is drawn too, named so.

    Args:
        train_counts: images per class in train: Series indexed by class id or (28,) array.
        val_counts: the same for validation.
        title: figure title.
        n_train_images, n_val_images: the numbers of training and validation images (give both): the
            line "all images: x% of images" is drawn from them.

    Returns:
        The figure: counts axes and validation-fraction axes (classes on a shared y axis).
    """
    train = _as_counts(train_counts, "train_counts")
    val = _as_counts(val_counts, "val_counts")
    if (n_train_images is None) != (n_val_images is None):
        raise ValueError("give both n_train_images and n_val_images, or neither")
    if n_train_images is not None and (n_train_images < 0 or n_val_images < 0 or n_train_images + n_val_images == 0):
        raise ValueError(f"image counts must be >= 0 and not both 0, got {n_train_images} and {n_val_images}")
    total = train + val
    order = list(total.sort_values(ascending=False, kind="stable").index)
    train, val, total = train[order].to_numpy(), val[order].to_numpy(), total[order].to_numpy()
    y = np.arange(NUM_CLASSES)
    colors = sns.color_palette(_PALETTE)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, 9.5), sharey=True, layout="constrained", gridspec_kw={"width_ratios": [3, 2]}
    )
    height = 0.4
    left.barh(y - height / 2, train, height, color=colors[0], label="train")
    left.barh(y + height / 2, val, height, color=colors[1], label="validation")
    left.set_xscale("log")
    left.set_xlim(0.8, max(total.max(), 1) * 2)
    left.set_xlabel("images (log scale)")
    left.set_ylabel("class")
    left.set_title("images per class")
    left.legend(loc="lower right")
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(total > 0, val / total, np.nan)
    right.barh(y, np.nan_to_num(fraction), 0.7, color=colors[1])
    label_share = val.sum() / total.sum() if total.sum() else 0.0
    overall = label_share
    if n_train_images is not None:
        overall = n_val_images / (n_train_images + n_val_images)
        right.axvline(
            overall,
            color="black",
            linestyle=":",
            label=f"all images: {overall:.1%} of images\n({n_val_images:,} of {n_train_images + n_val_images:,})",
        )
    right.axvline(label_share, color="0.45", linestyle="--", label=f"all labels: {label_share:.1%} of labels")
    for yi, f, v in zip(y, fraction, val, strict=True):
        text = "no image" if np.isnan(f) else ("none" if v == 0 else f"{f:.0%}")
        right.text(
            (0 if np.isnan(f) else f) + 0.01, yi, text, va="center", fontsize=9, color="#b00000" if v == 0 else "black"
        )
    right.set_xlim(0, max(np.nanmax(np.append(fraction, 0)), overall, label_share) * 1.25 + 0.05)
    right.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    right.set_xlabel("validation share of the class's images")
    right.set_title("validation fraction")
    right.legend(loc="lower right")
    left.set_yticks(y, [_class_label(i) for i in order])
    left.set_ylim(NUM_CLASSES - 0.4, -0.6)
    for ax in (left, right):
        ax.grid(axis="y", visible=False)
    fig.suptitle(title)
    return fig

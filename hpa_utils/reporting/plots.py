"""Every figure of the report, drawn from the DataFrames and arrays it is given.

This module never trains, loads models or reads the dataset: callers pass the
numbers, each function returns a :class:`matplotlib.figure.Figure`, and
:func:`save_figure` writes it. Figures are drawn in one seaborn theme
(whitegrid, colourblind palette, fonts of 9.9 pt and up) whatever the global
matplotlib state; :func:`use_style` applies the same theme globally, for the
notebook's own plots. Classes are shown by name ("0 Nucleoplasm"), never by id
alone.

Sections: style and saving; EDA; training; ensemble and thresholds.
"""

from __future__ import annotations

import functools
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from cycler import cycler
from matplotlib.colors import LinearSegmentedColormap, SymLogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from hpa_utils.data.labels import CHANNELS, CLASS_NAMES, NUM_CLASSES
from hpa_utils.io import write_atomic

# --------------------------------------------------------------------------- style and saving

_RC_EXTRA = {
    "figure.dpi": 100,
    "axes.titlesize": 12,
    "figure.titlesize": 14,
    "figure.titleweight": "bold",
    "savefig.facecolor": "white",
}
_CONTEXT = "notebook"
_FONT_SCALE = 0.9  # notebook context x 0.9: tick labels 9.9 pt, axis labels 10.8 pt
_PALETTE = "colorblind"

#: Display name, colour and colormap end colour of each channel, keyed by file suffix.
_CHANNEL_INFO = {
    "red": ("microtubules (red)", "#d62728", (1.0, 0.0, 0.0)),
    "green": ("protein (green)", "#2ca02c", (0.0, 1.0, 0.0)),
    "blue": ("nucleus (blue)", "#1f77b4", (0.15, 0.35, 1.0)),
    "yellow": ("ER (yellow)", "#e6b800", (1.0, 1.0, 0.0)),
}
#: Fine-tuning stages in report order, with what each stage re-trained (SPEC.md, step 4).
_STAGES = {
    "base": "base model",
    "A": "A: CNN part re-trained",
    "B": "B: dense head re-trained",
    "C": "C: dense head, more epochs",
}
_SERIES_LABELS = {
    "val_f1": "validation",
    "public_f1": "Kaggle public",
    "private_f1": "Kaggle private",
    "fit_f1": "fit set (thresholds chosen here)",
    "holdout_f1": "hold-out set",
}


def _theme_rc() -> dict:
    rc = dict(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context(_CONTEXT, font_scale=_FONT_SCALE))
    rc["axes.prop_cycle"] = cycler(color=sns.color_palette(_PALETTE))
    rc.update(_RC_EXTRA)
    return rc


def use_style() -> None:
    """Apply the report's seaborn theme globally (for a notebook's own plots).

    The functions of this module draw in the same theme without it; call it
    once at the top of a notebook so that ad-hoc figures match.
    """
    sns.set_theme(context=_CONTEXT, style="whitegrid", palette=_PALETTE, font_scale=_FONT_SCALE, rc=_RC_EXTRA)


def _styled(func):
    """Draw ``func``'s figure inside the report theme, leaving global rcParams alone."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with plt.rc_context(_theme_rc()):
            return func(*args, **kwargs)

    return wrapper


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120, source: str | None = None) -> Path:
    """Write ``fig`` as a PNG atomically: to a temporary file beside ``path``, then renamed.

    A reader never sees a half-written file, and a failed save leaves no
    temporary file behind. Parent directories are created.

    Args:
        fig: the figure to write.
        path: destination, normally ending in ``.png``.
        dpi: resolution in dots per inch.
        source: what made the figure (e.g. "preset quick, synthetic data"): written small in the
            figure's bottom-right corner and into the PNG's metadata, so a copied figure still says so.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    if source:
        fig.text(0.995, -0.005, source, ha="right", va="top", fontsize=7, color="0.45")  # below everything
    metadata = {"Software": "hpa_utils", **({"Source": source} if source else {})}
    return write_atomic(
        path,
        lambda tmp: fig.savefig(
            tmp, format="png", dpi=dpi, bbox_inches="tight", facecolor="white", metadata=metadata
        ),
    )


# --------------------------------------------------------------------------- input helpers


def _class_label(class_id: int) -> str:
    return f"{class_id} {CLASS_NAMES[class_id]}"


def _as_class_series(values, name: str) -> pd.Series:
    """A Series indexed 0..27 (missing ids -> 0) from a Series/dict by class id or a (28,) array."""
    if isinstance(values, Mapping):
        values = pd.Series(values, dtype=float)
    if isinstance(values, pd.Series):
        try:
            index = values.index.astype(int)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be indexed by class id (0..{NUM_CLASSES - 1})") from None
        bad = [i for i in index if not 0 <= i < NUM_CLASSES]
        if bad:
            raise ValueError(f"{name} has class ids outside 0..{NUM_CLASSES - 1}: {bad}")
        series = pd.Series(values.to_numpy(dtype=float), index=index).groupby(level=0).sum()
        series = series.reindex(range(NUM_CLASSES), fill_value=0.0)
    else:
        array = np.asarray(values, dtype=float)
        if array.shape != (NUM_CLASSES,):
            raise ValueError(
                f"{name} must be a pandas Series indexed by class id or a ({NUM_CLASSES},) array, "
                f"got shape {array.shape}"
            )
        series = pd.Series(array, index=range(NUM_CLASSES))
    return series


def _as_counts(values, name: str) -> pd.Series:
    series = _as_class_series(values, name)
    if series.isna().any() or (series < 0).any():
        raise ValueError(f"{name} must hold counts >= 0 (no NaN)")
    return series


def _require_columns(df: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it has {list(df.columns)}")


def _row_names(df: pd.DataFrame, candidates: Sequence[str]) -> list[str]:
    """Row labels from the first of ``candidates`` present as a column, else from the index."""
    for column in candidates:
        if column in df.columns:
            return [str(v) for v in df[column]]
    return [str(v) for v in df.index]


def _palette(n: int) -> list:
    return sns.color_palette(_PALETTE, n) if n <= 10 else sns.color_palette("husl", n)


def _stage_order(stages) -> list[str]:
    present = list(dict.fromkeys(str(s) for s in stages))
    known = [s for s in _STAGES if s in present]
    return known + [s for s in present if s not in _STAGES]


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


# --------------------------------------------------------------------------- EDA


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
        ax.scatter(ref.to_numpy()[shown], y[shown], marker="D", s=28, color="black", zorder=3,
                   label=reference_label)
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
    ax.bar_label(bars, [f"{p:.1f}%\n({c:,.0f})" for p, c in zip(shares, series, strict=True)],
                 padding=3, fontsize=9.5)
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
        annot = np.where(mask | (np.nan_to_num(values) < threshold), "",
                         np.vectorize(lambda v: fmt.format(v).removeprefix("0"))(np.nan_to_num(values)))
    sns.heatmap(
        pd.DataFrame(values, index=row_labels, columns=labels), mask=mask, ax=ax, cmap=cmap, norm=norm,
        vmin=vmin, vmax=vmax, square=True, linewidths=0.5, linecolor="white",
        annot=annot, fmt="", annot_kws={"fontsize": 9},
        cbar_kws={"label": cbar_label, "shrink": 0.6},
        xticklabels=True, yticklabels=True,
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


def rgb_composite(image: np.ndarray) -> np.ndarray:
    """HPA colour composite of one (H, W, 4) image (channels R, G, B, Y) -> (H, W, 3) uint8.

    Red = microtubules + yellow/2, green = protein + yellow/2, blue = nucleus:
    the ER (yellow) channel is added to red and green at half weight.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 4:
        raise ValueError(f"image must be (H, W, 4) with channels R, G, B, Y, got shape {image.shape}")
    pixels = image.astype(np.float32)
    yellow = pixels[..., 3] * 0.5
    rgb = np.stack([pixels[..., 0] + yellow, pixels[..., 1] + yellow, pixels[..., 2]], axis=-1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _montage_title(title) -> str:
    """A title string, or class ids (any iterable of ints) -> their class names."""
    if isinstance(title, str):
        return title
    return ", ".join(CLASS_NAMES[int(i)] for i in title)


def _stretch(image: np.ndarray) -> np.ndarray:
    """Per-channel contrast stretch to the 99.5th percentile (for dim fields)."""
    pixels = image.astype(np.float32)
    top = np.percentile(pixels, 99.5, axis=(0, 1), keepdims=True)
    return np.clip(pixels * 255.0 / np.maximum(top, 1.0), 0, 255).astype(np.uint8)


@_styled
def plot_montage(
    images,
    titles: Sequence,
    mode: str = "rgb",
    ncols: int | None = None,
    auto_contrast: bool = False,
    title: str | None = None,
) -> Figure:
    """Show microscope fields, as colour composites or channel by channel.

    Args:
        images: (N, H, W, 4) uint8 array (or a single (H, W, 4) image),
            channels in file order red, green, blue, yellow.
        titles: one per image: a string (e.g. the class names of its labels),
            or the class ids, which are shown as class names. Long titles wrap.
        mode: ``"rgb"``: one composite per image (see :func:`rgb_composite`),
            ``ncols`` per row; ``"channels"``: one row per image, four columns
            (microtubules, protein, nucleus, ER), each in its own black-to-colour map.
        ncols: images per row in ``"rgb"`` mode (default: up to 4).
        auto_contrast: stretch each channel of each image to its 99.5th
            percentile; off by default, so intensities are shown as stored (0-255).
        title: optional figure title.

    Returns:
        The figure: N axes ("rgb", plus blank fillers to complete the grid) or
        4N axes ("channels").
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 4:
        raise ValueError(f"images must be (N, H, W, 4) with channels R, G, B, Y, got shape {images.shape}")
    if mode not in ("rgb", "channels"):
        raise ValueError(f"mode must be 'rgb' or 'channels', got {mode!r}")
    if len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles: one title per image is needed")
    if images.dtype != np.uint8:
        images = np.clip(images, 0, 255).astype(np.uint8)
    if auto_contrast:
        images = np.stack([_stretch(image) for image in images])
    texts = [_montage_title(t) for t in titles]
    n = len(images)

    if mode == "rgb":
        ncols = min(n, 4) if ncols is None else max(1, min(int(ncols), n))
        nrows = int(np.ceil(n / ncols))
        side = min(3.0, 12.0 / ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(side * ncols, (side + 0.6) * nrows),
                                 layout="constrained", squeeze=False)
        width = max(18, int(side * 12))
        for k, ax in enumerate(axes.flat):
            ax.set_axis_off()
            if k < n:
                ax.imshow(rgb_composite(images[k]))
                ax.set_title(_wrap(texts[k], width), fontsize=9.5)
        if title:
            fig.suptitle(title)
        return fig

    fig = plt.figure(figsize=(10, 2.9 * n + (0.4 if title else 0)), layout="constrained")
    rows = fig.subfigures(n, 1, squeeze=False)[:, 0]
    for image, text, sub in zip(images, texts, rows, strict=True):
        sub.suptitle(_wrap(text, 100), fontsize=10.8, fontweight="bold")
        axes = sub.subplots(1, 4)
        for c, (channel, ax) in enumerate(zip(CHANNELS, axes, strict=True)):
            name, _, end = _CHANNEL_INFO[channel]
            cmap = LinearSegmentedColormap.from_list(channel, [(0, 0, 0), end])
            ax.imshow(image[..., c], cmap=cmap, vmin=0, vmax=255)
            ax.set_title(name, fontsize=9.9)
            ax.set_axis_off()
    if title:
        fig.suptitle(title)
    return fig


def _channel_frame(stats) -> pd.DataFrame:
    if isinstance(stats, pd.DataFrame):
        _require_columns(stats, ["channel", "mean"], "stats")
        return stats
    if isinstance(stats, Mapping):
        frames = [pd.DataFrame({"channel": str(k), "mean": np.asarray(v, dtype=float).ravel()})
                  for k, v in stats.items()]
        return pd.concat(frames, ignore_index=True)
    array = np.asarray(stats, dtype=float)
    if array.ndim != 2 or array.shape[1] != len(CHANNELS):
        raise ValueError(
            "stats must be a DataFrame with columns channel, mean (and optionally std), a dict "
            f"channel -> per-image means, or an (N, 4) array of per-image means; got shape {array.shape}"
        )
    return pd.DataFrame({"channel": np.tile(CHANNELS, len(array)), "mean": array.ravel()})


@_styled
def plot_channel_stats(stats, title: str = "Per-image intensity by channel") -> Figure:
    """Violins of per-image mean (and standard deviation) of pixel intensity per channel.

    Args:
        stats: one of
            - DataFrame with columns ``channel`` (``red``/``green``/``blue``/
              ``yellow`` or any name), ``mean`` and optionally ``std``: one row
              per image per channel, intensities on the 0-255 scale;
            - dict channel -> array of per-image means;
            - (N, 4) array of per-image means, columns red, green, blue, yellow.
        title: figure title.

    Returns:
        The figure: one axes for the means, a second for ``std`` if given.
    """
    frame = _channel_frame(stats).copy()
    frame["channel"] = frame["channel"].astype(str)
    present = list(dict.fromkeys(frame["channel"]))
    order = [c for c in CHANNELS if c in present] + [c for c in present if c not in CHANNELS]
    extra = iter(_palette(len(order)))
    colors = {c: (_CHANNEL_INFO[c][1] if c in _CHANNEL_INFO else next(extra)) for c in order}
    ticks = [_CHANNEL_INFO[c][0].replace(" (", "\n(") if c in _CHANNEL_INFO else c for c in order]
    columns = [c for c in ("mean", "std") if c in frame.columns]
    fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns) + 1, 5.5),
                             layout="constrained", squeeze=False)
    names = {"mean": "per-image mean", "std": "per-image standard deviation"}
    for column, ax in zip(columns, axes[0], strict=True):
        sns.violinplot(data=frame, x="channel", y=column, hue="channel", order=order, hue_order=order,
                       palette=colors, legend=False, cut=0, inner="box", ax=ax)
        ax.set_xticks(range(len(order)), ticks)
        ax.set_xlabel("channel")
        ax.set_ylabel("pixel intensity (0-255)")
        ax.set_ylim(bottom=0)
        ax.set_title(names[column])
    n_images = len(frame) // max(len(order), 1)
    fig.suptitle(f"{title} ({n_images:,} images)")
    return fig


@_styled
def plot_split_balance(train_counts, val_counts, title: str = "Train / validation split per class") -> Figure:
    """Images per class in train and validation (log scale), and the validation share.

    Args:
        train_counts: images per class in train: Series indexed by class id or (28,) array.
        val_counts: the same for validation.
        title: figure title.

    Returns:
        The figure: counts axes and validation-fraction axes (classes on a shared y axis).
    """
    train = _as_counts(train_counts, "train_counts")
    val = _as_counts(val_counts, "val_counts")
    total = train + val
    order = list(total.sort_values(ascending=False, kind="stable").index)
    train, val, total = train[order].to_numpy(), val[order].to_numpy(), total[order].to_numpy()
    y = np.arange(NUM_CLASSES)
    colors = sns.color_palette(_PALETTE)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 9.5), sharey=True, layout="constrained",
                                      gridspec_kw={"width_ratios": [3, 2]})
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
    overall = val.sum() / total.sum() if total.sum() else 0.0
    right.axvline(overall, color="black", linestyle=":", label=f"all images: {overall:.1%}")
    for yi, f, v in zip(y, fraction, val, strict=True):
        text = "no image" if np.isnan(f) else ("none" if v == 0 else f"{f:.0%}")
        right.text((0 if np.isnan(f) else f) + 0.01, yi, text, va="center", fontsize=9,
                   color="#b00000" if v == 0 else "black")
    right.set_xlim(0, max(np.nanmax(np.append(fraction, 0)), overall) * 1.25 + 0.05)
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


# --------------------------------------------------------------------------- training

_HISTORY_COLUMNS = ("epoch", "loss", "val_loss", "f1", "val_f1")


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
            axes[1, 1].plot(history["epoch"], history["val_macro_f1"], color=color, linestyle="--",
                            marker=marker, markersize=4, markerfacecolor="white")
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
        axes[1, 1].legend(handles=[
            Line2D([], [], color="grey", label="Keras F1Score (whole epoch)"),
            Line2D([], [], color="grey", linestyle="--", label="exact macro F1"),
        ], loc="best", framealpha=0.9)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), title="model")
    fig.suptitle(title)
    return fig


@_styled
def plot_model_scores(table: pd.DataFrame, title: str = "Validation macro F1 per model") -> Figure:
    """Bars of validation macro F1 per model, coloured by fine-tuning stage.

    Args:
        table: DataFrame with columns ``model`` and ``val_f1``, and optionally
            ``stage`` (``base``, ``A``, ``B``, ``C``) and ``base`` (the base
            variant the model descends from). With both ``base`` and ``stage``
            the bars are grouped by base variant; otherwise one bar per model.
        title: figure title.

    Returns:
        The figure (one axes).
    """
    _require_columns(table, ["model", "val_f1"], "table")
    if table.empty:
        raise ValueError("table has no rows")
    has_stage = "stage" in table.columns
    stages = _stage_order(table["stage"]) if has_stage else []
    colors = dict(zip(stages, _palette(max(len(stages), 1)), strict=False))
    if has_stage and "base" in table.columns:
        scores = table.pivot_table(index="base", columns=table["stage"].astype(str), values="val_f1",
                                   aggfunc="mean").reindex(columns=stages)
        fig, ax = plt.subplots(figsize=(max(8, min(12, 1.2 * len(scores) + 3)), 5.5), layout="constrained")
        x = np.arange(len(scores))
        width = 0.8 / len(stages)
        for k, stage in enumerate(stages):
            values = scores[stage].to_numpy()
            bars = ax.bar(x + (k - (len(stages) - 1) / 2) * width, np.nan_to_num(values), width,
                          color=colors[stage], label=_STAGES.get(stage, stage))
            ax.bar_label(bars, ["" if np.isnan(v) else f"{v:.3f}" for v in values],
                         rotation=90, padding=2, fontsize=9)
        ax.set_xticks(x, [str(b) for b in scores.index])
        ax.set_xlabel("base model")
        ax.grid(axis="x", visible=False)
        top = np.nanmax(scores.to_numpy())
    else:
        names = [str(m) for m in table["model"]]
        values = table["val_f1"].to_numpy(dtype=float)
        fig, ax = plt.subplots(figsize=(max(8, min(12, 0.45 * len(names) + 3)), 5.5), layout="constrained")
        bar_colors = ([colors[str(s)] for s in table["stage"]] if has_stage
                      else [sns.color_palette(_PALETTE)[0]] * len(names))
        bars = ax.bar(np.arange(len(names)), np.nan_to_num(values), 0.7, color=bar_colors)
        ax.bar_label(bars, ["" if np.isnan(v) else f"{v:.3f}" for v in values],
                     rotation=90, padding=2, fontsize=9)
        ax.set_xticks(np.arange(len(names)), names, rotation=45 if max(map(len, names)) > 3 else 0,
                      ha="right" if max(map(len, names)) > 3 else "center")
        ax.set_xlabel("model")
        ax.grid(axis="x", visible=False)
        if has_stage:
            ax.legend(handles=[Patch(color=colors[s], label=_STAGES.get(s, s)) for s in stages],
                      title="stage", loc="upper left")
        top = np.nanmax(values)
    if has_stage and "base" in table.columns:
        ax.legend(title="stage", ncol=min(len(stages), 4), loc="upper left")
    ax.set_ylim(0, (top if np.isfinite(top) and top > 0 else 1) * 1.3)
    ax.set_ylabel("validation macro F1")
    ax.set_title(title)
    return fig


@_styled
def plot_stage_heatmap(
    table: pd.DataFrame, title: str = "Validation macro F1: base variant x stage"
) -> Figure:
    """Annotated heatmap of validation macro F1, base variants (rows) by stage (columns).

    Args:
        table: DataFrame with columns ``base``, ``stage`` (``base``, ``A``,
            ``B``, ``C``) and ``val_f1``; duplicates of a (base, stage) pair
            are averaged; a missing pair is left blank.
        title: figure title.

    Returns:
        The figure (heatmap axes and colour-bar axes).
    """
    _require_columns(table, ["base", "stage", "val_f1"], "table")
    if table.empty:
        raise ValueError("table has no rows")
    stages = _stage_order(table["stage"])
    grid = table.assign(stage=table["stage"].astype(str)).pivot_table(
        index="base", columns="stage", values="val_f1", aggfunc="mean").reindex(columns=stages)
    grid.columns = [_STAGES.get(s, s).replace(": ", "\n") for s in stages]
    fig, ax = plt.subplots(figsize=(max(7, 1.9 * len(stages) + 3), 0.55 * len(grid) + 2.5),
                           layout="constrained")
    sns.heatmap(grid, annot=True, fmt=".3f", cmap="viridis", ax=ax, linewidths=1, linecolor="white",
                annot_kws={"fontsize": 10}, cbar_kws={"label": "validation macro F1"})
    ax.tick_params(axis="y", labelrotation=0)
    ax.tick_params(axis="x", labelrotation=0)
    ax.set_xlabel("fine-tuning stage")
    ax.set_ylabel("base model")
    ax.set_title(title)
    return fig


# --------------------------------------------------------------------------- ensemble and thresholds


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
        raise ValueError(
            f"df needs at least one score column ending in _f1 (e.g. val_f1); it has {list(df.columns)}"
        )
    data = df.sort_values("shift")
    fig, ax = plt.subplots(figsize=(10, 5.5), layout="constrained")
    marker = "o" if len(data) <= 30 else None
    for color, column in zip(_palette(len(columns)), columns, strict=True):
        ax.plot(data["shift"], data[column], marker=marker, markersize=4, color=color,
                label=_SERIES_LABELS.get(column, column))
    label_box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}
    for k, shift in enumerate(marked_shifts):
        ax.axvline(shift, color="black", linestyle=":", linewidth=1.2,
                   label="marked shifts" if k == 0 else None)
        ax.annotate(f"shift {shift:g}", (shift, 1), xycoords=("data", "axes fraction"), rotation=90,
                    xytext=(-2, -4), textcoords="offset points", ha="right", va="top", fontsize=9.5,
                    bbox=label_box)
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
        bars = ax.bar(x + (k - (len(metrics) - 1) / 2) * width, np.nan_to_num(values), width,
                      color=color, label=_SERIES_LABELS[metric])
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
        ax.text((0 if np.isnan(v) else v) + 0.01, yi, "n/a" if np.isnan(v) else f"{v:.2f}",
                va="center", fontsize=9)
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

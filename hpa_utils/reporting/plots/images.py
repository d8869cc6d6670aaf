"""EDA figures from the images themselves: colour composites, montages, per-channel intensity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure

from hpa_utils.data.labels import CHANNELS, CLASS_NAMES
from hpa_utils.reporting.plots.style import _palette, _require_columns, _styled, _wrap

#: Display name, colour and colormap end colour of each channel, keyed by file suffix.
_CHANNEL_INFO = {
    "red": ("microtubules (red)", "#d62728", (1.0, 0.0, 0.0)),
    "green": ("protein (green)", "#2ca02c", (0.0, 1.0, 0.0)),
    "blue": ("nucleus (blue)", "#1f77b4", (0.15, 0.35, 1.0)),
    "yellow": ("ER (yellow)", "#e6b800", (1.0, 1.0, 0.0)),
}


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
        fig, axes = plt.subplots(
            nrows, ncols, figsize=(side * ncols, (side + 0.6) * nrows), layout="constrained", squeeze=False
        )
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
        frames = [
            pd.DataFrame({"channel": str(k), "mean": np.asarray(v, dtype=float).ravel()}) for k, v in stats.items()
        ]
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
    fig, axes = plt.subplots(
        1, len(columns), figsize=(5.5 * len(columns) + 1, 5.5), layout="constrained", squeeze=False
    )
    names = {"mean": "per-image mean", "std": "per-image standard deviation"}
    for column, ax in zip(columns, axes[0], strict=True):
        sns.violinplot(
            data=frame,
            x="channel",
            y=column,
            hue="channel",
            order=order,
            hue_order=order,
            palette=colors,
            legend=False,
            cut=0,
            inner="box",
            ax=ax,
        )
        ax.set_xticks(range(len(order)), ticks)
        ax.set_xlabel("channel")
        ax.set_ylabel("pixel intensity (0-255)")
        ax.set_ylim(bottom=0)
        ax.set_title(names[column])
    n_images = len(frame) // max(len(order), 1)
    fig.suptitle(f"{title} ({n_images:,} images)")
    return fig

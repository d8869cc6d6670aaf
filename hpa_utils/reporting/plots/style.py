"""The report's figure theme, :func:`save_figure`, and the input helpers every figure module shares.

Figures are drawn in one seaborn theme (whitegrid, colourblind palette, fonts of 9.9 pt and up)
whatever the global matplotlib state: each plotting function is wrapped in :func:`_styled`, which
applies the theme in an ``rc_context``. :func:`use_style` applies the same theme globally, for a
notebook's own plots. Importing this module changes no global state.
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
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, MaxNLocator

from hpa_utils.data.labels import CLASS_NAMES, NUM_CLASSES
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


def _theme_rc() -> dict:
    rc = dict(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context(_CONTEXT, font_scale=_FONT_SCALE))
    rc["axes.prop_cycle"] = cycler(color=sns.color_palette(_PALETTE))
    rc.update(_RC_EXTRA)
    return rc


def use_style() -> None:
    """Apply the report's seaborn theme globally (for a notebook's own plots).

    The functions of this package draw in the same theme without it; call it
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
        lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", facecolor="white", metadata=metadata),
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


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(str(text), width)) or str(text)


def format_list(items, noun: str | None = None, plural: str | None = None) -> str:
    """Items as words for a title: ``[0, 1, 2, 3]`` -> ``"0, 1, 2 and 3"``.

    Args:
        items: the items (any iterable; each shown with ``str``).
        noun: optional noun put first, in the plural when there is not exactly one item:
            ``format_list([0, 1], "Base model")`` -> ``"Base models 0 and 1"``, ``format_list([2], "Base model")``
            -> ``"Base model 2"``.
        plural: the noun's plural when it is not ``noun + "s"``.

    Returns:
        The text; ``"none"`` (after the plural noun, if any) for no items.
    """
    words = [str(item) for item in items]
    if not words:
        text = "none"
    elif len(words) == 1:
        text = words[0]
    else:
        text = f"{', '.join(words[:-1])} and {words[-1]}"
    if noun is None:
        return text
    return f"{noun if len(words) == 1 else (plural or noun + 's')} {text}"


# --------------------------------------------------------------------------- axis helpers

#: The smallest y range an F1 or loss axis shows: with at most 6 ticks from steps of 1, 2 or 5, a range of
#: 0.04 or more gives tick steps of 0.01 or more, so two decimals label every tick exactly.
_MIN_SPAN = 0.04


def _value_limits(values, min_span: float = _MIN_SPAN, headroom: float = 0.0) -> tuple[float, float]:
    """Y limits for ``values`` (NaN ignored): their range, widened to ``min_span`` around its middle, plus
    a margin (and ``headroom``, a share of the range, on top). The limits of non-negative values start
    at most a hair below zero (shifted up, keeping the range)."""
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return 0.0, 1.0
    low, high = float(array.min()), float(array.max())
    if high - low < min_span:
        middle = (low + high) / 2
        low, high = middle - min_span / 2, middle + min_span / 2
    span = high - low
    bottom, top = low - 0.08 * span, high + (0.08 + headroom) * span
    floor = min(float(array.min()), 0.0) - 0.02 * span
    if array.min() >= 0 and bottom < floor:  # shift up, keeping the range (and so the tick step)
        bottom, top = floor, top + floor - bottom
    return bottom, top


def _two_decimal_axis(axis) -> None:
    """Ticks at steps of 1, 2 or 5 (times a power of ten) labelled with two decimals."""
    axis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
    axis.set_major_formatter(FormatStrFormatter("%.2f"))


def _epoch_axis(ax, first: int, last: int) -> None:
    """Integer epoch ticks: one per epoch up to 20 epochs, else at most 12."""
    ax.set_xlim(first - 0.5, last + 0.5)
    if last - first < 20:
        ax.set_xticks(np.arange(int(first), int(last) + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))

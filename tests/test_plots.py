"""Tests for hpa_utils.plots: each figure builds from small synthetic inputs, is labelled, and saves."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402

from hpa_utils.config.stages import STAGE_ORDER  # noqa: E402
from hpa_utils.data.labels import CLASS_NAMES, NUM_CLASSES, TRAIN_COUNTS  # noqa: E402
from hpa_utils.reporting import plots  # noqa: E402

RNG_SEED = 0
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def rng():
    return np.random.default_rng(RNG_SEED)


def _titled(fig: Figure) -> bool:
    """True when the figure or each of its data axes carries a title."""
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return bool(suptitle) or all(ax.get_title() for ax in _data_axes(fig))


def _data_axes(fig: Figure) -> list:
    """Axes that are not colour bars."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def _tick_texts(ax) -> str:
    return " ".join(t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels())


def _assert_labelled(fig: Figure, n_axes: int) -> None:
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    assert _titled(fig)
    for ax in _data_axes(fig):
        if ax.axison:
            assert ax.get_xlabel(), "x label is empty"
            siblings = ax.get_shared_y_axes().get_siblings(ax)
            assert any(a.get_ylabel() for a in siblings), "y label is empty"


def _assert_class_names(ax, ids=range(NUM_CLASSES)) -> None:
    texts = _tick_texts(ax)
    for i in ids:
        assert f"{i} {CLASS_NAMES[i]}" in texts


def _multihot(rng, n=60) -> np.ndarray:
    y = (rng.random((n, NUM_CLASSES)) < 0.08).astype(np.uint8)
    y[np.arange(n), rng.integers(0, NUM_CLASSES, n)] = 1
    y[:, 27] = 0  # one empty class
    return y


def _history(rng, epochs: int, exact: bool = False) -> pd.DataFrame:
    e = np.arange(1, epochs + 1)
    df = pd.DataFrame(
        {
            "epoch": e,
            "loss": 0.3 / e + rng.random(epochs) * 0.01,
            "val_loss": 0.32 / e + rng.random(epochs) * 0.01,
            "f1": 0.4 - 0.3 / e,
            "val_f1": 0.35 - 0.3 / e,
        }
    )
    if exact:
        df["val_macro_f1"] = df["val_f1"] - 0.02
    return df


def _legends(fig: Figure) -> list:
    return [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]


def _neutral(color) -> bool:
    r, g, b = to_rgb(color)
    return max(r, g, b) - min(r, g, b) < 0.02


def _has_marker(line: Line2D) -> bool:
    return line.get_marker() not in (None, "None", "none", "", " ")


def _visible_points(line: Line2D) -> int:
    """Finite points of a data line inside its axes' view (all finite points of a line not in data coordinates)."""
    xy = np.asarray(line.get_xydata(), dtype=float).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if line.get_transform() == line.axes.transData:
        (x0, x1), (y0, y1) = sorted(line.axes.get_xlim()), sorted(line.axes.get_ylim())
        xy = xy[(xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)]
    return len(xy)


def _shows(line: Line2D) -> bool:
    """A line is seen: a marker on at least one point, or a stroke through at least two."""
    n = _visible_points(line)
    return line.get_visible() and (n >= 1 if _has_marker(line) else n >= 2 and line.get_linestyle() != "None")


def _drawn_like(handle: Line2D, line: Line2D) -> bool:
    """``line`` looks like the legend's ``handle``: same line style and marker; same colour unless the handle is
    grey/black (a key to line styles, drawn in every series' colour)."""
    if line is handle:
        return True
    if line.get_linestyle() != handle.get_linestyle() or _has_marker(line) != _has_marker(handle):
        return False
    if _has_marker(handle) and line.get_marker() != handle.get_marker():
        return False
    return _neutral(handle.get_color()) or to_rgb(line.get_color()) == to_rgb(handle.get_color())


def _assert_legend_handles_visible(fig: Figure) -> None:
    """Every legend entry is drawn somewhere in the figure, visibly (not a one-point line without a marker)."""
    fig.canvas.draw()
    legends = _legends(fig)
    assert legends, "the figure has no legend"
    lines = [line for ax in fig.axes for line in ax.get_lines()]
    patches = [patch for ax in fig.axes for patch in ax.patches]
    for legend in legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts(), strict=True):
            label = text.get_text()
            if isinstance(handle, Line2D):
                assert any(_drawn_like(handle, line) and _shows(line) for line in lines), f"legend {label!r} not drawn"
            elif isinstance(handle, Patch):
                color = to_rgb(handle.get_facecolor())
                assert any(to_rgb(p.get_facecolor()) == color and p.get_visible() for p in patches), label


def _tick_decimals(label: str) -> int:
    match = re.search(r"\.(\d+)", label.replace("\u2212", "-"))
    return len(match.group(1)) if match else 0


def _assert_tick_labels_tidy(fig: Figure, max_decimals: int = 2) -> None:
    """No y tick label with more than ``max_decimals`` decimals, no two equal labels, at least two ticks."""
    fig.canvas.draw()
    checked = 0
    for ax in _data_axes(fig):
        labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        if not labels:  # a panel sharing its row's y axis shows no tick labels of its own
            continue
        checked += 1
        (low, high) = sorted(ax.get_ylim())
        shown = [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks()) if low <= v <= high]
        assert len(shown) >= 2, f"{ax.get_title()!r}: fewer than two y ticks"
        assert len(set(shown)) == len(shown), f"{ax.get_title()!r}: repeated y tick labels {shown}"
        assert all(_tick_decimals(label) <= max_decimals for label in labels), f"{ax.get_title()!r}: {labels}"
        for t in ax.get_xticklabels():
            assert _tick_decimals(t.get_text()) == 0, f"{ax.get_title()!r}: epoch tick {t.get_text()!r}"
    assert checked, "no y tick labels at all"


# ---------------------------------------------------------------- style and saving


def test_use_style_sets_seaborn_theme():
    with plt.rc_context():
        plots.use_style()
        assert plt.rcParams["axes.grid"]
        assert plt.rcParams["xtick.labelsize"] >= 9


def test_drawing_a_figure_leaves_global_rcparams_alone():
    with plt.rc_context({"axes.grid": False, "font.size": 7}):
        fig = plots.plot_labels_per_image(pd.Series({1: 5, 2: 3}))
        assert not plt.rcParams["axes.grid"] and plt.rcParams["font.size"] == 7
    assert fig.axes[0].xaxis.label.get_fontsize() >= 9


def test_save_figure_writes_png_atomically_and_creates_dirs(tmp_path):
    fig = plots.plot_labels_per_image(pd.Series({1: 10, 2: 5, 3: 1}))
    target = tmp_path / "a" / "b" / "labels.png"
    out = plots.save_figure(fig, target, dpi=60)
    assert out == target and target.exists()
    with Image.open(target) as image:
        assert image.format == "PNG" and image.size[0] > 100
    assert sorted(p.name for p in target.parent.iterdir()) == ["labels.png"]


def test_save_figure_leaves_no_temp_file_on_failure(tmp_path, monkeypatch):
    fig = plots.plot_labels_per_image(pd.Series({1: 10}))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(RuntimeError):
        plots.save_figure(fig, tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- EDA


def test_class_counts_has_class_names_log_axis_and_reference(rng):
    counts = pd.Series(rng.integers(0, 500, NUM_CLASSES), index=range(NUM_CLASSES))
    reference = pd.Series(TRAIN_COUNTS) / 100
    fig = plots.plot_class_counts(counts, title="Sample", reference=reference, reference_label="Kaggle")
    _assert_labelled(fig, 1)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert ax.get_title() == "Sample"
    _assert_class_names(ax)
    assert "Kaggle" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_class_counts_accepts_array_and_partial_series():
    plots.plot_class_counts(np.arange(NUM_CLASSES))
    fig = plots.plot_class_counts(pd.Series({0: 5, 16: 2}))
    _assert_class_names(fig.axes[0], [0, 16, 27])


def test_class_counts_rejects_wrong_shape_and_ids():
    with pytest.raises(ValueError, match="28"):
        plots.plot_class_counts(np.ones(5))
    with pytest.raises(ValueError, match="outside"):
        plots.plot_class_counts(pd.Series({30: 1}))


def test_labels_per_image_annotates_percentages():
    fig = plots.plot_labels_per_image(pd.Series({1: 15126, 2: 12485, 3: 3160, 4: 299, 5: 2}))
    _assert_labelled(fig, 1)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.startswith("48.7%") for t in texts)


@pytest.mark.parametrize("normalize", ["conditional", "count"])
def test_cooccurrence_heatmap_names_classes_and_masks_empty(rng, normalize):
    fig = plots.plot_cooccurrence(_multihot(rng), normalize=normalize, annotate=True)
    _assert_labelled(fig, 2)  # heatmap + colour bar
    ax = fig.axes[0]
    _assert_class_names(ax)
    assert "absent" in ax.get_title()


def test_cooccurrence_drop_empty_removes_class(rng):
    fig = plots.plot_cooccurrence(_multihot(rng), drop_empty=True)
    assert "Rods & rings" not in _tick_texts(fig.axes[0])


def test_cooccurrence_rejects_bad_input(rng):
    with pytest.raises(ValueError, match="normalize"):
        plots.plot_cooccurrence(_multihot(rng), normalize="jaccard")
    with pytest.raises(ValueError, match="shape"):
        plots.plot_cooccurrence(np.zeros((4, 5)))


def test_rgb_composite_adds_half_yellow_to_red_and_green():
    image = np.zeros((2, 2, 4), np.uint8)
    image[..., 0], image[..., 1], image[..., 2], image[..., 3] = 10, 20, 30, 100
    rgb = plots.rgb_composite(image)
    assert rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [60, 70, 30]
    image[..., 0] = 250
    assert plots.rgb_composite(image)[0, 0, 0] == 255


@pytest.mark.parametrize(("mode", "n_axes"), [("rgb", 3), ("channels", 12)])
def test_montage_of_three_images(rng, mode, n_axes):
    images = rng.integers(0, 256, (3, 32, 32, 4), dtype=np.uint8)
    titles = ["Nucleoplasm, Cytosol", [16, 0], "Mitochondria, " * 8]
    fig = plots.plot_montage(images, titles, mode=mode, title="Samples")
    assert isinstance(fig, Figure) and len(fig.axes) == n_axes
    texts = " ".join(ax.get_title() for ax in fig.axes)
    texts += " ".join(sub._suptitle.get_text() for sub in fig.subfigs if sub._suptitle is not None)
    assert "Cytokinetic bridge, Nucleoplasm" in " ".join(texts.split())
    if mode == "channels":
        assert "protein (green)" in texts and "ER (yellow)" in texts


def test_montage_rejects_mismatched_titles(rng):
    images = rng.integers(0, 256, (2, 8, 8, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="titles"):
        plots.plot_montage(images, ["one"])
    with pytest.raises(ValueError, match="mode"):
        plots.plot_montage(images, ["a", "b"], mode="grey")


def test_channel_stats_from_long_frame_and_array(rng):
    n = 20
    frame = pd.DataFrame(
        {
            "channel": np.repeat(["red", "green", "blue", "yellow"], n),
            "mean": rng.random(4 * n) * 80,
            "std": rng.random(4 * n) * 40,
        }
    )
    fig = plots.plot_channel_stats(frame)
    _assert_labelled(fig, 2)
    assert fig.axes[0].get_ylabel() == "pixel intensity (0-255)"
    assert "protein" in _tick_texts(fig.axes[0])
    fig = plots.plot_channel_stats(rng.random((n, 4)) * 50)
    _assert_labelled(fig, 1)


def test_split_balance_shows_counts_and_fraction(rng):
    train = rng.integers(1, 300, NUM_CLASSES)
    val = (train * 0.2).astype(int)
    val[27] = 0
    fig = plots.plot_split_balance(train, val)
    _assert_labelled(fig, 2)
    assert fig.axes[0].get_xscale() == "log"
    _assert_class_names(fig.axes[0])
    assert "none" in [t.get_text() for t in fig.axes[1].texts]


def test_split_balance_gives_the_share_of_images_and_names_the_share_of_labels():
    train = np.zeros(NUM_CLASSES)
    val = np.zeros(NUM_CLASSES)
    train[[0, 25]], val[[0, 25]] = 75, 25  # 25 of 100 labels of each class in validation ...
    fig = plots.plot_split_balance(train, val, n_train_images=80, n_val_images=25)  # ... but 25 of 105 images
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend[0].startswith("all images: 23.8% of images") and "(25 of 105)" in legend[0]
    assert legend[1] == "all labels: 25.0% of labels"
    _assert_legend_handles_visible(fig)
    fig = plots.plot_split_balance(train, val)
    legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert legend == ["all labels: 25.0% of labels"]  # no image count, no share of images claimed
    with pytest.raises(ValueError, match="both"):
        plots.plot_split_balance(train, val, n_val_images=25)


# ---------------------------------------------------------------- training


def test_training_curves_multi_model_with_exact_f1(rng):
    histories = {f"base {i}": _history(rng, 12, exact=i == 1) for i in range(3)}
    fig = plots.plot_training_curves(histories, title="Figure 1")
    _assert_labelled(fig, 4)
    assert fig._suptitle.get_text() == "Figure 1"
    assert [ax.get_ylabel() for ax in fig.axes] == ["binary cross-entropy"] * 2 + ["macro F1"] * 2
    assert all(ax.get_xlabel() == "epoch" for ax in fig.axes)
    legend_texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend_texts == ["base 0", "base 1", "base 2"]
    dashed = [line for line in fig.axes[3].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1


def test_training_curves_show_the_other_seeds_faintly(rng):
    histories = {f"v{i}": _history(rng, 5) for i in range(2)}
    others = {"v0": [_history(rng, 5), _history(rng, 5)], "v1": [_history(rng, 5), _history(rng, 5)]}
    fig = plots.plot_training_curves(histories, replicates=others)
    faint = [line for line in fig.axes[0].get_lines() if (line.get_alpha() or 1) < 1]
    assert len(faint) == 4 and len(fig.axes[0].get_lines()) == 6
    legend = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]
    assert "the other 2 of 3 training seeds" in legend


def test_model_scores_mark_each_training_seed(rng):
    rows = [
        {"model": f"v{v}{'' if s == 'base' else '-' + s}-s{seed}", "variant": v, "stage": s, "seed": seed,
         "val_macro_f1": 0.2 + 0.01 * seed + 0.05 * v}
        for v in (0, 1) for s in ("base", "A") for seed in (0, 1, 2)
    ]  # fmt: skip
    fig = plots.plot_model_scores(pd.DataFrame(rows))
    dots = [line for line in fig.axes[0].get_lines() if line.get_marker() == "o"]
    assert sum(len(line.get_xdata()) for line in dots) == len(rows)
    assert "each of 3 training seeds (bar: mean)" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_training_curves_single_one_epoch_history_uses_markers(rng):
    fig = plots.plot_training_curves({"baseline": _history(rng, 1)})
    _assert_labelled(fig, 4)
    line = fig.axes[0].get_lines()[0]
    assert line.get_marker() == "o" and len(line.get_xdata()) == 1


def test_training_curves_single_epoch_stage_shows_every_legend_entry(rng):
    history = _history(rng, 1, exact=True)
    history[["f1", "val_f1"]] = [0.348, 0.3481]  # one point each: matplotlib alone would tick 0.34800, ...
    history["val_macro_f1"] = history["val_f1"]  # equal: the dashed line lies on the solid one
    fig = plots.plot_training_curves({"v1-B": history}, title="Base model 1, stage B")
    _assert_legend_handles_visible(fig)
    _assert_tick_labels_tidy(fig)
    solid, dashed = fig.axes[3].get_lines()
    assert dashed.get_linestyle() == "--" and dashed.get_zorder() > solid.get_zorder()
    assert to_rgb(dashed.get_color()) != to_rgb(solid.get_color()) and dashed.get_marker() != solid.get_marker()
    legend = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]
    assert any(text.startswith("exact macro F1") for text in legend)


def test_training_curves_long_runs_keep_every_legend_entry_visible(rng):
    histories = {"long": _history(rng, 40, exact=True), "one epoch": _history(rng, 1, exact=True)}
    fig = plots.plot_training_curves(histories)
    _assert_legend_handles_visible(fig)
    _assert_tick_labels_tidy(fig)


def _stage_histories(rng, epochs=(5, 2, 1, 1)) -> dict:
    return {
        stage: (f"v1-{stage}" if stage != "base" else "v1", _history(rng, n, exact=True))
        for stage, n in zip(STAGE_ORDER, epochs, strict=True)
    }


def test_stage_chain_numbers_epochs_on_across_base_and_stages(rng):
    histories = _stage_histories(rng)
    shuffled = {stage: histories[stage] for stage in ("C", "A", "base", "B")}  # drawn in report order anyway
    fig = plots.plot_stage_chain(shuffled, title="Base model 1: base training, then stages A, B and C")
    _assert_labelled(fig, 4)
    assert "Figure" not in fig._suptitle.get_text()
    total = 5 + 2 + 1 + 1
    for ax in fig.axes:
        low, high = ax.get_xlim()
        assert low <= 1 and high >= total and high < total + 1
        xs = np.concatenate([np.asarray(line.get_xdata(), dtype=float) for line in ax.get_lines()])
        assert set(xs[np.isfinite(xs)].astype(int)) == set(range(1, total + 1))
        assert [int(t) for t in ax.get_xticks()] == list(range(1, total + 1))
        assert [t.get_text() for t in ax.texts] == ["base", "A", "B", "C"]
    stage_lines = [line for line in fig.axes[0].get_lines() if line.get_label().startswith(("base", "A:", "B:", "C:"))]
    spans = [list(np.asarray(line.get_xdata(), dtype=int)) for line in stage_lines]
    assert spans == [[1, 2, 3, 4, 5], [6, 7], [8], [9]]
    assert all(line.get_marker() == "o" for line in stage_lines)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend[0].startswith("base model (v1, 5 epochs)") and "(v1-B, 1 epoch)" in legend[2]
    _assert_legend_handles_visible(fig)
    _assert_tick_labels_tidy(fig)


def test_stage_chain_accepts_plain_histories_and_a_missing_stage(rng):
    fig = plots.plot_stage_chain({"base": _history(rng, 3), "A": _history(rng, 2)})
    assert fig.axes[0].get_xlim()[1] == pytest.approx(5.5)
    with pytest.raises(ValueError, match="val_loss"):
        plots.plot_stage_chain({"base": _history(rng, 3).drop(columns="val_loss")})
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_stage_chain({})


def test_training_curves_rejects_missing_column(rng):
    with pytest.raises(ValueError, match="val_f1"):
        plots.plot_training_curves({"m": _history(rng, 3).drop(columns="val_f1")})


def _scores_table(rng) -> pd.DataFrame:
    rows = [
        {"model": f"m{b}{s}", "variant": b, "stage": s, "val_macro_f1": 0.3 + 0.04 * k + rng.random() * 0.02}
        for b in range(4)
        for k, s in enumerate(STAGE_ORDER)
    ]
    return pd.DataFrame(rows)


def test_model_scores_grouped_by_base_and_stage(rng):
    fig = plots.plot_model_scores(_scores_table(rng))
    _assert_labelled(fig, 1)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == "base model" and legend[1].startswith("A")


def test_model_scores_without_base_or_stage(rng):
    table = pd.DataFrame({"model": ["a", "b", "c"], "val_macro_f1": [0.3, 0.35, 0.31]})
    fig = plots.plot_model_scores(table)
    _assert_labelled(fig, 1)
    assert "b" in _tick_texts(fig.axes[0])


def test_stage_heatmap_is_annotated(rng):
    fig = plots.plot_stage_heatmap(_scores_table(rng))
    _assert_labelled(fig, 2)
    assert len(fig.axes[0].texts) == 16


# ---------------------------------------------------------------- ensemble and thresholds


def test_shift_sweep_draws_each_score_and_marked_shifts():
    shifts = np.round(np.arange(0.0, 0.41, 0.02), 2)
    df = pd.DataFrame(
        {
            "shift": shifts,
            "val_f1": 0.45 + shifts / 10,
            "public_f1": 0.44 - shifts / 20,
            "private_f1": 0.42 + 0 * shifts,
        }
    )
    fig = plots.plot_shift_sweep(df, synthetic=False)
    _assert_labelled(fig, 1)
    ax = fig.axes[0]
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["validation", "Kaggle public", "Kaggle private", "marked shifts"]
    _assert_legend_handles_visible(fig)


def _sweep() -> pd.DataFrame:
    shifts = np.round(np.arange(0.0, 0.41, 0.02), 2)
    return pd.DataFrame(
        {"shift": shifts, "val_f1": 0.45 + 0 * shifts, "public_f1": 0.44 + 0 * shifts, "private_f1": 0.42 + 0 * shifts}
    )


def _comparison() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "name": ["model 0", "weighted (chosen)"],
            "val_f1": [0.44, 0.49],
            "public_f1": [0.43, 0.448],
            "private_f1": [0.42, 0.423],
            "kind": ["single", "ensemble"],
        }
    )


def _thresholds(held_out: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "key": ["fixed", "global", "per_class"],
            "held_out": held_out,
            "method": ["fixed 0.5", "best global", "per-class"],
            "fit_f1": [0.40, 0.46, 0.55],
            "holdout_f1": [0.39, 0.45, 0.41],
        }
    )


def _legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for legend in _legends(fig) for t in legend.get_texts()]


def test_synthetic_runs_name_the_public_and_private_parts_after_the_synthetic_solution():
    figures = [
        plots.plot_shift_sweep(_sweep(), synthetic=True),
        plots.plot_ensemble_comparison(_comparison(), synthetic=True),
    ]
    for fig in figures:
        texts = _legend_texts(fig)
        assert "public (synthetic solution)" in texts and "private (synthetic solution)" in texts, texts
        assert not any("Kaggle" in t for t in texts), texts
    texts = _legend_texts(plots.plot_threshold_study(_thresholds("private"), synthetic=True))
    assert texts == ["validation (thresholds fitted here)", "hold-out: private (synthetic solution)"]


def test_set_labels_claim_no_source_unless_told():
    for fig in (plots.plot_shift_sweep(_sweep()), plots.plot_ensemble_comparison(_comparison())):
        texts = " ".join(_legend_texts(fig))
        assert "Kaggle" not in texts and "synthetic" not in texts and "public (test labels)" in texts
    assert plots.set_labels(False)["private_f1"] == "Kaggle private"
    fig = plots.plot_shift_sweep(_sweep(), synthetic=True, labels={"val_f1": "validation (20%)"})
    assert _legend_texts(fig)[0] == "validation (20%)"
    texts = _legend_texts(plots.plot_threshold_study(_thresholds("validation half"), synthetic=True))
    assert texts[1] == "hold-out: validation half"
    with pytest.raises(ValueError, match="synthetic"):
        plots.set_labels("yes")


def test_ensemble_comparison_highlights_ensembles():
    df = pd.DataFrame(
        {
            "name": ["model 0", "model 1", "weighted (shift 0.34)", "all 32, equal"],
            "val_f1": [0.44, 0.45, 0.49, 0.48],
            "public_f1": [np.nan, np.nan, 0.448, 0.428],
            "private_f1": [np.nan, np.nan, 0.423, 0.428],
            "kind": ["single", "single", "ensemble", "ensemble"],
        }
    )
    fig = plots.plot_ensemble_comparison(df)
    _assert_labelled(fig, 1)
    bold = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_fontweight() == "bold"]
    assert bold == ["weighted (shift 0.34)", "all 32, equal"]


def test_threshold_study_grouped_bars():
    df = pd.DataFrame(
        {
            "method": ["global 0.5", "best global", "per-class"],
            "fit_f1": [0.40, 0.46, 0.55],
            "holdout_f1": [0.39, 0.45, 0.41],
        }
    )
    fig = plots.plot_threshold_study(df)
    _assert_labelled(fig, 1)
    assert len(fig.axes[0].patches) == 6
    assert "per-class" in _tick_texts(fig.axes[0])


def test_per_class_f1_with_training_counts_and_missing_class(rng):
    f1 = rng.random(NUM_CLASSES)
    f1[27] = np.nan
    fig = plots.plot_per_class_f1(f1, counts=np.array(TRAIN_COUNTS))
    _assert_labelled(fig, 1)
    texts = _tick_texts(fig.axes[0])
    assert "0 Nucleoplasm (train n=12,885)" in texts  # training counts say so
    assert "n/a" in [t.get_text() for t in fig.axes[0].texts]


def test_per_class_f1_annotates_validation_counts_and_shows_absent_classes_as_na(rng):
    val_counts = np.array(TRAIN_COUNTS) // 50
    absent = int((val_counts == 0).sum())
    assert val_counts[27] == 0 and val_counts[15] == 0  # rods & rings, microtubule ends: no validation image
    f1 = np.round(rng.random(NUM_CLASSES), 2)
    f1[val_counts == 0] = 0.0  # as metrics.f1_per_class scores them
    fig = plots.plot_per_class_f1(f1, val_counts=val_counts)
    _assert_labelled(fig, 1)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[0] == "0 Nucleoplasm (n=257)"
    assert "27 Rods & rings (n=0)" in labels and "15 Microtubule ends (n=0)" in labels
    values = {t.get_position()[1]: t.get_text() for t in ax.texts if t.get_position()[1] == round(t.get_position()[1])}
    shown = {label.split(" (")[0]: values[y] for y, label in enumerate(labels)}
    assert shown["27 Rods & rings"] == "n/a" and shown["15 Microtubule ends"] == "n/a"
    assert shown["0 Nucleoplasm"] == f"{f1[0]:.2f}"
    assert len(ax.patches) == NUM_CLASSES - absent  # no bar for a class absent from validation
    notes = " ".join(t.get_text() for t in ax.texts)
    assert f"averages all {NUM_CLASSES} classes" in notes and "as 0" in notes
    legend = _legend_texts(fig)
    assert legend[0] == f"macro F1 (all {NUM_CLASSES} classes) = {f1.mean():.3f}"
    assert legend[1] == f"mean of the {NUM_CLASSES - absent} classes in validation = {f1[val_counts > 0].mean():.3f}"
    _assert_legend_handles_visible(fig)


def test_per_class_f1_rejects_counts_that_cannot_be_the_validation_images():
    f1 = np.full(NUM_CLASSES, 0.5)
    with pytest.raises(ValueError, match="no validation image"):
        plots.plot_per_class_f1(f1, val_counts=np.r_[np.ones(NUM_CLASSES - 1), 0])
    with pytest.raises(ValueError, match="val_counts"):
        plots.plot_per_class_f1(f1, counts=np.ones(NUM_CLASSES), val_counts=np.ones(NUM_CLASSES))


def test_per_class_f1_rejects_out_of_range():
    with pytest.raises(ValueError, match="0..1"):
        plots.plot_per_class_f1(np.full(NUM_CLASSES, 1.5))


# ---------------------------------------------------------------- titles: the HTML report numbers the figures


def _code_strings(source: str) -> list[str]:
    """Every string literal of a code cell, f-strings' literal parts included."""
    return [
        node.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_notebooks_titles_carry_no_figure_number():
    assert len(NOTEBOOKS) >= 4
    numbered = re.compile(r"\bFig(ure)?s?\.?\s*\d")
    for notebook in NOTEBOOKS:
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        for cell in cells:
            if cell["cell_type"] != "code":
                continue
            source = "".join(cell["source"])
            found = [text for text in _code_strings(source) if numbered.search(text)]
            assert not found, f"{notebook.name}: {found}"
            assert "figure_variants}" not in source, f"{notebook.name}: a list put in a title as [0, 1, 2]"


def test_plot_default_titles_carry_no_figure_number():
    for name in plots.__all__:
        function = getattr(plots, name)
        if callable(function) and "title" in inspect.signature(function).parameters:
            default = inspect.signature(function).parameters["title"].default
            assert default is None or not re.search(r"Figure\s*\d", str(default)), name


def test_format_list_writes_words():
    assert plots.format_list([0, 1, 2, 3]) == "0, 1, 2 and 3"
    assert plots.format_list([0, 1, 2, 3], "Base model") == "Base models 0, 1, 2 and 3"
    assert plots.format_list([4], "Base model") == "Base model 4"
    assert plots.format_list(["a", "b"]) == "a and b"
    assert plots.format_list([], "class", "classes") == "classes none"


def test_a_comparison_of_many_models_is_one_row_each_best_first():
    from hpa_utils.reporting.plots.evaluation import DOT_PLOT_ROWS

    n = DOT_PLOT_ROWS + 20
    df = pd.DataFrame(
        {
            "name": [f"m{i}" for i in range(n)] + ["weighted (chosen)"],
            "kind": ["single"] * n + ["ensemble"],
            "val_f1": list(np.linspace(0.1, 0.3, n)) + [0.35],
            "public_f1": list(np.linspace(0.1, 0.3, n)) + [0.34],
        }
    )
    fig = plots.plot_ensemble_comparison(df, synthetic=True)
    ax = fig.axes[0]
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert len(ticks) == n + 1 and ticks[0] == "weighted (chosen)" and ticks[1] == f"m{n - 1}"
    assert fig.get_size_inches()[1] < 0.35 * (n + 1) + 2.5  # one short row per predictor, not a bar group
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "public (synthetic solution)" in legend
    plt.close(fig)


def test_ablation_says_what_its_intervals_cover():
    rows = pd.DataFrame(
        {
            "technique": ["baseline (the report's)", "focal loss", "weight averaging (EMA)"],
            "key": ["baseline", "focal", "ema"],
            "seeds": [3, 3, 3],
            **{f"d_val{end}": [np.nan, -0.05 + d, 0.04 + d] for end, d in (("", 0), ("_low", -0.02), ("_high", 0.02))},
        }
    )
    fig = plots.plot_ablation(rows, sets=("val",))
    (ax,) = fig.axes
    assert "over 3 training seeds, then images" in ax.get_xlabel()
    assert len(ax.get_yticks()) == 2
    fig = plots.plot_ablation(rows.drop(columns="seeds"), sets=("val",))
    assert fig.axes[0].get_xlabel().endswith("interval over images)")

"""Tests for hpa_utils.plots: each figure builds from small synthetic inputs, is labelled, and saves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from hpa_utils.data.labels import CLASS_NAMES, NUM_CLASSES, TRAIN_COUNTS  # noqa: E402
from hpa_utils.reporting import plots  # noqa: E402
from hpa_utils.training.stages import STAGE_ORDER  # noqa: E402

RNG_SEED = 0


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


def test_training_curves_single_one_epoch_history_uses_markers(rng):
    fig = plots.plot_training_curves({"baseline": _history(rng, 1)})
    _assert_labelled(fig, 4)
    line = fig.axes[0].get_lines()[0]
    assert line.get_marker() == "o" and len(line.get_xdata()) == 1


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
    fig = plots.plot_shift_sweep(df)
    _assert_labelled(fig, 1)
    ax = fig.axes[0]
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(dotted) == 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["validation", "Kaggle public", "Kaggle private", "marked shifts"]


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


def test_per_class_f1_with_counts_and_missing_class(rng):
    f1 = rng.random(NUM_CLASSES)
    f1[27] = np.nan
    fig = plots.plot_per_class_f1(f1, counts=np.array(TRAIN_COUNTS))
    _assert_labelled(fig, 1)
    texts = _tick_texts(fig.axes[0])
    assert "0 Nucleoplasm (n=12,885)" in texts
    assert "n/a" in [t.get_text() for t in fig.axes[0].texts]


def test_per_class_f1_rejects_out_of_range():
    with pytest.raises(ValueError, match="0..1"):
        plots.plot_per_class_f1(np.full(NUM_CLASSES, 1.5))

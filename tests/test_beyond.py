"""Issue 12, beyond the report: each technique on hand-made cases (focal loss against its formula, the eight
test-time transforms, label-ratio thresholds, repeat-factor oversampling, weight averaging that resumes
exactly), Grad-CAM on a planted pattern, the generator's pattern maps and the pointing game, and the switches."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_training_data

from hpa_utils.backend import keras
from hpa_utils.data.dataset import open_dataset
from hpa_utils.evaluation.thresholds import label_ratio_thresholds
from hpa_utils.training.batches import TrainingData, repeat_factor_rows, repeat_factors
from hpa_utils.training.losses import make_loss
from hpa_utils.training.registry import load_history, train_base
from hpa_utils.training.settings import TrainSettings
from hpa_utils.training.tta import TRANSFORMS, combine, dihedral, inverse

# ----------------------------------------------------------------------------- focal loss


def test_focal_loss_is_its_formula_averaged_over_classes():
    y = np.array([[1, 0, 0, 1], [0, 0, 1, 0]], dtype="float32")
    p = np.array([[0.9, 0.2, 0.6, 0.3], [0.1, 0.05, 0.4, 0.7]], dtype="float32")
    gamma = 2.0
    p_t = np.where(y == 1, p, 1 - p)
    expected = np.mean(-((1 - p_t) ** gamma) * np.log(p_t))  # per element, mean over classes, then batch
    loss = make_loss("focal", gamma)
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-4)
    # gamma 0 is plain binary cross-entropy; the report's loss stays Keras' string
    assert float(make_loss("focal", 0.0)(y, p)) == pytest.approx(np.mean(-np.log(p_t)), rel=1e-4)
    assert make_loss("bce") == "binary_crossentropy"
    with pytest.raises(ValueError, match="unknown loss 'dice'"):
        make_loss("dice")


# ----------------------------------------------------------------------------- test-time augmentation


def test_the_eight_transforms_are_distinct_and_each_inverts_to_the_identity():
    x = np.random.default_rng(0).integers(0, 255, (2, 6, 6, 4)).astype(np.uint8)
    views = [dihedral(x, k, flip) for k, flip in TRANSFORMS]
    assert len(TRANSFORMS) == 8 and len({v.tobytes() for v in views}) == 8
    for (k, flip), view in zip(TRANSFORMS, views, strict=True):
        np.testing.assert_array_equal(inverse(view, k, flip), x)


def test_tta_on_a_symmetric_image_equals_the_plain_prediction():
    from hpa_utils.training.models import build_variant
    from hpa_utils.training.predictions import predict

    keras.utils.set_random_seed(0)
    model = build_variant(0, (80, 80, 4))
    # symmetric under every flip and quarter turn: a function of the distance from the centre
    yy, xx = np.mgrid[:80, :80] - 39.5
    radius = np.sqrt(yy**2 + xx**2)
    image = np.stack([np.cos(radius / (2 + c)) for c in range(4)], axis=-1)
    images = ((image - image.min()) / np.ptp(image) * 255).astype(np.uint8)[None].repeat(3, axis=0)
    for k, flip in TRANSFORMS:
        np.testing.assert_array_equal(dihedral(images, k, flip), images)
    plain = predict(model, images, batch_size=3)
    np.testing.assert_allclose(predict(model, images, batch_size=3, tta="mean"), plain, atol=1e-6)
    np.testing.assert_allclose(predict(model, images, batch_size=3, tta="max"), plain, atol=1e-6)
    assert predict(model, images, batch_size=3, tta="views").shape == (8, 3, 28)


def test_tta_pools_views_by_mean_or_max():
    views = np.array([[[0.1, 0.9]], [[0.3, 0.5]]])
    np.testing.assert_allclose(combine(views, "mean"), [[0.2, 0.7]])
    np.testing.assert_allclose(combine(views, "max"), [[0.3, 0.9]])
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        combine(views, "median")


# ----------------------------------------------------------------------------- label-ratio thresholds


def test_label_ratio_thresholds_hit_each_class_rate():
    rng = np.random.default_rng(1)
    p = rng.random((400, 5))
    rates = np.array([0.5, 0.1, 0.0125, 0.0, 1.0])
    thresholds = label_ratio_thresholds(p, rates)
    np.testing.assert_allclose((p >= thresholds).mean(axis=0), np.rint(rates * 400) / 400)
    assert thresholds[3] > 1.0  # a class never seen in training is never predicted
    with pytest.raises(ValueError, match="shares of images"):
        label_ratio_thresholds(p, np.array([0.5, 0.1, 2.0, 0.0, 1.0]))


# ----------------------------------------------------------------------------- oversampling


def test_repeat_factors_follow_the_square_root_rule():
    # class 0 on 8 of 10 images, class 1 on 1 of 10, class 2 on none
    y = np.zeros((10, 3), bool)
    y[:8, 0] = True
    y[9, 1] = True
    factors = repeat_factors(y, threshold=0.4)
    assert factors[0] == 1.0  # a common class is not repeated
    assert factors[9] == pytest.approx(2.0)  # sqrt(0.4 / 0.1)
    assert factors[8] == 1.0  # no label
    rows = repeat_factor_rows(y, np.arange(10), 0.4, seed=0)
    assert np.count_nonzero(rows == 9) == 2 and np.count_nonzero(rows == 0) == 1
    np.testing.assert_array_equal(rows, repeat_factor_rows(y, np.arange(10), 0.4, seed=0))  # fixed per seed


# ----------------------------------------------------------------------------- training with the switches


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainingData:
    return tiny_training_data(tmp_path_factory, 80, workers=1)


def test_a_model_trained_before_the_switches_is_still_recognised():
    """The summary records a technique's keys only when it is on, so old models are not retrained."""
    old_keys = {"epochs", "batch_size", "learning_rate", "augment", "prior_bias", "seed", "part"}
    assert set(TrainSettings(epochs=2).record()) == old_keys
    on = TrainSettings(epochs=2, loss="focal", ema=True, oversample=True).record()
    assert set(on) - old_keys == {"loss", "focal_gamma", "ema", "ema_momentum", "oversample", "oversample_threshold"}


def test_weight_averaging_trains_the_raw_weights_keeps_the_average_and_resumes(data, tmp_path):
    """Adam's use_ema leaves the training trajectory alone (the same training loss as without it), validates
    and keeps the averaged weights, and a resumed job goes on from the raw weights (else its loss would part)."""

    def stop_after_first_epoch(line: str) -> None:
        if "epoch 1/2" in line:
            raise KeyboardInterrupt

    runs = {}
    for ema in (True, False):
        settings = TrainSettings(epochs=2, batch_size=16, seed=0, ema=ema, ema_momentum=0.9, loss="focal")
        runs[ema, "whole"] = train_base(0, data, settings, tmp_path / f"{ema}-whole", log=lambda line: None)
        with pytest.raises(KeyboardInterrupt):
            train_base(0, data, settings, tmp_path / f"{ema}-resumed", log=stop_after_first_epoch)
        runs[ema, "resumed"] = train_base(0, data, settings, tmp_path / f"{ema}-resumed", log=lambda line: None)
    assert runs[True, "whole"]["settings"]["ema"] is True and runs[True, "whole"]["settings"]["loss"] == "focal"
    assert runs[True, "resumed"]["epochs_trained"] == 2
    for kind in ("whole", "resumed"):
        ema, plain = load_history(tmp_path / f"True-{kind}", "v0"), load_history(tmp_path / f"False-{kind}", "v0")
        np.testing.assert_allclose(ema["loss"], plain["loss"], rtol=2e-3)  # swaps round
        # validated with the averaged weights: not the raw weights' validation loss (on 36 images near the prior,
        # the two differ in the fifth digit; the weights below differ plainly)
        assert not np.array_equal(ema["val_loss"], plain["val_loss"])
    wa = keras.saving.load_model(tmp_path / "True-whole" / "v0.keras", compile=False).get_weights()
    wp = keras.saving.load_model(tmp_path / "False-whole" / "v0.keras", compile=False).get_weights()
    assert any(not np.allclose(x, y) for x, y in zip(wa, wp, strict=True))


def test_oversampling_lengthens_the_epoch_with_rare_images(data):
    plain = data.batches("train", TrainSettings(epochs=1, batch_size=16))
    over = data.batches("train", TrainSettings(epochs=1, batch_size=16, oversample=True, oversample_threshold=0.5))
    assert len(over.indices) > len(plain.indices)
    assert set(over.indices) == set(plain.indices)


# ----------------------------------------------------------------------------- Grad-CAM and the pointing game


def _planted_model(size: int = 32) -> keras.Model:
    """A model whose class-3 score is the mean green intensity: conv 1x1 picking green, GAP, dense."""
    layers = keras.layers
    inputs = keras.Input((size, size, 4))
    x = layers.Conv2D(2, 1, activation="relu", name="cnn_block3_conv3")(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    logits = layers.Dense(28, name="dnn_logits")(x)
    model = keras.Model(inputs, layers.Activation("sigmoid")(logits))
    kernel = np.zeros((1, 1, 4, 2), "float32")
    kernel[0, 0, 1, 0] = 1.0  # filter 0: the green channel
    kernel[0, 0, 0, 1] = 1.0  # filter 1: the red channel
    model.get_layer("cnn_block3_conv3").set_weights([kernel, np.zeros(2, "float32")])
    dense = np.zeros((2, 28), "float32")
    dense[0, 3] = 5.0  # class 3 reads the green filter only
    dense[1, 7] = 5.0  # class 7 the red one
    model.get_layer("dnn_logits").set_weights([dense, np.zeros(28, "float32")])
    return model


def test_grad_cam_has_the_image_shape_and_finds_a_planted_pattern():
    from hpa_utils.studies.gradcam import pointing_scores
    from hpa_utils.training.gradcam import grad_cam

    images = np.zeros((2, 32, 32, 4), "float32")
    images[0, 4:12, 20:28, 1] = 1.0  # a green square, top right
    images[1, 20:30, 2:10, 1] = 1.0  # another, bottom left
    images[:, :, :, 0] = 0.5  # red everywhere
    maps = grad_cam(_planted_model(), images, [3, 3])
    assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
    assert 0.0 <= maps.min() and maps.max() == pytest.approx(1.0)
    for image, cam in zip(images, maps, strict=True):
        mask = image[..., 1] > 0
        mass, share, hit = pointing_scores(cam, mask)
        assert hit and mass > 0.9 > 3 * share
    # class 7 reads red, which is everywhere: its map is flat, not on the square
    red = grad_cam(_planted_model(), images[:1], 7)[0]
    assert red.min() == pytest.approx(1.0, abs=1e-5)


def test_pointing_scores_on_hand_made_maps():
    from hpa_utils.studies.gradcam import pointing_scores

    mask = np.zeros((4, 4), bool)
    mask[0, :2] = True
    cam = np.zeros((4, 4))
    cam[0, 0], cam[3, 3] = 3.0, 1.0
    assert pointing_scores(cam, mask) == (pytest.approx(0.75), 0.125, True)
    assert pointing_scores(np.ones((4, 4)), mask)[0] == pytest.approx(0.125)  # even map: chance
    assert pointing_scores(np.zeros((4, 4)), mask) == (0.0, 0.125, False)


def test_pattern_maps_replay_the_generator_without_changing_a_pixel(tmp_path):
    import cv2

    from hpa_utils.data.synth import generate_dataset
    from hpa_utils.data.synth.render import render_channels
    from hpa_utils.data.synth.writer import _rng, pattern_maps

    root = tmp_path / "data"
    generate_dataset(root, n_train=6, n_test=2, size=64, seed=3, workers=1)
    dataset = open_dataset(root)
    maps = pattern_maps(root, "train", dataset.train_ids[:3])
    for index, image_id in enumerate(dataset.train_ids[:3]):
        labels = set(np.flatnonzero(dataset.y[index]))
        assert set(maps[image_id]) == labels
        assert all(m.shape == (64, 64) and m.max() == pytest.approx(1.0) for m in maps[image_id].values())
        channels = render_channels(sorted(labels), 64, _rng(3, 0, index), patterns={})
        green = cv2.imread(str(root / "train" / f"{image_id}_green.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(channels["green"], green)
    with pytest.raises(Exception, match="not in the synthetic train split"):
        pattern_maps(root, "train", ["no-such-id"])


# ----------------------------------------------------------------------------- the switches


def test_switches_are_preset_keys_off_by_default(tmp_path):
    from hpa_utils.config.resolve import resolve_config
    from hpa_utils.run.runner import NOTEBOOKS

    quick = resolve_config("quick")
    assert (quick.train.loss, quick.train.ema, quick.train.oversample, quick.ensemble.tta) == (
        "bce",
        False,
        False,
        "none",
    )
    beyond = next(n for n in NOTEBOOKS if n.name == "05_beyond")
    assert not beyond.enabled(quick) and beyond.enabled(resolve_config("standard"))
    assert beyond.enabled(resolve_config("quick", ["beyond.run=true"]))
    on = resolve_config("quick", ["train.loss=focal", "train.ema=true", "train.oversample=true", "ensemble.tta=max"])
    assert (on.train.loss, on.train.ema, on.train.oversample, on.ensemble.tta) == ("focal", True, True, "max")
    with pytest.raises(ValueError, match="beyond.techniques must list some of"):
        resolve_config("quick", ["beyond.techniques=[focal, dropout]"])
    with pytest.raises(ValueError, match="train.loss"):
        resolve_config("quick", ["train.loss=dice"])


def test_the_smoke_run_reports_the_ablation_and_grad_cam(smoke_run):
    out = smoke_run[0]
    table = pd.read_csv(out / "results" / "beyond_ablation.csv")
    assert list(table["key"]) == ["baseline", "focal", "ema", "oversample", "tta_mean", "tta_max", "label_ratio", "all"]
    for split in ("val", "public", "private", "test"):
        assert (table[f"d_{split}_low"] <= table[f"d_{split}"] + 1e-12).all()
        assert (table[f"d_{split}"] <= table[f"d_{split}_high"] + 1e-12).all()
    assert set(table["verdict"].dropna()) <= {"helps", "hurts", "no clear difference"}
    summary = json.loads((out / "results" / "beyond.json").read_text())
    point = summary["pointing"]
    assert point["maps"] > 0 and 0 < point["pattern_share"] < 1
    # the pointing game's baselines, and its verdict against the class-agnostic cell-stain map
    assert set(point["baselines"]) == {"gradcam", "uniform", "cellstain", "green"}
    uniform = point["baselines"]["uniform"]
    assert uniform["lift"] == 1.0 and uniform["peak"] == point["peak_chance"]
    assert point["verdict"] in {"better than", "no better than", "worse than"}
    low, high = point["vs_cellstain"]["lift"]["low"], point["vs_cellstain"]["lift"]["high"]
    assert point["verdict"] == ("better than" if low > 0 else "worse than" if high < 0 else "no better than")
    pointing = pd.read_csv(out / "results" / "beyond_pointing.csv")
    assert pointing.loc[pointing["val_predicted"] == 0, "maps"].isna().all()  # classes never predicted: left out
    shown = set(summary["gradcam_best"] + summary["gradcam_worst"])
    assert point["shown_from"] == "all" or shown <= set(pointing.loc[pointing["val_predicted"] > 0, "class"])
    assert (out / "figures" / "beyond_ablation.png").is_file() and (out / "figures" / "beyond_gradcam.png").is_file()
    html = (out / "report" / "report.html").read_text()
    assert "6. Beyond the original" in html and "7. Discussion" in html
    assert "Pointing game per class" in html and f"{point['verdict']} a map that ignores the class</strong>" in html


def test_grad_cam_is_the_same_on_tensorflow_and_jax(tmp_path):
    """The gradient code is backend-specific (TensorFlow's tape, JAX's grad): one saved model, one input, the
    same maps. Runs where JAX is installed (`.ci/run` installs the `jax` extra)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    from hpa_utils.training.gradcam import grad_cam
    from hpa_utils.training.models import build_variant

    keras.utils.set_random_seed(0)
    model = build_variant(0, (80, 80, 4), output_bias=np.linspace(-3, 0, 28))
    model.save(tmp_path / "model.keras")
    x = np.random.default_rng(0).random((3, 80, 80, 4)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    script = (
        "import numpy as np, sys; from hpa_utils.backend import keras; "
        "from hpa_utils.training.gradcam import grad_cam; import hpa_utils.training.models; "
        "assert keras.backend.backend() == 'jax'; "
        f"m = keras.saving.load_model(r'{tmp_path / 'model.keras'}', compile=False); "
        f"np.save(r'{tmp_path / 'jax.npy'}', grad_cam(m, np.load(r'{tmp_path / 'x.npy'}'), [0, 5, 25]))"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, capture_output=True, timeout=300)
    ours = grad_cam(model, x, [0, 5, 25])
    theirs = np.load(tmp_path / "jax.npy")
    assert ours.shape == theirs.shape == (3, 80, 80) and ours.max() > 0
    np.testing.assert_allclose(ours, theirs, atol=1e-4)

"""The baseline matches the report's summary table; parts, variants and the output bias behave."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from hpa_utils.training import models  # noqa: E402

# SPEC.md's table, row by row (the "GAP(d1) || GAP(d2) || GAP(d3) concatenated" row is its four layers).
EXPECTED_LAYERS = [
    ("BatchNormalization", (256, 256, 4), 16),
    ("Conv2D", (254, 254, 32), 1184),
    ("BatchNormalization", (254, 254, 32), 128),
    ("MaxPooling2D", (127, 127, 32), 0),
    ("Dropout", (127, 127, 32), 0),
    ("BatchNormalization", (127, 127, 32), 128),
    ("Conv2D", (63, 63, 64), 18496),
    ("BatchNormalization", (63, 63, 64), 256),
    ("Conv2D", (61, 61, 64), 36928),
    ("BatchNormalization", (61, 61, 64), 256),
    ("Conv2D", (59, 59, 64), 36928),
    ("BatchNormalization", (59, 59, 64), 256),
    ("MaxPooling2D", (29, 29, 64), 0),
    ("Dropout", (29, 29, 64), 0),
    ("BatchNormalization", (29, 29, 64), 256),
    ("Conv2D", (27, 27, 128), 73856),
    ("BatchNormalization", (27, 27, 128), 512),
    ("Conv2D", (25, 25, 128), 147584),
    ("BatchNormalization", (25, 25, 128), 512),
    ("Conv2D", (23, 23, 128), 147584),
    ("Dropout", (23, 23, 128), 0),
    ("GlobalAveragePooling2D", (32,), 0),
    ("GlobalAveragePooling2D", (64,), 0),
    ("GlobalAveragePooling2D", (128,), 0),
    ("Concatenate", (224,), 0),
    ("BatchNormalization", (224,), 896),
    ("Dense", (256,), 57600),
    ("Dropout", (256,), 0),
    ("BatchNormalization", (256,), 1024),
    ("Dense", (256,), 65792),
    ("Dropout", (256,), 0),
    ("Dense", (28,), 7196),
    ("Activation", (28,), 0),
]


@pytest.fixture(scope="module")
def baseline():
    return models.build_baseline()


def _count(weights) -> int:
    return sum(int(np.prod(weight.shape)) for weight in weights)


def test_baseline_parameter_counts_match_report(baseline):
    assert baseline.count_params() == 597_388
    assert _count(baseline.trainable_weights) == 595_268
    assert _count(baseline.non_trainable_weights) == 2_120


def test_baseline_layers_match_report_table_row_by_row(baseline):
    assert type(baseline.layers[0]).__name__ == "InputLayer"
    actual = [
        (type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params()) for layer in baseline.layers[1:]
    ]
    assert actual == EXPECTED_LAYERS


def test_baseline_gap_branches_read_the_three_dropouts(baseline):
    for index in (1, 2, 3):
        gap = baseline.get_layer(f"cnn_block{index}_gap")
        assert gap.input is baseline.get_layer(f"cnn_block{index}_dropout").output


def test_summary_table_has_report_columns_and_total(baseline):
    table = models.model_summary_table(baseline)
    assert list(table.columns) == ["layer", "type", "output shape", "params"]
    assert table["params"].sum() == 597_388
    assert table.loc[table["layer"] == "cnn_block2_conv1", "output shape"].item() == "63,63,64"


def test_every_layer_is_in_exactly_one_part(baseline):
    cnn = {layer.name for layer in models.part_layers(baseline, "cnn")}
    dnn = {layer.name for layer in models.part_layers(baseline, "dnn")}
    assert not cnn & dnn
    assert cnn | dnn == {layer.name for layer in baseline.layers}
    assert "cnn_concat" in cnn and "dnn_bn0" in dnn and "dnn_sigmoid" in dnn


@pytest.mark.parametrize("kernel_size, minimum", [(3, 76), (5, 146), ((5, 5, 3), 98)])
def test_min_input_size_leaves_a_1x1_last_map_and_one_less_is_rejected(kernel_size, minimum):
    assert models.min_input_size(kernel_size) == minimum
    model = models.build_baseline((minimum, minimum, 4), kernel_size=kernel_size)
    assert tuple(model.get_layer("cnn_block3_conv3").output.shape[1:3]) == (1, 1)
    for shape in [(minimum - 1, minimum, 4), (minimum, minimum - 1, 4)]:
        with pytest.raises(ValueError, match=f"minimum is {minimum}x{minimum}"):
            models.build_baseline(shape, kernel_size=kernel_size)


def test_any_channel_count_is_accepted():
    model = models.build_baseline((80, 96, 3))
    assert model.output.shape[1:] == (28,)


def _trainable_paths(model) -> set[str]:
    return {weight.path for weight in model.trainable_weights}


def test_set_trainable_part_leaves_only_that_parts_weights_trainable(baseline):
    models.set_trainable_part(baseline, "all")
    every = _trainable_paths(baseline)
    cnn = {path for path in every if path.startswith("cnn_")}
    dnn = {path for path in every if path.startswith("dnn_")}
    assert cnn and dnn and cnn | dnn == every
    try:
        models.set_trainable_part(baseline, "cnn")
        assert _trainable_paths(baseline) == cnn
        models.set_trainable_part(baseline, "dnn")
        assert _trainable_paths(baseline) == dnn
        assert _count(baseline.trainable_weights) == 57600 + 65792 + 7196 + 2 * (224 + 256)
    finally:
        models.set_trainable_part(baseline, "all")
    assert _trainable_paths(baseline) == every


def test_unknown_part_is_rejected(baseline):
    with pytest.raises(ValueError, match="cnn, dnn"):
        models.set_trainable_part(baseline, "head")


def test_training_the_dnn_part_leaves_cnn_weights_and_statistics_unchanged():
    keras.utils.set_random_seed(0)
    model = models.build_baseline((76, 76, 4))
    models.set_trainable_part(model, "dnn")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy")
    before = {weight.path: keras.ops.convert_to_numpy(weight) for weight in model.weights}
    rng = np.random.default_rng(0)
    images = rng.random((4, 76, 76, 4), dtype=np.float32)
    labels = (rng.random((4, 28)) < 0.3).astype("float32")
    model.fit(images, labels, epochs=1, batch_size=4, verbose=0)
    for weight in model.weights:
        changed = not np.array_equal(before[weight.path], keras.ops.convert_to_numpy(weight))
        if weight.path.startswith("cnn_"):
            assert not changed, weight.path
    assert not np.array_equal(
        before["dnn_logits/kernel"], keras.ops.convert_to_numpy(model.get_layer("dnn_logits").kernel)
    )


def test_eight_variants_variant_zero_is_the_baseline():
    assert len(models.VARIANTS) == 8
    assert len({variant.name for variant in models.VARIANTS}) == 8
    baseline = models.get_variant(0)
    assert baseline.kernel_size == 3
    assert baseline.dropout_rates == models.BASELINE_DROPOUT_RATES
    assert baseline.dense_dropout_rates == models.BASELINE_DENSE_DROPOUT_RATES
    assert models.get_variant(baseline.name) is baseline


@pytest.mark.parametrize("key", [8, -1, "k9", 1.0])
def test_unknown_variant_is_rejected_listing_valid_ones(key):
    with pytest.raises(ValueError, match="0=k3"):
        models.get_variant(key)


@pytest.mark.parametrize("index", range(8))
def test_every_variant_builds_and_predicts_probabilities(index):
    variant = models.get_variant(index)
    size = max(96, models.min_input_size(variant.kernel_size))
    model = models.build_variant(index, (size, size, 4))
    assert model.get_layer("cnn_block1_conv1").kernel_size == (models.block_kernel_sizes(variant.kernel_size)[0],) * 2
    assert model.get_layer("cnn_block3_dropout").rate == variant.dropout_rates[2]
    assert model.get_layer("dnn_dropout1").rate == variant.dense_dropout_rates[0]
    images = np.random.default_rng(index).random((2, size, size, 4), dtype=np.float32)
    predictions = model.predict(images, verbose=0)
    assert predictions.shape == (2, 28)
    assert np.all((predictions >= 0) & (predictions <= 1))


def test_describe_variants_lists_all_eight_with_parameter_counts():
    table = models.describe_variants()
    assert list(table["name"]) == [variant.name for variant in models.VARIANTS]
    assert table.loc[0, "params"] == 597_388
    assert (table["params"] > 0).all()


def test_prior_log_odds_is_the_clipped_logit_of_class_prevalence():
    labels = np.zeros((4, 3))
    labels[0, 0] = 1  # prevalence 0.25
    labels[:, 1] = 1  # prevalence 1 -> clipped
    bias = models.prior_log_odds(labels, eps=1e-3)
    np.testing.assert_allclose(bias, [np.log(1 / 3), np.log(0.999 / 0.001), np.log(0.001 / 0.999)], rtol=1e-6)
    with pytest.raises(ValueError):
        models.prior_log_odds(np.array([0, 1, 1]))


def test_output_bias_makes_initial_predictions_the_class_prior():
    labels = (np.random.default_rng(0).random((200, 28)) < np.linspace(0.01, 0.6, 28)).astype("float32")
    bias = models.prior_log_odds(labels)
    model = models.build_baseline((76, 76, 4), output_bias=bias)
    predictions = model.predict(np.zeros((2, 76, 76, 4), dtype="float32"), verbose=0)
    np.testing.assert_allclose(predictions.mean(axis=0), labels.mean(axis=0), atol=1e-5)
    plain = models.build_baseline((76, 76, 4)).predict(np.zeros((2, 76, 76, 4), "float32"), verbose=0)
    np.testing.assert_allclose(plain, 0.5, atol=1e-6)


def test_output_bias_of_wrong_length_is_rejected():
    with pytest.raises(ValueError, match="28 values"):
        models.build_baseline((76, 76, 4), output_bias=np.zeros(27))

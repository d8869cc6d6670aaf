"""Training end to end at 96 px: base model + three stages write every artefact; re-runs skip; resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_training_data

from hpa_utils.training.batches import CachedBatches, TrainingData
from hpa_utils.training.fit import HISTORY_COLUMNS
from hpa_utils.training.registry import finetune, load_history, models_table, train_base
from hpa_utils.training.settings import TrainSettings


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainingData:
    return tiny_training_data(tmp_path_factory, 96)


SETTINGS = TrainSettings(epochs=2, batch_size=16, learning_rate=1e-3, seed=0)


def test_base_and_three_stages_write_every_artefact_and_rerun_skips(data, tmp_path):
    models = tmp_path / "models"
    lines: list[str] = []
    train_base(0, data, SETTINGS, models, log=lines.append)
    for stage in "ABC":
        finetune(0, stage, data, TrainSettings(epochs=1, batch_size=16, learning_rate=5e-4), models, log=lines.append)
    for name, epochs in (("v0", 2), ("v0-A", 1), ("v0-B", 1), ("v0-C", 1)):
        assert (models / f"{name}.keras").is_file()
        summary = json.loads((models / f"{name}.json").read_text())
        assert summary["epochs_trained"] == epochs and 0.0 <= summary["val_macro_f1"] <= 1.0
        history = load_history(models, name)
        assert list(history.columns) == HISTORY_COLUMNS and len(history) == epochs
        assert history[["loss", "val_loss", "f1", "val_f1", "val_macro_f1"]].notna().all().all()
        assert not (models / f"{name}.ckpt").exists()
    assert any(line.startswith("v0 epoch 2/2: loss") for line in lines)
    table = models_table(models)
    assert table["model"].tolist() == ["v0", "v0-A", "v0-B", "v0-C"]
    assert table["stage"].tolist() == ["base", "A", "B", "C"]
    assert set(table.columns) >= {"model", "variant", "stage", "epochs", "val_macro_f1", "path"}
    assert not list(models.glob(".*tmp*")), "no temporary files may be left"

    stamps = {p.name: p.stat().st_mtime_ns for p in models.iterdir()}
    rerun: list[str] = []
    train_base(0, data, SETTINGS, models, log=rerun.append)
    for stage in "ABC":
        finetune(0, stage, data, TrainSettings(epochs=1, batch_size=16, learning_rate=5e-4), models, log=rerun.append)
    assert all("skipped" in line for line in rerun) and len(rerun) == 4
    assert stamps == {p.name: p.stat().st_mtime_ns for p in models.iterdir()}


def test_stage_freezes_the_other_part(data, tmp_path):
    import keras

    models = tmp_path / "models"
    train_base(1, data, TrainSettings(epochs=1, batch_size=16), models, log=lambda line: None)
    base = keras.saving.load_model(models / "v1.keras")
    finetune(1, "A", data, TrainSettings(epochs=1, batch_size=16), models, log=lambda line: None)
    stage_a = keras.saving.load_model(models / "v1-A.keras")
    for layer_before, layer_after in zip(base.layers, stage_a.layers):
        for w0, w1 in zip(layer_before.weights, layer_after.weights):
            same = np.array_equal(np.asarray(w0), np.asarray(w1))
            if layer_before.name.startswith("dnn_"):
                assert same, f"stage A (CNN) changed the dense head's {w0.path}"
    changed = [
        layer.name
        for layer, after in zip(base.layers, stage_a.layers)
        if layer.name.startswith("cnn_")
        and "conv" in layer.name
        and not np.array_equal(np.asarray(layer.weights[0]), np.asarray(after.weights[0]))
    ]
    assert changed, "stage A must train the CNN part"


def test_interrupted_model_resumes_from_its_last_completed_epoch(data, tmp_path):
    models = tmp_path / "models"
    settings = TrainSettings(epochs=3, batch_size=16, seed=0)

    def stop_after_first_epoch(line: str) -> None:
        if "epoch 1/3" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_base(0, data, settings, models, log=stop_after_first_epoch)
    assert not (models / "v0.json").exists() and not (models / "v0.keras").exists()
    assert len(pd.read_csv(models / "v0.history.csv")) == 1
    lines: list[str] = []
    summary = train_base(0, data, settings, models, log=lines.append)
    assert lines[0] == "v0: resuming after epoch 1/3"
    assert [line.split(":")[0] for line in lines[1:]] == ["v0 epoch 2/3", "v0 epoch 3/3"]
    assert summary["epochs_trained"] == 3 and len(load_history(models, "v0")) == 3


def test_same_seed_gives_the_same_history(data, tmp_path):
    a = train_base(0, data, SETTINGS, tmp_path / "a", log=lambda line: None)
    b = train_base(0, data, SETTINGS, tmp_path / "b", log=lambda line: None)
    ha, hb = load_history(tmp_path / "a", "v0"), load_history(tmp_path / "b", "v0")
    pd.testing.assert_frame_equal(ha.drop(columns="seconds"), hb.drop(columns="seconds"), check_exact=True)
    assert a["val_macro_f1"] == b["val_macro_f1"]


def test_batches_reshuffle_each_epoch_and_cover_every_row_once(data):
    batches = CachedBatches(data.images, data.y, data.train_indices, 8, shuffle=True, seed=3, epochs=2)
    assert len(batches) == 2 * batches.steps
    seen = []
    for epoch in (1, 2):
        order = batches.epoch_order(epoch)
        x, y = batches[(epoch - 1) * batches.steps]  # the first batch of the epoch
        assert x.shape == (8, 96, 96, 4) and x.dtype == np.float32 and float(x.max()) <= 1.0
        np.testing.assert_array_equal(y, data.y[order[:8]])
        np.testing.assert_allclose(x[0], data.images[order[0]] / 255.0, atol=1e-6)
        seen.append(order)
    assert sorted(seen[0]) == sorted(data.train_indices) and not np.array_equal(seen[0], seen[1])


def test_prior_bias_starts_at_the_class_priors(data, tmp_path):
    import keras

    models = tmp_path / "models"
    train_base(0, data, TrainSettings(epochs=1, batch_size=16, learning_rate=1e-12), models, log=lambda line: None)
    model = keras.saving.load_model(models / "v0.keras")
    bias = np.asarray(model.get_layer("dnn_logits").bias)
    prior = data.y[data.train_indices].mean(axis=0).clip(1e-4, 1 - 1e-4)
    np.testing.assert_allclose(1 / (1 + np.exp(-bias)), prior, atol=1e-3)


def test_training_stores_its_validation_predictions_for_the_ensemble(data, tmp_path):
    """The last epoch's validation pass is stored where predict_models finds it, and equals a fresh prediction."""
    from hpa_utils.training.predictions import predict_models

    models, predictions = tmp_path / "models", tmp_path / "predictions"
    train_base(0, data, TrainSettings(epochs=1, batch_size=16), models, predictions, log=lambda line: None)
    stored = np.load(predictions / "v0_val.npy")
    lines = []
    again = predict_models(
        {"v0": models / "v0.keras"}, {"val": (data.images, data.val_indices)}, predictions, log=lines.append
    )
    assert lines == []  # reused, not predicted again
    np.testing.assert_array_equal(again["val"]["v0"], stored)
    fresh = predict_models({"v0": models / "v0.keras"}, {"val": (data.images, data.val_indices)}, tmp_path / "p2")
    np.testing.assert_array_equal(fresh["val"]["v0"], stored)  # the same batch size: the same bytes


def test_training_data_pickles_as_its_source_not_its_images(tmp_path):
    """A worker process re-opens the memory-mapped cache instead of receiving a copy of every image."""
    import pickle

    from hpa_utils.data.synth import generate_dataset
    from hpa_utils.training.batches import load_training_data

    root = tmp_path / "data"
    generate_dataset(root, n_train=24, n_test=2, size=96, seed=2)
    data = load_training_data(root, tmp_path / "cache", 80, tmp_path / "split.json", 0.25, seed=0)
    blob = pickle.dumps(data)
    assert len(blob) < 10_000 < data.images.nbytes
    copy = pickle.loads(blob)
    np.testing.assert_array_equal(copy.images, data.images)
    np.testing.assert_array_equal(copy.val_indices, data.val_indices)

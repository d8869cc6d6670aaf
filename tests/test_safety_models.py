"""Item 13: model files are plain Keras; the fast batch norm is a training-time detail of the project.

A model saved the way the project saves it loads with ``keras.saving.load_model`` in a process that never
imports ``hpa_utils`` (a Kaggle kernel), on TensorFlow and on JAX, and predicts what the saving process
predicted. Inside the project, loaded models train with the fast layer again, and files written before the
fix (whose batch norms are named ``hpa_utils>BatchNormalization``) still load.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from hpa_utils.training import models  # noqa: E402
from hpa_utils.training.batches import TrainingData  # noqa: E402
from hpa_utils.training.fit import compile_model, fit_model, save_model_atomic  # noqa: E402
from hpa_utils.training.settings import TrainSettings  # noqa: E402

SIZE = 76  # the smallest input of the 3x3 variants (models.min_input_size(3))

# Run in a fresh interpreter: hpa_utils is made unimportable (as in a Kaggle kernel without the package), so a
# file that needed it fails to load rather than importing it behind the test's back.
PLAIN_KERAS_LOAD = """
import json, sys
sys.modules["hpa_utils"] = None  # import hpa_utils -> ImportError
import numpy as np
import keras

model_path, x_path, out_path = sys.argv[1:4]
model = keras.saving.load_model(model_path)
np.save(out_path, np.asarray(model.predict(np.load(x_path), verbose=0)))
print(json.dumps({
    "backend": keras.backend.backend(),
    "hpa_utils_modules": sorted(m for m, mod in sys.modules.items() if m.split(".")[0] == "hpa_utils" and mod),
    "classes": sorted({f"{type(layer).__module__}.{type(layer).__name__}" for layer in model.layers}),
}))
"""


def _random_images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.random((n, SIZE, SIZE, 4), dtype=np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """A trained (one epoch, so the fast training step ran) variant saved by the project: its path, a fixed
    input as .npy, and the saving process's prediction on it."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    model = compile_model(models.build_variant(0, (SIZE, SIZE, 4)), 1e-2)
    model.fit(_random_images(rng, 8), (rng.random((8, 28)) < 0.3).astype("float32"), batch_size=4, verbose=0)
    folder = tmp_path_factory.mktemp("item13")
    path, x_path = folder / "v0-C.keras", folder / "x.npy"
    save_model_atomic(model, path)
    x = _random_images(rng, 3)
    np.save(x_path, x)
    return path, x_path, np.asarray(model.predict(x, verbose=0))


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_item13_saved_model_loads_in_plain_keras_on_tensorflow_and_jax(saved, backend, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed: the {backend} backend cannot load the model here")
    path, x_path, expected = saved
    out = tmp_path / "predicted.npy"
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend == "jax":
        env["JAX_PLATFORMS"] = "cpu"  # as test_beyond's Grad-CAM comparison
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_KERAS_LOAD, str(path), str(x_path), str(out)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"plain Keras ({backend}) could not load {path.name}:\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend
    assert report["hpa_utils_modules"] == []
    assert all(name.startswith("keras.") for name in report["classes"]), report["classes"]
    np.testing.assert_allclose(np.load(out), expected, atol=1e-5, rtol=0)


def test_item13_saved_file_names_only_keras_own_classes(saved):
    path = saved[0]
    config_text = zipfile.ZipFile(path).read("config.json").decode()
    assert "hpa_utils" not in config_text
    batch_norms = [
        layer for layer in json.loads(config_text)["config"]["layers"] if layer["class_name"] == "BatchNormalization"
    ]
    assert len(batch_norms) == 11
    for layer in batch_norms:
        assert (layer["module"], layer["registered_name"]) == ("keras.layers", None), layer["name"]


def _old_style_copy(path: Path, old: Path) -> None:
    """``path`` rewritten as the project wrote it before item 13: its batch norms named as the subclass."""
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(old, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            if item == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    if layer["class_name"] == "BatchNormalization":
                        layer["module"] = "hpa_utils.training.models"
                        layer["registered_name"] = "hpa_utils>BatchNormalization"
                data = json.dumps(config).encode()
            target.writestr(item, data)


def test_item13_files_saved_before_the_fix_still_load_in_the_project(saved, tmp_path):
    path, x_path, expected = saved
    old = tmp_path / "old.keras"
    _old_style_copy(path, old)
    assert "hpa_utils>BatchNormalization" in zipfile.ZipFile(old).read("config.json").decode()
    model = keras.saving.load_model(old)
    batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(batch_norms) == 11
    assert all(type(layer) is models.BatchNormalization for layer in batch_norms)
    np.testing.assert_allclose(model.predict(np.load(x_path), verbose=0), expected, atol=1e-5, rtol=0)


def test_item13_loaded_models_get_the_fast_batch_norm_back(saved):
    model = keras.saving.load_model(saved[0])
    assert all(type(layer) is not models.BatchNormalization for layer in model.layers)
    assert models.with_fast_batch_norm(model) is model
    batch_norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(batch_norms) == 11 and all(type(layer) is models.BatchNormalization for layer in batch_norms)
    np.testing.assert_allclose(model.predict(np.load(saved[1]), verbose=0), saved[2], atol=1e-5, rtol=0)


def test_item13_resumed_and_fine_tuned_training_use_the_fast_batch_norm(tmp_path, monkeypatch):
    """The project's loads (a resumed checkpoint, a fine-tuning stage's parent) train with the fast layer."""
    rng = np.random.default_rng(1)
    data = TrainingData(
        rng.integers(0, 256, (16, SIZE, SIZE, 4), dtype=np.uint8),
        (rng.random((16, 28)) < 0.3).astype("float32"),
        np.arange(12),
        np.arange(12, 16),
        workers=1,
    )
    settings = TrainSettings(epochs=2, batch_size=4, augment=False, prior_bias=False)
    training_calls: list[str] = []
    original_call = models.BatchNormalization.call

    def spy(self, inputs, training=None, mask=None):
        if training:
            training_calls.append(self.name)
        return original_call(self, inputs, training=training, mask=mask)

    monkeypatch.setattr(models.BatchNormalization, "call", spy)

    def stop_after_first_epoch(line: str) -> None:
        if "epoch 1/2" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_model(
            "base",
            lambda: models.build_variant(0, (SIZE, SIZE, 4)),
            data,
            settings,
            tmp_path,
            log=stop_after_first_epoch,
        )
    training_calls.clear()
    lines: list[str] = []
    fit_model("base", lambda: None, data, settings, tmp_path, log=lines.append)
    assert lines[0] == "base: resuming after epoch 1/2"
    assert "cnn_block1_bn1" in training_calls, "the resumed model trained without the fast batch norm"

    training_calls.clear()
    parent = tmp_path / "base.keras"
    fit_model(
        "stage",
        lambda: keras.saving.load_model(parent, compile=False),
        data,
        TrainSettings(epochs=1, batch_size=4, augment=False, prior_bias=False),
        tmp_path,
        log=lambda line: None,
    )
    assert "cnn_block1_bn1" in training_calls, "the fine-tuned model trained without the fast batch norm"

"""Predictions of trained models: on rows of an image array, and stored per model and split."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from hpa_utils.backend import keras
from hpa_utils.io import write_atomic, write_json_atomic
from hpa_utils.training.batches import CachedBatches, TrainingData
from hpa_utils.training.models import BatchNormalization  # noqa: F401  (registers the layer the models use)
from hpa_utils.training.tta import TRANSFORMS, combine, dihedral

#: Images per prediction batch. A prediction's last bits depend on the batch size (the kernels' blocking), so
#: the validation pass at the end of training and :func:`predict_models` both use this one: a stored
#: prediction is the same bytes whichever computed it.
PREDICT_BATCH_SIZE = 64


def predict(
    model: keras.Model,
    data: TrainingData | np.ndarray,
    indices=None,
    batch_size: int = PREDICT_BATCH_SIZE,
    tta: str = "none",
) -> np.ndarray:
    """Sigmoid probabilities (N, C) of ``model`` on rows ``indices`` of an image array (no augmentation).

    ``tta``: ``"none"``, or ``"mean"`` / ``"max"`` of the predictions on the eight flips and quarter turns of
    every image (:mod:`hpa_utils.training.tta`; eight times the work), or ``"views"``: the eight predictions
    themselves, (8, N, C), for :func:`~hpa_utils.training.tta.combine`.
    """
    images = data.images if isinstance(data, TrainingData) else data
    indices = np.arange(len(images)) if indices is None else indices
    if tta == "none":
        batches = CachedBatches(images, None, indices, batch_size)
        return np.asarray(model.predict(batches, verbose=0), dtype=np.float32)
    views = [
        model.predict(
            CachedBatches(images, None, indices, batch_size, transform=partial(dihedral, k=k, flip=flip)), verbose=0
        )
        for k, flip in TRANSFORMS
    ]
    return np.asarray(views, dtype=np.float32) if tta == "views" else combine(views, tta)


def predict_models(
    model_paths: dict[str, str | Path],
    splits: dict[str, tuple[np.ndarray, np.ndarray]],
    predictions_dir: str | Path,
    batch_size: int = PREDICT_BATCH_SIZE,
    log: Callable[[str], None] = print,
    tta: str = "none",
) -> dict[str, dict[str, np.ndarray]]:
    """Every model's probabilities on every split, computed once and stored as ``.npy``.

    A stored prediction is reused while its model file and rows are unchanged (a small JSON
    beside it records the model's mtime and a hash of the rows), so sweeps cost no inference.

    Args:
        model_paths: model name -> ``.keras`` path.
        splits: split name (e.g. "val", "test") -> (images, row indices).
        predictions_dir: where ``{model}_{split}.npy`` go (``{model}_{split}_tta-{mode}.npy`` with ``tta``).
        tta: test-time augmentation (:func:`predict`); stored apart from the plain predictions.

    Returns:
        split -> model -> (N, C) float32 probabilities.
    """
    predictions_dir = Path(predictions_dir)
    out: dict[str, dict[str, np.ndarray]] = {split: {} for split in splits}
    for name, model_path in model_paths.items():
        model = None
        for split, (images, indices) in splits.items():
            stem = split if tta == "none" else f"{split}_tta-{tta}"
            npy = predictions_dir / f"{name}_{stem}.npy"
            key = _key(model_path, indices, int(images.shape[1]))
            meta = npy.with_suffix(".json")
            if npy.is_file() and meta.is_file() and json.loads(meta.read_text()) == key:
                out[split][name] = np.load(npy)
                continue
            if model is None:
                model = keras.saving.load_model(model_path, compile=False)
                log(f"predicting with {name}" + {"none": "", "views": " (8 views)"}.get(tta, f" (8 views, {tta})"))
            out[split][name] = store_prediction(
                predictions_dir,
                name,
                stem,
                model_path,
                indices,
                int(images.shape[1]),
                predict(model, images, indices, batch_size, tta),
            )
    return out


def store_prediction(predictions_dir, name, split, model_path, indices, image_size, probabilities) -> np.ndarray:
    """Store one model's probabilities on one split where :func:`predict_models` finds them (e.g. the
    validation probabilities computed at the end of training, so they are not computed again)."""
    npy = Path(predictions_dir) / f"{name}_{split}.npy"
    npy.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(npy, lambda tmp: np.save(tmp, probabilities))
    write_json_atomic(npy.with_suffix(".json"), _key(model_path, indices, image_size))
    return probabilities


def _key(model_path, indices, image_size: int) -> dict:
    return {
        "model_mtime_ns": Path(model_path).stat().st_mtime_ns,
        "rows": len(indices),
        "rows_hash": _rows_hash(indices),
        "image_size": int(image_size),
    }


def _rows_hash(indices) -> str:
    return hashlib.sha1(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]

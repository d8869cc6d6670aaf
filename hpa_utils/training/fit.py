"""One model's training job: settings, compile, the per-epoch callback, and the resumable fit.

One model is one job: :func:`fit_model` builds (or loads) it, trains it with
``model.fit`` and Keras' own F1 metric, adds the exact validation macro F1 each
epoch, and writes under ``models_dir``:

* ``{name}.keras``         the trained model (last epoch), written when training ends; plain Keras (it
  loads without ``hpa_utils``), see :func:`save_model_atomic`;
* ``{name}.history.csv``   one row per epoch: loss, f1, val_loss, val_f1, val_macro_f1, seconds;
* ``{name}.json``          the summary (val macro F1, best epoch, settings), written last:
  its presence means "finished", so a re-run skips the model;
* ``{name}.ckpt/``         the per-epoch checkpoint while training; an interrupted job resumes
  from its last completed epoch and the folder is removed at the end.

Every file is written to a temporary name and renamed into place.

One seed gives one result, bit for bit, on one machine and one TensorFlow thread count (the executors'
``threads``): the batches are a function of (seed, epoch, batch) (:class:`~hpa_utils.training.batches.CachedBatches`),
and a checkpoint holds the whole training state, the dropout layers' random-number generators and the
optimizer's moments included (:func:`save_training_state`), so a job resumed after a kill trains on exactly
as the uninterrupted one would have.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from hpa_utils.backend import keras
from hpa_utils.evaluation.metrics import binarize, keras_f1_metric, macro_f1, per_image_log_loss
from hpa_utils.io import write_atomic, write_text_atomic
from hpa_utils.training.batches import TrainingData
from hpa_utils.training.losses import make_loss
from hpa_utils.training.models import set_trainable_part, with_fast_batch_norm
from hpa_utils.training.predictions import PREDICT_BATCH_SIZE, predict, store_prediction
from hpa_utils.training.settings import TrainSettings

HISTORY_COLUMNS = ["epoch", "loss", "f1", "val_loss", "val_f1", "val_macro_f1", "seconds"]


def seed_everything(seed: int) -> None:
    """Python, numpy and backend seeds (deterministic ops are switched on by ``runtime.configure``).

    Training draws nothing from them after the model is built: the dropout layers' seeds are drawn from
    Python's ``random`` when they are created and then live in their ``SeedGenerator`` (saved with each
    checkpoint), and the batches have their own seeds."""
    keras.utils.set_random_seed(int(seed))


def save_training_state(model: keras.Model, path: Path) -> None:
    """Write everything a resumed job needs besides the ``.keras`` file: every variable of ``model`` (its
    weights, and the state of its ``SeedGenerator`` s, the dropout masks' random numbers, which the
    ``.keras`` file leaves out) and of its optimizer (step count, moments, the moving average), as ``.npz``."""
    arrays = {}
    for part, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
        arrays[f"{part}_names"] = np.array(_variable_names(variables))
        arrays.update({f"{part}_{i}": np.asarray(v) for i, v in enumerate(variables)})

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    write_atomic(path, write)


def _variable_names(variables) -> list[str]:
    """The variables' own names (``kernel``, ``seed_generator_state``, ``cnn_block1_conv1_kernel_momentum``...),
    without the first part of their paths, which Keras numbers per process (``adam_1/``, ``seed_generator_7/``)."""
    return [v.path.rsplit("/", 1)[-1] for v in variables]


def restore_training_state(model: keras.Model, path: Path) -> bool:
    """Assign the state :func:`save_training_state` wrote to ``model`` (compiled, optimizer built) and its
    optimizer; False, changing nothing, if the file does not hold the same variables."""
    with np.load(path) as saved:
        pairs = []
        for part, variables in (("model", model.variables), ("optimizer", model.optimizer.variables)):
            if saved[f"{part}_names"].tolist() != _variable_names(variables):
                return False
            values = [saved[f"{part}_{i}"] for i in range(len(variables))]
            if any(tuple(v.shape) != value.shape for v, value in zip(variables, values, strict=True)):
                return False
            pairs += zip(variables, values, strict=True)
    for variable, value in pairs:
        variable.assign(value)
    return True


def compile_model(model: keras.Model, learning_rate: float, settings: TrainSettings | None = None) -> keras.Model:
    """Adam, the loss (the report's binary cross-entropy unless ``settings.loss`` says focal) and Keras' macro
    F1 (jit off: XLA is slower on CPUs). With ``settings.ema``, Adam keeps Keras' exponential moving average
    of the weights (``use_ema``, ``ema_momentum``)."""
    settings = settings or TrainSettings(epochs=1, learning_rate=learning_rate)
    model.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate, use_ema=settings.ema, ema_momentum=settings.ema_momentum if settings.ema else 0.99
        ),
        loss=make_loss(settings.loss, settings.focal_gamma),
        metrics=[keras_f1_metric()],
        jit_compile=False,
    )
    return model


class SwapEMA(keras.callbacks.SwapEMAWeights):
    """Keras' ``SwapEMAWeights(swap_on_epoch=True)``: at each epoch's end the averaged weights are in the
    model (so the validation pass, the checkpoint and the final model use them), the raw ones go back at
    the next epoch's start. ``resumed``: the model came from such a checkpoint, so the average is in it."""

    def __init__(self, resumed: bool = False):
        super().__init__(swap_on_epoch=True)
        self._ema_weights_in_model = bool(resumed)


def save_model_atomic(model: keras.Model, path: Path) -> None:
    """Write ``model`` to ``path`` (``.keras``) through a temporary name. The file is plain Keras: its fast
    batch norms are saved as Keras' own (:class:`~hpa_utils.training.models.BatchNormalization`)."""
    write_atomic(path, model.save)


class EpochEnd(keras.callbacks.Callback):
    """Per epoch: exact validation macro F1, then a checkpoint and the history, then one log line.

    The checkpoint (``epoch-{n}.state.npz``, then ``epoch-{n}.keras``) is written before the history row,
    so ``len(history)`` always names a checkpoint that exists: that is where an interrupted job resumes.
    """

    def __init__(self, name, data, settings, ckpt_dir, history_path, history, log: Callable[[str], None], on_epoch):
        super().__init__()
        self.name, self.data, self.settings = name, data, settings
        self.ckpt_dir, self.history_path, self.history = ckpt_dir, history_path, history
        self.log, self.on_epoch = log, on_epoch
        self.val_probabilities: np.ndarray | None = None
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        # the batch size of predict_models: a stored prediction is the same bits whichever of the two made it
        self.val_probabilities = predict(self.model, self.data, self.data.val_indices, PREDICT_BATCH_SIZE)
        y_val = self.data.y[self.data.val_indices]
        # One validation pass per epoch: Keras' val_loss and val_f1 from the same probabilities as the exact F1.
        logs["val_loss"] = binary_crossentropy(y_val, self.val_probabilities)
        logs["val_macro_f1"] = macro_f1(y_val, binarize(self.val_probabilities, 0.5))
        keras_f1 = keras_f1_metric()
        keras_f1.update_state(y_val.astype("float32"), self.val_probabilities)
        logs["val_f1"] = float(keras_f1.result())
        row = {"epoch": epoch + 1, **{k: float(logs.get(k, np.nan)) for k in HISTORY_COLUMNS[1:6]}}
        row["seconds"] = round(time.perf_counter() - self.started, 2)
        self.history.append(row)
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        save_training_state(self.model, self.ckpt_dir / f"epoch-{epoch + 1}.state.npz")
        save_model_atomic(self.model, self.ckpt_dir / f"epoch-{epoch + 1}.keras")
        write_text_atomic(self.history_path, pd.DataFrame(self.history, columns=HISTORY_COLUMNS).to_csv(index=False))
        for old in self.ckpt_dir.glob("epoch-*"):
            if not old.name.startswith(f"epoch-{epoch + 1}."):
                old.unlink(missing_ok=True)
        self.log(
            f"{self.name} epoch {epoch + 1}/{self.settings.epochs}: loss {row['loss']:.4f} f1 {row['f1']:.3f}"
            f" | val loss {row['val_loss']:.4f} f1 {row['val_f1']:.3f} macro F1 {row['val_macro_f1']:.3f}"
            f" | {row['seconds']:.0f} s"
        )
        if self.on_epoch is not None:
            self.on_epoch(
                {
                    "name": self.name,
                    "epoch": epoch + 1,
                    "epochs": self.settings.epochs,
                    "seconds": row["seconds"],
                    "n_train": len(self.data.train_indices),
                    "n_val": len(self.data.val_indices),
                    "part": self.settings.part,
                }
            )


def fit_model(
    name: str,
    make_model: Callable[[], keras.Model],
    data: TrainingData,
    settings: TrainSettings,
    models_dir: str | Path,
    meta: dict | None = None,
    log: Callable[[str], None] = print,
    on_epoch: Callable[[dict], None] | None = None,
    check_only: bool = False,
    predictions_dir: str | Path | None = None,
) -> dict | None:
    """Train one model, resuming or skipping as its files say; returns its summary.

    Args:
        name: the model's name (file stem under ``models_dir``).
        make_model: builds the untrained (or parent) model; called only when starting afresh.
        data: images, labels and split.
        settings: epochs, batch size, learning rate, augmentation, seed, part to train.
        models_dir: where the model's files go.
        meta: extra fields for the summary (variant, stage, parent...).
        log: where the per-epoch lines go.
        on_epoch: called after each epoch with a record (name, epoch, epochs, seconds, n_train,
            n_val, part), e.g. for the run's time estimate.
        check_only: return the summary of the model if it is already trained with these settings,
            else None, and train nothing.
        predictions_dir: where to store the trained model's validation probabilities (from its last
            epoch's validation pass) for :func:`~hpa_utils.training.predictions.predict_models`.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    summary_path = models_dir / f"{name}.json"
    model_path = models_dir / f"{name}.keras"
    history_path = models_dir / f"{name}.history.csv"
    ckpt_dir = models_dir / f"{name}.ckpt"
    wanted = {
        "settings": settings.record(),
        "image_size": data.image_size,
        "n_train": len(data.train_indices),
        "n_val": len(data.val_indices),
        **(meta or {}),
    }
    if summary_path.is_file() and model_path.is_file():
        summary = json.loads(summary_path.read_text())
        if all(summary.get(k) == v for k, v in wanted.items()):
            log(f"{name}: already trained (val macro F1 {summary['val_macro_f1']:.3f}), skipped")
            return {**summary, "skipped": True}
    if check_only:
        return None
    summary_path.unlink(missing_ok=True)  # a stale summary must not look finished while retraining
    seed_everything(settings.seed)
    history: list[dict] = []
    done = 0
    model = None
    if history_path.is_file() and (ckpt_dir / "checkpoint.json").is_file():
        state = json.loads((ckpt_dir / "checkpoint.json").read_text())
        old = pd.read_csv(history_path)
        if state == wanted and 0 < len(old) < settings.epochs:
            model = _resume(ckpt_dir, len(old), settings)
            if model is not None:
                done, history = len(old), old.to_dict("records")
                log(f"{name}: resuming after epoch {done}/{settings.epochs}")
            else:
                log(f"{name}: the checkpoint after epoch {len(old)} is incomplete; training from the start")
    if model is None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
        history_path.unlink(missing_ok=True)
        ckpt_dir.mkdir(parents=True)
        write_text_atomic(ckpt_dir / "checkpoint.json", json.dumps(wanted))
        seed_everything(settings.seed)  # again: loading a checkpoint that could not be used drew from random
        model = with_fast_batch_norm(make_model())  # e.g. a fine-tuning stage's parent, loaded from its file
        model = compile_model(set_trainable_part(model, settings.part), settings.learning_rate, settings)
    callback = EpochEnd(name, data, settings, ckpt_dir, history_path, history, log, on_epoch)
    callbacks = [SwapEMA(resumed=bool(done)), callback] if settings.ema else [callback]
    started = time.perf_counter()
    seen = len(data.train_indices)  # images per epoch (more with oversampling)
    if done < settings.epochs:
        # epochs done+1.. as one sequence of batches, each a function of (seed, epoch, batch): as uninterrupted
        train_batches = data.batches("train", settings, first_epoch=done + 1, epochs=settings.epochs - done)
        seen = len(train_batches.indices)
        try:
            model.fit(
                train_batches,
                epochs=settings.epochs,
                initial_epoch=done,
                steps_per_epoch=train_batches.steps,
                shuffle=False,  # the batches are shuffled by their seeds, not by Python's random
                callbacks=callbacks,
                verbose=0,
            )
        finally:
            train_batches.close()
    frame = pd.DataFrame(history, columns=HISTORY_COLUMNS)
    best = int(frame["val_macro_f1"].idxmax())
    summary = {
        "name": name,
        **wanted,
        "epochs_trained": len(frame),
        "val_macro_f1": float(frame["val_macro_f1"].iloc[-1]),
        "best_val_macro_f1": float(frame["val_macro_f1"].iloc[best]),
        "best_epoch": int(frame["epoch"].iloc[best]),
        "train_seconds": round(float(frame["seconds"].sum()), 1),
        "images_per_second": round(seen * len(frame) / max(time.perf_counter() - started, 1e-9), 1)
        if not done
        else None,
        "path": model_path.name,
    }
    save_model_atomic(model, model_path)
    if predictions_dir is not None and callback.val_probabilities is not None:
        store_prediction(
            predictions_dir, name, "val", model_path, data.val_indices, data.image_size, callback.val_probabilities
        )
    write_text_atomic(summary_path, json.dumps(summary, indent=1))
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summary


def _resume(ckpt_dir: Path, done: int, settings: TrainSettings) -> keras.Model | None:
    """The model of checkpoint ``epoch-{done}``, compiled as a fresh job compiles it and with its whole training
    state (:func:`restore_training_state`); None when the checkpoint is incomplete (then the job starts afresh)."""
    keras_path, state_path = ckpt_dir / f"epoch-{done}.keras", ckpt_dir / f"epoch-{done}.state.npz"
    if not (keras_path.is_file() and state_path.is_file()):
        return None
    # files are plain Keras: the batch norms come back as Keras' own, and get the fast training step again
    model = with_fast_batch_norm(keras.saving.load_model(keras_path, compile=False))
    model = compile_model(set_trainable_part(model, settings.part), settings.learning_rate, settings)
    model.optimizer.build(model.trainable_variables)
    return model if restore_training_state(model, state_path) else None


def binary_crossentropy(y_true: np.ndarray, probabilities: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy over samples and classes (Keras' loss, clipped as Keras clips)."""
    return float(per_image_log_loss(y_true, probabilities, eps).mean())

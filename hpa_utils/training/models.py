"""The report's baseline CNN+DNN (after Haltuf's Kaggle kernel "GAPNet-PL") and its eight variants.

The model is a pure function of its configuration (:func:`build_baseline`); the eight base models of the
report are data, one row each of :data:`VARIANTS`. Every layer is named ``cnn_*`` (input through the three
global-average-pooling branches and their concatenation) or ``dnn_*`` (the dense head, through the final
sigmoid), so that the fine-tuning stages can train one part with the other frozen
(:func:`set_trainable_part`).

Only ``keras``, ``keras.layers`` and ``keras.ops`` are used, so the module runs on the TensorFlow, JAX and
PyTorch backends alike.

Dropout rates. Haltuf's GAPNet-PL kernel (kaggle.com/rejpalcz/gapnet-pl-lb-0-385) is not stored where it
could be read; a public derivative of it (github.com/zehuichen123/GAPNet-PL, ``model.py``) keeps its
structure and uses dropout 0.5 after the first dense layer and 0.1 after the second, which is what the
baseline uses. For the three convolutional dropouts that derivative reads a rate from its own config (0.3);
the baseline uses 0.25, the ``dropRate`` of Haltuf's earlier "CNN 128x128x4, Keras from scratch" kernel,
on which GAPNet-PL was built. The report itself does not state the rates.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hpa_utils.backend import keras
from hpa_utils.config.variants import VARIANTS, block_kernel_sizes, get_variant, min_input_size

layers = keras.layers

#: The two parts of the model that the fine-tuning stages train separately.
PARTS: tuple[str, ...] = ("cnn", "dnn")
_TRAINABLE_CHOICES = ("all", *PARTS)

BASELINE_DROPOUT_RATES: tuple[float, float, float] = (0.25, 0.25, 0.25)
BASELINE_DENSE_DROPOUT_RATES: tuple[float, float] = (0.5, 0.1)


@keras.saving.register_keras_serializable(package="hpa_utils")
class BatchNormalization(keras.layers.BatchNormalization):
    """Keras' BatchNormalization, with TensorFlow's fused kernel for the training step of 4-D inputs.

    Keras 3 builds batch norm from separate ops (moments, then the affine map), and their gradient
    is a dozen passes over the tensor. On the baseline's first feature map (126x126x32 per image at
    128 px) that made the layer after the first convolution the most expensive layer of the model
    (29% of a training step, profiled); TensorFlow's fused kernel does the same maths in about half
    the time. The weights, the moving statistics (updated as Keras does, with the biased variance)
    and the results are Keras' own; on any other backend, for other ranks, in inference or when
    frozen, this is Keras' layer unchanged.

    Saved as Keras' own layer, so model files are plain Keras (item 13): Keras names a layer in a saved
    model after its ``__class__``, which this layer gives as ``keras.layers.BatchNormalization``
    (``type(layer)``, and so the methods called, are still this class). The config and the weights are
    the same, so ``keras.saving.load_model`` opens the file without ``hpa_utils``, on any backend (a
    Kaggle kernel, JAX); ``keras.models.clone_model``, ``copy.deepcopy`` and pickle copy it as Keras'
    layer too. A model loaded back has Keras' layers, which predict the same; :func:`with_fast_batch_norm`
    gives them this training step again (:func:`hpa_utils.training.fit.fit_model` does, on what it loads). The
    registration under ``hpa_utils>BatchNormalization`` is for the files written before, which name
    this class: they still load, to it.
    """

    @property
    def __class__(self):
        """Keras' ``BatchNormalization``: what this layer is saved (serialised, cloned) as."""
        return keras.layers.BatchNormalization

    def call(self, inputs, training=None, mask=None):
        if not (
            training
            and self.trainable
            and mask is None
            and keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and not self.renorm
            and self.scale
            and self.center
        ):
            return super().call(inputs, training=training, mask=mask)
        # deferred: TensorFlow, imported on its own backend only
        import tensorflow as tf

        x = tf.cast(inputs, "float32")
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, tf.cast(self.gamma, "float32"), tf.cast(self.beta, "float32"), epsilon=self.epsilon, is_training=True
        )
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), "float32")
        variance = variance * (count - 1.0) / count  # TF returns the unbiased variance; Keras keeps the biased one
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return tf.cast(outputs, self.compute_dtype)


def with_fast_batch_norm(model: keras.Model) -> keras.Model:
    """Give every Keras ``BatchNormalization`` layer of ``model`` (and of models nested in it) the fast
    training step of :class:`BatchNormalization`, in place, and return the model.

    For a model loaded from a file, whose batch norms are Keras' own (files are plain Keras). Only the
    class of each layer changes: its weights, config, name and the optimizer's state for it are kept,
    and a model built by :func:`build_baseline` (already fast) is left as it is.
    """
    stack: list[keras.layers.Layer] = [model]
    while stack:
        layer = stack.pop()
        if type(layer) is keras.layers.BatchNormalization:
            layer.__class__ = BatchNormalization  # the subclass adds no state, only its call
        stack.extend(getattr(layer, "layers", ()))
    return model


def _check_input_shape(input_shape: Sequence[int], kernel_size) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels), got {tuple(input_shape)!r}.")
    height, width, channels = (int(value) for value in input_shape)
    minimum = min_input_size(kernel_size)
    if height < minimum or width < minimum:
        raise ValueError(
            f"Input size {height}x{width} is too small for kernel size {kernel_size}: "
            f"the minimum is {minimum}x{minimum} (the last convolution must output at least 1x1)."
        )
    if channels < 1:
        raise ValueError(f"input_shape must have at least one channel, got {channels}.")
    return height, width, channels


def _check_rates(rates: Sequence[float], count: int, what: str) -> tuple[float, ...]:
    rates = tuple(float(rate) for rate in rates)
    if len(rates) != count or not all(0.0 <= rate < 1.0 for rate in rates):
        raise ValueError(f"{what} must be {count} rates in [0, 1), got {rates!r}.")
    return rates


def _conv(x, filters: int, kernel_size: int, name: str, strides: int = 1):
    return layers.Conv2D(filters, kernel_size, strides=strides, padding="valid", activation="relu", name=name)(x)


def build_baseline(
    input_shape: Sequence[int] = (256, 256, 4),
    num_classes: int = 28,
    kernel_size: int | Sequence[int] = 3,
    dropout_rates: Sequence[float] = BASELINE_DROPOUT_RATES,
    dense_dropout_rates: float | Sequence[float] = BASELINE_DENSE_DROPOUT_RATES,
    output_bias: np.ndarray | Sequence[float] | None = None,
    name: str = "baseline",
) -> keras.Model:
    """Build the report's CNN+DNN: three conv blocks, GAP of each, concatenated, two dense layers.

    At the default arguments the model has 597,388 parameters (595,268 trainable, 2,120 non-trainable),
    layer for layer as in the report's summary table (SPEC.md).

    Args:
        input_shape: (height, width, channels); both sides at least ``min_input_size(kernel_size)``.
        num_classes: number of sigmoid outputs.
        kernel_size: side of every convolution kernel (3 in the report's baseline), or one side per
            conv block.
        dropout_rates: the three convolutional dropouts d1, d2, d3 (after each conv block; their
            outputs feed the three global-average-pooling branches).
        dense_dropout_rates: the dropouts after the first and second dense layers; one float sets both.
        output_bias: None for a zero bias (the report's), or ``num_classes`` values used as the final
            dense layer's bias initializer, e.g. :func:`prior_log_odds` of the training labels, so that
            the untrained model predicts the class priors.
        name: the model's name.

    Returns:
        An uncompiled ``keras.Model`` mapping (batch, height, width, channels) to (batch, num_classes)
        probabilities.

    Raises:
        ValueError: for an input smaller than the minimum, rates outside [0, 1) or a bias of the wrong length.
    """
    _check_input_shape(input_shape, kernel_size)
    first, second, third = _check_rates(dropout_rates, 3, "dropout_rates")
    if isinstance(dense_dropout_rates, (int, float)):
        dense_dropout_rates = (dense_dropout_rates, dense_dropout_rates)
    dense_first, dense_second = _check_rates(dense_dropout_rates, 2, "dense_dropout_rates")
    bias_initializer = "zeros"
    if output_bias is not None:
        output_bias = np.asarray(output_bias, dtype="float32").reshape(-1)
        if output_bias.shape != (num_classes,):
            raise ValueError(f"output_bias must have {num_classes} values, got shape {output_bias.shape}.")
        bias_initializer = keras.initializers.Constant([float(value) for value in output_bias])
    k1, k2, k3 = block_kernel_sizes(kernel_size)

    inputs = keras.Input(shape=tuple(int(value) for value in input_shape), name="cnn_input")
    x = BatchNormalization(name="cnn_input_bn")(inputs)
    # Block 1: one conv, pool, d1.
    x = _conv(x, 32, k1, "cnn_block1_conv1")
    x = BatchNormalization(name="cnn_block1_bn1")(x)
    x = layers.MaxPooling2D(2, name="cnn_block1_pool")(x)
    block1 = layers.Dropout(first, name="cnn_block1_dropout")(x)
    # Block 2: strided conv, two convs, pool, d2.
    x = BatchNormalization(name="cnn_block2_bn0")(block1)
    x = _conv(x, 64, k2, "cnn_block2_conv1", strides=2)
    x = BatchNormalization(name="cnn_block2_bn1")(x)
    x = _conv(x, 64, k2, "cnn_block2_conv2")
    x = BatchNormalization(name="cnn_block2_bn2")(x)
    x = _conv(x, 64, k2, "cnn_block2_conv3")
    x = BatchNormalization(name="cnn_block2_bn3")(x)
    x = layers.MaxPooling2D(2, name="cnn_block2_pool")(x)
    block2 = layers.Dropout(second, name="cnn_block2_dropout")(x)
    # Block 3: three convs, d3.
    x = BatchNormalization(name="cnn_block3_bn0")(block2)
    x = _conv(x, 128, k3, "cnn_block3_conv1")
    x = BatchNormalization(name="cnn_block3_bn1")(x)
    x = _conv(x, 128, k3, "cnn_block3_conv2")
    x = BatchNormalization(name="cnn_block3_bn2")(x)
    x = _conv(x, 128, k3, "cnn_block3_conv3")
    block3 = layers.Dropout(third, name="cnn_block3_dropout")(x)
    pooled = [
        layers.GlobalAveragePooling2D(name=f"cnn_block{index}_gap")(block)
        for index, block in enumerate((block1, block2, block3), start=1)
    ]
    x = layers.Concatenate(name="cnn_concat")(pooled)
    # Dense head.
    x = BatchNormalization(name="dnn_bn0")(x)
    x = layers.Dense(256, activation="relu", name="dnn_dense1")(x)
    x = layers.Dropout(dense_first, name="dnn_dropout1")(x)
    x = BatchNormalization(name="dnn_bn1")(x)
    x = layers.Dense(256, activation="relu", name="dnn_dense2")(x)
    x = layers.Dropout(dense_second, name="dnn_dropout2")(x)
    x = layers.Dense(num_classes, bias_initializer=bias_initializer, name="dnn_logits")(x)
    outputs = layers.Activation("sigmoid", name="dnn_sigmoid")(x)
    return keras.Model(inputs, outputs, name=name)


def prior_log_odds(y: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Return each class's log-odds ``log(p / (1 - p))`` in multi-hot labels, with p clipped to [eps, 1-eps].

    Args:
        y: (num_samples, num_classes) multi-hot labels (0/1 or probabilities).
        eps: clipping bound, so that a class absent from ``y`` gets a large negative but finite bias.

    Returns:
        (num_classes,) float32 array, for ``build_baseline(output_bias=...)``.

    Raises:
        ValueError: if ``y`` is not a non-empty 2-D array with values in [0, 1], or eps not in (0, 0.5).
    """
    y = np.asarray(y, dtype="float64")
    if y.ndim != 2 or y.shape[0] == 0:
        raise ValueError(f"y must be a non-empty (num_samples, num_classes) array, got shape {y.shape}.")
    if np.any((y < 0) | (y > 1)) or np.isnan(y).any():
        raise ValueError("y must hold labels in [0, 1].")
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps}.")
    prevalence = np.clip(y.mean(axis=0), eps, 1.0 - eps)
    return np.log(prevalence / (1.0 - prevalence)).astype("float32")


def part_layers(model: keras.Model, part: str) -> list[keras.layers.Layer]:
    """Return the layers of ``model`` that belong to ``part`` ("cnn", "dnn" or "all"), in model order.

    Raises:
        ValueError: for an unknown part name.
    """
    if part not in _TRAINABLE_CHOICES:
        raise ValueError(f"Unknown model part {part!r}; choose one of {', '.join(_TRAINABLE_CHOICES)}.")
    if part == "all":
        return list(model.layers)
    return [layer for layer in model.layers if layer.name.startswith(f"{part}_")]


def set_trainable_part(model: keras.Model, part: str) -> keras.Model:
    """Make only ``part``'s weights trainable: "all", "cnn" (dense head frozen) or "dnn" (CNN frozen).

    Frozen BatchNormalization layers also run in inference mode (Keras 3 semantics), so their moving
    statistics stay fixed. Compile the model again after calling this, as Keras requires.

    Args:
        model: a model from :func:`build_baseline` (layer names prefixed ``cnn_``/``dnn_``).
        part: "all", "cnn" or "dnn".

    Returns:
        The same model, for chaining.

    Raises:
        ValueError: for an unknown part name.
    """
    chosen = {id(layer) for layer in part_layers(model, part)}
    model.trainable = True
    for layer in model.layers:
        layer.trainable = id(layer) in chosen
    return model


def build_variant(
    key: int | str,
    input_shape: Sequence[int] = (256, 256, 4),
    num_classes: int = 28,
    output_bias: np.ndarray | Sequence[float] | None = None,
) -> keras.Model:
    """Build base model ``key`` (index or name from :data:`VARIANTS`), named ``variant<index>_<name>``."""
    variant = get_variant(key)
    return build_baseline(
        input_shape=input_shape,
        num_classes=num_classes,
        kernel_size=variant.kernel_size,
        dropout_rates=variant.dropout_rates,
        dense_dropout_rates=variant.dense_dropout_rates,
        output_bias=output_bias,
        name=f"variant{VARIANTS.index(variant)}_{variant.name}",
    )


def describe_variants(input_shape: Sequence[int] = (256, 256, 4), num_classes: int = 28) -> pd.DataFrame:
    """Return one row per variant: name, kernel size, dropouts, minimum input and parameter counts."""
    rows = []
    for index, variant in enumerate(VARIANTS):
        model = build_variant(index, input_shape=input_shape, num_classes=num_classes)
        trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
        rows.append(
            {
                "variant": index,
                "name": variant.name,
                "kernel size": variant.kernel_size,
                "conv dropouts": variant.dropout_rates,
                "dense dropouts": variant.dense_dropout_rates,
                "min input": min_input_size(variant.kernel_size),
                "params": model.count_params(),
                "trainable params": trainable,
                "description": variant.description,
            }
        )
        del model
    return pd.DataFrame(rows)


def model_summary_table(model: keras.Model) -> pd.DataFrame:
    """Return the model summary as a table: layer, type, output shape (without batch) and params."""
    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape[1:])
        rows.append(
            {
                "layer": layer.name,
                "type": type(layer).__name__,
                "output shape": ",".join(str(value) for value in shape),
                "params": layer.count_params() if layer.built else 0,
            }
        )
    return pd.DataFrame(rows, columns=["layer", "type", "output shape", "params"])


def parameter_counts(model: keras.Model) -> dict[str, int]:
    """Total, trainable and non-trainable parameter counts (as Keras' summary prints them)."""
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    total = int(model.count_params())
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}

"""Grad-CAM (Selvaraju et al., 2017) for models that pool feature maps: where in an image the evidence for a
class lies.

Classic Grad-CAM weights the maps ``A_k`` of one convolution by the mean gradient of the class's logit over
each map and sums them. The report's model has no single last convolution: its head reads the global average
pool (GAP) of three blocks, concatenated. So the maps here are the inputs of every ``GlobalAveragePooling2D``
layer, each channel weighted by the gradient of the logit at that pool's output (the same weight up to a
constant as classic Grad-CAM's, since a pool's gradient is spread evenly over its map):
``relu(sum_blocks resize(sum_k w_k A_k))``. In the first-order view each block's weighted map is its
pixels' contribution to the logit, so the blocks' maps add up on one scale; the first block's map is the
finest (half the input's side), the third the coarsest. With one pool after the last convolution this is
classic Grad-CAM.

Backends: the gradient is taken with TensorFlow's ``GradientTape``, or on JAX with ``jax.grad`` of the
model's ``stateless_call`` through a zero probe added at each pool's output (both below); another backend
raises ``NotImplementedError``. Everything else is ``keras.ops`` and numpy.
"""

from __future__ import annotations

import numpy as np

from hpa_utils.backend import keras

#: The pre-sigmoid layer whose output is the class score.
LOGITS_LAYER = "dnn_logits"
#: How the report names where the maps come from.
MAPS_DESCRIPTION = "the maps of every global-average-pooled block, weighted by the gradient at its pool"


def pooled_layers(model: keras.Model) -> list:
    """The model's global-average-pooling layers, input to output (their inputs are the maps weighted)."""
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.GlobalAveragePooling2D)]
    if not pools:
        raise ValueError(f"model {model.name!r} has no GlobalAveragePooling2D layer for Grad-CAM to weight")
    return pools


def maps_and_weights(model: keras.Model, images: np.ndarray, classes: np.ndarray):
    """Per pooled block: its maps (N, h, w, K) and the gradient of each image's class logit at its pool (N, K)."""
    pools = pooled_layers(model)
    x = np.asarray(images, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    backend = keras.backend.backend()
    logits_layer = model.get_layer(LOGITS_LAYER)
    if backend == "tensorflow":
        # deferred: TensorFlow, imported on its own backend only
        import tensorflow as tf

        head = keras.Model(model.inputs, [*(p.input for p in pools), *(p.output for p in pools), logits_layer.output])
        with tf.GradientTape() as tape:
            outputs = head(tf.convert_to_tensor(x), training=False)
            maps, pooled, logits = outputs[: len(pools)], outputs[len(pools) : -1], outputs[-1]
            score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
        grads = tape.gradient(score, pooled)
        return [np.asarray(m) for m in maps], [np.asarray(g) for g in grads]
    if backend == "jax":
        return _jax_maps_and_weights(model, pools, x, classes)
    raise NotImplementedError(f"Grad-CAM needs the TensorFlow or JAX backend (KERAS_BACKEND), not {backend!r}")


def _jax_maps_and_weights(model: keras.Model, pools: list, x: np.ndarray, classes: np.ndarray):
    """JAX: the model cloned with a zero probe added at each pool's output (the layers, so the weights, are
    shared); the gradient over the probes, through ``stateless_call``, is the gradient at the pools."""
    # deferred: JAX, imported on its own backend only
    import jax
    import jax.numpy as jnp

    probes = {id(p): _Probe(p, (len(x), int(p.output.shape[-1]))) for p in pools}
    logits_source = keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)
    logits_model = keras.models.clone_model(logits_source, clone_function=lambda layer: probes.get(id(layer), layer))
    trainable = [v.value for v in logits_model.trainable_variables]
    fixed = [v.value for v in logits_model.non_trainable_variables]
    slots = [
        next(i for i, v in enumerate(logits_model.non_trainable_variables) if v is probes[id(p)].delta) for p in pools
    ]
    images = jnp.asarray(x)
    picked = jnp.asarray(classes)[:, None]

    def score(deltas):
        values = list(fixed)
        for slot, delta in zip(slots, deltas, strict=True):
            values[slot] = delta
        logits, _ = logits_model.stateless_call(trainable, values, images, training=False)
        return jnp.take_along_axis(logits, picked, axis=1).sum()

    grads = jax.grad(score)([jnp.zeros(probes[id(p)].delta.shape, dtype=images.dtype) for p in pools])
    maps = keras.Model(model.inputs, [p.input for p in pools])(images, training=False)
    maps = maps if isinstance(maps, (list, tuple)) else [maps]  # Keras unpacks a one-output list
    return [np.asarray(m) for m in maps], [np.asarray(g) for g in grads]


class _Probe(keras.layers.Layer):
    """``inner``'s output plus a non-trainable variable of the same shape (zero): where JAX takes the gradient."""

    def __init__(self, inner, shape, **kwargs):
        super().__init__(name=f"{inner.name}_probe", **kwargs)
        self.inner = inner
        self.delta = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="delta")

    def call(self, inputs):
        return keras.ops.add(self.inner(inputs), self.delta)

    def compute_output_shape(self, input_shape):
        return self.inner.compute_output_shape(input_shape)


def grad_cam(model: keras.Model, images: np.ndarray, classes) -> np.ndarray:
    """Grad-CAM maps of ``model`` for one class per image, at the images' size.

    Args:
        model: a model with global-average-pooled convolutional blocks and a ``dnn_logits`` layer (the
            report's baseline and its variants).
        images: (N, H, W, C) float32 in [0, 1], as the model takes them.
        classes: one class id per image (or one for all).

    Returns:
        (N, H, W) float32, each map rectified and scaled to a peak of 1 (all zeros where the class has
        no positive evidence).
    """
    images = np.asarray(images, dtype=np.float32)
    classes = np.broadcast_to(np.asarray(classes, dtype=np.int64), (len(images),))
    maps, weights = maps_and_weights(model, images, classes)
    size = images.shape[1:3]
    total = np.zeros((len(images), *size), dtype=np.float32)
    for block, w in zip(maps, weights, strict=True):
        contribution = (block * w[:, None, None, :]).sum(axis=-1, keepdims=True).astype(np.float32)
        total += np.asarray(
            keras.ops.image.resize(contribution, size, interpolation="bilinear", data_format="channels_last")
        )[..., 0]
    cam = np.maximum(total, 0.0)
    peak = cam.reshape(len(cam), -1).max(axis=1)
    return (cam / np.where(peak > 0, peak, 1.0)[:, None, None]).astype(np.float32)

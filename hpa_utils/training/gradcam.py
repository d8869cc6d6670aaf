"""Grad-CAM (Selvaraju et al., 2017): where in an image a model's evidence for a class lies.

For class c, the feature maps ``A`` of a convolutional layer are weighted by the mean gradient of the
class's logit over each map, summed and rectified: ``relu(sum_k mean_ij(d logit_c / d A_k) * A_k)``, then
resized to the image. The default layer is the baseline's deepest convolution (``cnn_block3_conv3``);
the model's head also pools the two shallower blocks, whose evidence this map does not show.

Backends: the gradient is taken with TensorFlow's ``GradientTape`` or, on JAX, with ``jax.grad`` of the
model's ``stateless_call`` through a probe added to the layer's output (both below); another backend raises
``NotImplementedError``. Everything else is ``keras.ops`` and numpy.
"""

from __future__ import annotations

import numpy as np

from hpa_utils.training.backend import keras

#: The layer whose maps Grad-CAM weights, and the pre-sigmoid layer whose output is the class score.
DEFAULT_LAYER = "cnn_block3_conv3"
LOGITS_LAYER = "dnn_logits"


def class_scores_and_maps(model: keras.Model, images: np.ndarray, classes: np.ndarray, layer: str = DEFAULT_LAYER):
    """The layer's maps (N, h, w, K) and the gradient of each image's class logit over them (N, h, w, K)."""
    target = model.get_layer(layer)
    head = keras.Model(model.inputs, [target.output, model.get_layer(LOGITS_LAYER).output])
    x = np.asarray(images, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            maps, logits = head(x, training=False)
            score = tf.reduce_sum(tf.gather(logits, classes, axis=1, batch_dims=1))
        grads = tape.gradient(score, maps)
        return np.asarray(maps), np.asarray(grads)
    if backend == "jax":
        return _jax_maps_and_gradients(model, target, x, classes)
    raise NotImplementedError(f"Grad-CAM needs the TensorFlow or JAX backend (KERAS_BACKEND), not {backend!r}")


def _jax_maps_and_gradients(model: keras.Model, target, x: np.ndarray, classes: np.ndarray):
    """JAX: the model cloned with a probe after the layer (its output plus a zero variable, the layers
    shared); the gradient over that variable, through ``stateless_call``, is the gradient over the maps."""
    import jax
    import jax.numpy as jnp

    shape = (len(x), *tuple(target.output.shape[1:]))
    probe = _Probe(target, shape)
    logits_source = keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output)
    logits_model = keras.models.clone_model(
        logits_source, clone_function=lambda layer: probe if layer is target else layer
    )
    trainable = [v.value for v in logits_model.trainable_variables]
    fixed = [v.value for v in logits_model.non_trainable_variables]
    slot = next(i for i, v in enumerate(logits_model.non_trainable_variables) if v is probe.delta)
    images = jnp.asarray(x)
    picked = jnp.asarray(classes)[:, None]

    def score(delta):
        values = list(fixed)
        values[slot] = delta
        logits, _ = logits_model.stateless_call(trainable, values, images, training=False)
        return jnp.take_along_axis(logits, picked, axis=1).sum()

    grads = jax.grad(score)(jnp.zeros(shape, dtype=images.dtype))
    maps = keras.Model(model.inputs, target.output)(images, training=False)
    return np.asarray(maps), np.asarray(grads)


class _Probe(keras.layers.Layer):
    """``inner``'s output plus a non-trainable variable of the same shape (zero): the point where JAX takes
    the gradient over the maps."""

    def __init__(self, inner, shape, **kwargs):
        super().__init__(name=f"{inner.name}_probe", **kwargs)
        self.inner = inner
        self.delta = self.add_weight(shape=shape, initializer="zeros", trainable=False, name="delta")

    def call(self, inputs):
        return keras.ops.add(self.inner(inputs), self.delta)

    def compute_output_shape(self, input_shape):
        return self.inner.compute_output_shape(input_shape)


def grad_cam(model: keras.Model, images: np.ndarray, classes, layer: str = DEFAULT_LAYER) -> np.ndarray:
    """Grad-CAM maps of ``model`` for one class per image, at the images' size.

    Args:
        model: a trained model of :mod:`hpa_utils.training.models` (layers ``layer`` and ``dnn_logits``).
        images: (N, H, W, C) float32 in [0, 1], as the model takes them.
        classes: one class id per image (or one for all).
        layer: the convolutional layer whose maps are weighted.

    Returns:
        (N, H, W) float32, each map rectified and scaled to a peak of 1 (all zeros where the class has
        no positive evidence).
    """
    images = np.asarray(images, dtype=np.float32)
    classes = np.broadcast_to(np.asarray(classes, dtype=np.int64), (len(images),))
    maps, grads = class_scores_and_maps(model, images, classes, layer)
    weights = grads.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum((weights * maps).sum(axis=-1), 0.0).astype(np.float32)
    size = images.shape[1:3]
    resized = np.asarray(
        keras.ops.image.resize(cam[..., None], size, interpolation="bilinear", data_format="channels_last")
    )[..., 0]
    resized = np.maximum(resized, 0.0)
    peak = resized.reshape(len(resized), -1).max(axis=1)
    return (resized / np.where(peak > 0, peak, 1.0)[:, None, None]).astype(np.float32)

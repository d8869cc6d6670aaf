"""The roofline of training on this machine: the model's FLOPs per image and the machine's matmul rate.

Training speed is stated in images/s, which says nothing about how close to the machine's limit it is.
Two numbers turn it into a fraction:

* :func:`training_flops_per_image`: the multiply-adds of the model's convolutions and dense layers,
  counted from their shapes (``2 * MACs`` FLOPs for the forward pass, and three times that for a
  training step: the forward pass, the gradient with respect to the inputs and the gradient with
  respect to the weights). Batch norm, pooling, dropout and the optimizer are left out: they are
  memory-bound and small in FLOPs, which is exactly why time spent on them shows up as a lower
  fraction of the roofline.
* :func:`matmul_gflops`: the float32 matrix-multiply rate the machine reaches, measured now with
  numpy (its BLAS uses every core), the best the CPU does on dense float32 work.

``images/s * FLOPs/image`` over the matmul rate is the fraction of the machine the training uses.
"""

from __future__ import annotations

import time

import numpy as np

from hpa_utils.backend import keras

#: A training step costs about three forward passes (forward, input gradient, weight gradient).
TRAINING_PASSES = 3


def layer_macs(model: keras.Model) -> dict[str, int]:
    """Multiply-accumulates of one forward pass of one image, per Conv2D / Dense layer (by name).

    Convolutions count ``out_h * out_w * filters * k_h * k_w * in_channels`` (strides and padding are
    in the output shape), dense layers ``inputs * units``; other layers count nothing.
    """
    macs: dict[str, int] = {}
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            out_h, out_w, filters = (int(v) for v in layer.output.shape[1:4])
            k_h, k_w, in_channels, _ = (int(v) for v in layer.kernel.shape)
            macs[layer.name] = out_h * out_w * filters * k_h * k_w * in_channels
        elif isinstance(layer, keras.layers.Dense):
            inputs, units = (int(v) for v in layer.kernel.shape)
            macs[layer.name] = inputs * units
    return macs


def forward_flops_per_image(model: keras.Model) -> int:
    """FLOPs of one forward pass of one image (2 per multiply-accumulate)."""
    return 2 * sum(layer_macs(model).values())


def training_flops_per_image(model: keras.Model) -> int:
    """FLOPs of one training step per image: three forward passes' worth (see the module's note)."""
    return TRAINING_PASSES * forward_flops_per_image(model)


def matmul_gflops(n: int = 1024, seconds: float = 2.0) -> float:
    """The machine's float32 matrix-multiply rate in GFLOP/s (numpy's BLAS, all cores, best of 3 runs).

    Args:
        n: side of the square matrices (1024: large enough to run at full speed, small enough for cache).
        seconds: time spent per run.
    """
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    a @ b  # warm-up: thread pool start, first touch
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 3:
            a @ b
            count += 1
        best = max(best, 2 * n**3 * count / elapsed / 1e9)
    return best


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer

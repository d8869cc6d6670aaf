"""The base-model variants as plain data, and the geometry of their input: what the configuration checks
and the model builders share, with no Keras import (so resolving a run's configuration stays fast)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def block_kernel_sizes(kernel_size: int | Sequence[int]) -> tuple[int, int, int]:
    """The kernel side of each conv block: one int for all three blocks, or three ints.

    Raises:
        ValueError: if a size is not a positive integer or there are not 1 or 3 of them.
    """
    sizes = (kernel_size,) * 3 if isinstance(kernel_size, (int, np.integer)) else tuple(kernel_size)
    if len(sizes) != 3 or not all(isinstance(k, (int, np.integer)) and k >= 1 for k in sizes):
        raise ValueError(f"kernel_size must be a positive integer or three of them, got {kernel_size!r}.")
    return tuple(int(k) for k in sizes)


def min_input_size(kernel_size: int | Sequence[int] = 3) -> int:
    """Return the smallest height (or width) for which the last convolution still outputs 1 pixel.

    Working backwards from a 1x1 output through the baseline's layers (conv, pool 2, conv stride 2,
    conv, conv, pool 2, conv, conv, conv; all 'valid'): 76 for 3x3 kernels, 146 for 5x5, 98 for
    5x5 in the first two blocks and 3x3 in the third.

    Args:
        kernel_size: kernel side of every block, or one per block (see :func:`block_kernel_sizes`).

    Returns:
        The minimum input side length in pixels.
    """
    k1, k2, k3 = block_kernel_sizes(kernel_size)
    size = 1 + 3 * (k3 - 1)  # block 3: three convs
    size = 2 * size  # pool
    size = size + 2 * (k2 - 1)  # block 2: two stride-1 convs
    size = 2 * (size - 1) + k2  # block 2: the stride-2 conv
    size = 2 * size  # pool
    return size + k1 - 1  # block 1: one conv


@dataclass(frozen=True)
class Variant:
    """One base-model configuration of the report's eight.

    Attributes:
        name: short identifier, usable with :func:`get_variant`.
        kernel_size: side of every convolution kernel.
        dropout_rates: the three convolutional dropouts (d1, d2, d3).
        dense_dropout_rates: the dropouts after the two dense layers.
        description: one line on what changes from the baseline.
    """

    name: str
    kernel_size: int | tuple[int, int, int]
    dropout_rates: tuple[float, float, float]
    dense_dropout_rates: tuple[float, float]
    description: str


#: The eight base models: two kernel settings crossed with four dropout settings (the baseline's, lighter,
#: heavier, rising with depth). Variant 0 is the report's baseline. The "k5" variants use 5x5 kernels in
#: the first two conv blocks and 3x3 in the third: the smallest input they take is 98 px
#: (:func:`min_input_size`), so all eight run at the 128 px of the CPU presets; 5x5 throughout would
#: need 146 px.
VARIANTS: tuple[Variant, ...] = (
    Variant("k3", 3, (0.25, 0.25, 0.25), (0.5, 0.1), "the report's baseline"),
    Variant("k3_light", 3, (0.1, 0.1, 0.1), (0.25, 0.1), "3x3, less dropout"),
    Variant("k3_heavy", 3, (0.4, 0.4, 0.4), (0.5, 0.5), "3x3, more dropout"),
    Variant("k3_rising", 3, (0.1, 0.2, 0.3), (0.5, 0.1), "3x3, dropout rising with depth"),
    Variant("k5", (5, 5, 3), (0.25, 0.25, 0.25), (0.5, 0.1), "5x5 kernels in blocks 1-2, baseline dropout"),
    Variant("k5_light", (5, 5, 3), (0.1, 0.1, 0.1), (0.25, 0.1), "5x5 in blocks 1-2, less dropout"),
    Variant("k5_heavy", (5, 5, 3), (0.4, 0.4, 0.4), (0.5, 0.5), "5x5 in blocks 1-2, more dropout"),
    Variant("k5_rising", (5, 5, 3), (0.1, 0.2, 0.3), (0.5, 0.1), "5x5 in blocks 1-2, dropout rising with depth"),
)


def get_variant(key: int | str) -> Variant:
    """Return a variant by index (0-7) or name.

    Raises:
        ValueError: for an unknown index or name; the message lists the valid ones.
    """
    names = [variant.name for variant in VARIANTS]
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        if 0 <= key < len(VARIANTS):
            return VARIANTS[int(key)]
    elif isinstance(key, str) and key in names:
        return VARIANTS[names.index(key)]
    valid = ", ".join(f"{index}={name}" for index, name in enumerate(names))
    raise ValueError(f"Unknown model variant {key!r}; valid variants are {valid}.")

"""Test-time augmentation over the eight symmetries of the square (the dihedral group D4).

A microscope field has no preferred orientation, so a model's prediction should not change when the
image is flipped or turned by 90 degrees. The 3rd-place solution averaged eight such views ("8x TTA");
the 1st place took the maximum over its views. :func:`dihedral` gives the eight transforms,
:func:`combine` pools the eight predictions. Numpy only; the prediction loop is
:func:`hpa_utils.training.predictions.predict`.
"""

from __future__ import annotations

import numpy as np

#: ``ensemble.tta`` values: none, the mean of the eight views, their maximum.
TTA_MODES = ("none", "mean", "max")
#: The eight transforms: ``k`` quarter turns, then a left-right flip or not.
TRANSFORMS: tuple[tuple[int, bool], ...] = tuple((k, flip) for flip in (False, True) for k in range(4))


def dihedral(images: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """``images`` (..., H, W, C) turned by ``k`` quarter turns (counter-clockwise), then flipped left-right."""
    out = np.rot90(images, k, axes=(-3, -2))
    return np.ascontiguousarray(out[..., :, ::-1, :] if flip else out)


def inverse(images: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Undo :func:`dihedral` with the same ``k`` and ``flip``."""
    out = images[..., :, ::-1, :] if flip else images
    return np.ascontiguousarray(np.rot90(out, -k, axes=(-3, -2)))


def combine(predictions: list[np.ndarray] | np.ndarray, mode: str) -> np.ndarray:
    """Pool the views' (N, C) probabilities: their mean or their maximum."""
    stack = np.asarray(predictions, dtype=np.float32)
    if mode == "mean":
        return stack.mean(axis=0)
    if mode == "max":
        return stack.max(axis=0)
    raise ValueError(f"unknown test-time augmentation {mode!r}; choose one of: {', '.join(TTA_MODES[1:])}")

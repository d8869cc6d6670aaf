"""The training losses: the report's binary cross-entropy, or Keras' binary focal cross-entropy.

No files, no paths: :func:`make_loss` maps a loss's name (``train.loss``) to what ``model.compile`` takes.
"""

from __future__ import annotations

from hpa_utils.backend import keras

#: ``train.loss`` values: the report's loss, and focal loss (the 3rd-place solution's, gamma 2).
LOSSES = ("bce", "focal")


def make_loss(name: str = "bce", gamma: float = 2.0):
    """The loss ``model.compile`` takes for ``name``.

    * ``bce``: Keras' binary cross-entropy (the report's loss; the string, so a model compiles exactly as
      before the switch existed).
    * ``focal``: ``keras.losses.BinaryFocalCrossentropy(gamma)``, each element's cross-entropy times
      ``(1 - p_t) ** gamma``, where ``p_t`` is the probability given to the true value. Like Keras'
      binary cross-entropy it averages over the 28 classes, then over the batch, so its values are on
      the same per-class scale (smaller, as easy elements are down-weighted); no class balancing (alpha).

    Raises:
        ValueError: an unknown name or a negative gamma.
    """
    if name == "bce":
        return "binary_crossentropy"
    if name == "focal":
        if gamma < 0:
            raise ValueError(f"focal loss: gamma must be at least 0, got {gamma}")
        return keras.losses.BinaryFocalCrossentropy(gamma=float(gamma), name="focal")
    raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")

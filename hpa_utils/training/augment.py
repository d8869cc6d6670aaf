"""Training-time augmentation of (N, H, W, 4) uint8 batches with imgaug, as the report did.

The report's transforms: a random affine map (translation, scaling, shear) plus a small additive Gaussian
noise. The affine map is drawn once per image and applied to all four channels together (imgaug treats the
channel axis as one multi-channel image), so the red, green, blue and yellow stains stay aligned; the noise
is drawn independently per channel. Flips and 90-degree rotations, common for HPA (cells have no
orientation), are available as an option (``flips=True``) but off by default, since the report did not use
them.

Results depend only on the seeds: :meth:`Augmenter.augment` takes a per-batch seed (the training code passes
``(epoch, batch_index)``) and derives its random state from ``(base seed, *batch seed)``, so threads or
processes that call it in any order give the same batches.

imgaug is imported here and nowhere else in the project. The dependency is the ``sindre-imgaug`` fork: it
installs the same ``imgaug`` module, whereas imgaug 0.4.0 itself fails to import on numpy >= 2 (it uses
``np.sctypes``, which numpy 2 removed).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import imgaug.augmenters as iaa
import numpy as np

#: Defaults for the report's transforms.
TRANSLATE_FRACTION = 0.1
SCALE_RANGE = (0.9, 1.1)
SHEAR_DEGREES = 10.0
NOISE_STD_FRACTION = 0.02


class Augmenter:
    """Random affine + noise augmentation of (N, H, W, C) uint8 batches, deterministic given seeds.

    Args:
        seed: base seed; the results of :meth:`augment` depend only on it and the per-call seed.
        enabled: False makes every call return its input unchanged (for validation and test data).
        translate: maximum shift along each axis, as a fraction of the image side.
        scale: (low, high) zoom factor range, sampled per image and the same for both axes.
        shear: maximum shear angle in degrees.
        noise_std: maximum standard deviation of the additive Gaussian noise, as a fraction of 255;
            the standard deviation is sampled per image from [0, noise_std]; 0 disables the noise.
        flips: also apply random horizontal/vertical flips and 90-degree rotations (not in the report).
        mode: how pixels outside the image are filled: "constant" (black, the background of
            fluorescence images) or any other imgaug/OpenCV mode such as "reflect".

    Example:
        >>> augmenter = Augmenter(seed=42)
        >>> batch = augmenter.augment(images, seed=(epoch, batch_index))  # doctest: +SKIP
    """

    def __init__(
        self,
        seed: int = 0,
        enabled: bool = True,
        translate: float = TRANSLATE_FRACTION,
        scale: tuple[float, float] = SCALE_RANGE,
        shear: float = SHEAR_DEGREES,
        noise_std: float = NOISE_STD_FRACTION,
        flips: bool = False,
        mode: str = "constant",
    ):
        if not 0.0 <= translate < 0.5:
            raise ValueError(f"translate must be a fraction in [0, 0.5), got {translate}.")
        if not 0.0 < scale[0] <= scale[1]:
            raise ValueError(f"scale must be a (low, high) range with 0 < low <= high, got {scale}.")
        if not 0.0 <= shear < 90.0:
            raise ValueError(f"shear must be an angle in degrees in [0, 90), got {shear}.")
        if not 0.0 <= noise_std <= 1.0:
            raise ValueError(f"noise_std must be a fraction of 255 in [0, 1], got {noise_std}.")
        self.seed = int(seed)
        self.enabled = bool(enabled)
        self.translate = float(translate)
        self.scale = (float(scale[0]), float(scale[1]))
        self.shear = float(shear)
        self.noise_std = float(noise_std)
        self.flips = bool(flips)
        self.mode = mode
        self._calls = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"Augmenter(seed={self.seed}, enabled={self.enabled}, translate={self.translate}, "
            f"scale={self.scale}, shear={self.shear}, noise_std={self.noise_std}, flips={self.flips}, "
            f"mode={self.mode!r})"
        )

    def parameters(self) -> dict:
        """What the transforms do, as plain data (what a study records and the report states): ``enabled``,
        ``translate``, ``scale`` (low, high), ``shear``, ``noise_std``, ``flips``, ``mode``."""
        return {
            "enabled": self.enabled,
            "translate": self.translate,
            "scale": list(self.scale),
            "shear": self.shear,
            "noise_std": self.noise_std,
            "flips": self.flips,
            "mode": self.mode,
        }

    def sequence(self) -> iaa.Sequential:
        """A new, unseeded imgaug Sequential of this augmenter's transforms."""
        steps = []
        if self.flips:
            steps += [iaa.Fliplr(0.5), iaa.Flipud(0.5), iaa.Rot90((0, 3))]
        steps.append(
            iaa.Affine(
                translate_percent={
                    "x": (-self.translate, self.translate),
                    "y": (-self.translate, self.translate),
                },
                scale=self.scale,
                shear=(-self.shear, self.shear),
                order=1,
                mode=self.mode,
                cval=0,
            )
        )
        if self.noise_std > 0:
            steps.append(iaa.AdditiveGaussianNoise(scale=(0.0, self.noise_std * 255.0), per_channel=True))
        return iaa.Sequential(steps)

    def augment(self, batch: np.ndarray, seed: int | Sequence[int]) -> np.ndarray:
        """Augment one batch; the result depends only on ``(self.seed, seed)`` and the batch.

        Thread-safe: every call builds its own imgaug sequence and random state.

        Args:
            batch: (N, H, W, C) uint8 images.
            seed: a per-batch seed: an int, or several (e.g. ``(epoch, batch_index)``, as the training
                batches pass it); ``n`` and ``(n,)`` are the same seed.

        Returns:
            (N, H, W, C) uint8 augmented images (a new array), or ``batch`` itself when disabled.

        Raises:
            ValueError: if ``batch`` is not a 4-D uint8 array.
        """
        _check_batch(batch)
        if not self.enabled or len(batch) == 0:
            return batch
        seeds = [seed] if isinstance(seed, (int, np.integer)) else list(seed)
        words = [self.seed, *(int(s) & 0xFFFFFFFFFFFFFFFF for s in seeds)]
        entropy = np.random.SeedSequence(words).generate_state(1)[0]
        sequence = self.sequence()
        sequence.seed_(int(entropy))
        return np.asarray(sequence(images=batch), dtype=np.uint8)

    def __call__(self, batch: np.ndarray, seed: int | None = None) -> np.ndarray:
        """Augment ``batch``; without a seed, successive calls use seeds 0, 1, 2, ... in order."""
        if seed is None:
            with self._lock:
                seed = self._calls
                self._calls += 1
        return self.augment(batch, seed)


def make_augmenter(seed: int = 0, enabled: bool = True, **options) -> Augmenter:
    """Return an :class:`Augmenter`; ``options`` are its keyword arguments (translate, scale, ...)."""
    return Augmenter(seed=seed, enabled=enabled, **options)


def _check_batch(batch: np.ndarray) -> None:
    if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.dtype != np.uint8:
        shape = getattr(batch, "shape", None)
        dtype = getattr(batch, "dtype", type(batch).__name__)
        raise ValueError(f"Augmentation expects a (N, H, W, C) uint8 array, got shape {shape} and dtype {dtype}.")

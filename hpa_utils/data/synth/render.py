"""One sample's four channels: stains, the labels' green patterns, illumination, camera noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpa_utils.data.labels import CHANNELS
from hpa_utils.data.synth.geometry import Field, blur, make_field, normal, smooth_noise
from hpa_utils.data.synth.patterns import PAINTERS


def _cell_gain(field: Field, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Per-cell brightness map (cells differ in expression); 1 on the background."""
    lut = np.append(rng.uniform(low, high, len(field.cells)), 1.0).astype(np.float32)
    return lut[field.cell_lab]  # index -1 picks the trailing 1.0


def _green(field: Field, labels: Sequence[int], rng: np.random.Generator, patterns: dict | None = None) -> np.ndarray:
    """The protein channel: the labels' patterns mixed, at a random overall intensity. ``patterns``: a dict
    that receives each class's pattern, scaled to a peak of 1 (where the generator drew it)."""
    raw = field.blank()
    for c in labels:
        pattern = PAINTERS[int(c)](field, rng).astype(np.float32)
        if patterns is not None:
            patterns[int(c)] = pattern / max(float(pattern.max()), 1e-6)
        raw += rng.uniform(0.35, 1.0) * pattern / max(float(pattern.max()), 1e-6)  # as before: same pixels
    raw += rng.uniform(0.0, 0.05) * blur(field.cell.astype(np.float32), 2 * field.u)  # unspecific
    raw *= _cell_gain(field, rng, 0.45, 1.2)
    # Random level: the mean over the cells (not the peak) is drawn, so dense and
    # sparse patterns are equally bright on average, capped so peaks stay below 255.
    cell_mean = float(raw[field.cell].mean()) if field.cell.any() else float(raw.mean())
    scale = np.exp(rng.uniform(np.log(8), np.log(40))) / max(cell_mean, 1e-6)
    return raw * min(scale, rng.uniform(230, 330) / max(float(raw.max()), 1e-6))


def _nucleus_stain(field: Field, rng: np.random.Generator) -> np.ndarray:
    """Blue: textured nuclei with darker nucleoli; condensed, brighter mitotic plates."""
    tex = 0.72 + 0.28 * np.clip(0.5 + 0.5 * smooth_noise(rng, field.size, 1.3 * field.u), 0, 1)
    mitotic = np.zeros(len(field.cells) + 1, np.float32)
    mitotic[:-1] = [1.35 if c.mitotic else 1.0 for c in field.cells]
    blue = field.nuc * tex * (1 - 0.4 * field.nucleoli) * mitotic[field.nuc_lab]
    return blur(blue, 0.8 * field.u)


def _shading(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uneven illumination of a field: a gentle random gradient around 1."""
    yy, xx = np.ogrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    return (1 + rng.uniform(-0.12, 0.12) * xx + rng.uniform(-0.12, 0.12) * yy).astype(np.float32)


def _finish(img: np.ndarray, rng: np.random.Generator, peak: float, shading: np.ndarray) -> np.ndarray:
    """Scale to ``peak`` (unless already scaled: peak 0), shade, add camera noise, quantise to uint8."""
    gain = peak / max(float(img.max()), 1e-6) if peak > 0 else 1.0
    img = img * (shading * np.float32(gain))
    read, shot = rng.uniform(0.6, 2.0), rng.uniform(0.2, 0.6)
    sd = np.sqrt(np.maximum(img, 0) * np.float32(shot**2) + np.float32(read**2))
    img += sd * normal(rng, img.shape) + np.float32(0.5 - 1.3 * read)  # read noise mostly clips to 0
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def render_channels(
    labels: Sequence[int], size: int, rng: np.random.Generator, patterns: dict | None = None
) -> dict[str, np.ndarray]:
    """Draw one field for ``labels``: ``{channel: (size, size) uint8}`` for red, green, blue, yellow.

    ``patterns``: a dict that receives ``{class: (size, size) float32}``, each label's green pattern before
    mixing, peak 1 (what :func:`~hpa_utils.data.synth.writer.pattern_maps` replays for the pointing game).
    """
    labels = [int(c) for c in labels]
    field = make_field(rng, size, mitotic=True if 17 in labels else None)
    cyto, nuc = field.cyto.astype(np.float32), field.nuc.astype(np.float32)
    rounded = np.array([c.mitotic for c in field.cells] + [False], np.float32)[field.cell_lab]
    red = 0.55 * field.tubules + 0.35 * cyto + 0.05 * nuc + 0.9 * field.spindle + 0.25 * rounded
    red = blur(red, 0.4 * field.u) * _cell_gain(field, rng, 0.6, 1.25)
    yellow = (field.er + 0.35 * cyto + 0.05 * nuc) * _cell_gain(field, rng, 0.6, 1.25)
    blue = _nucleus_stain(field, rng) * _cell_gain(field, rng, 0.7, 1.2)
    green = _green(field, labels, rng, patterns)
    shading = _shading(rng, size)
    return {
        "red": _finish(red, rng, rng.uniform(120, 255), shading),
        "green": _finish(green, rng, 0.0, shading),
        "blue": _finish(blue, rng, rng.uniform(110, 250), shading),
        "yellow": _finish(yellow, rng, rng.uniform(110, 255), shading),
    }


def render_image(labels: Sequence[int], size: int = 256, seed: int | np.random.Generator = 0) -> np.ndarray:
    """One synthetic field as a (size, size, 4) uint8 array, channels in ``CHANNELS`` order (R, G, B, Y).

    Args:
        labels: class ids whose patterns the green channel shows.
        size: image side in px.
        seed: an int seed or a numpy Generator.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    channels = render_channels(labels, size, rng)
    return np.stack([channels[c] for c in CHANNELS], axis=-1)

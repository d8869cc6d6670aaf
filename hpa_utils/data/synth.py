"""HPA-like synthetic dataset: the project's embedded default dataset.

:func:`generate_dataset` writes a directory in the exact Kaggle layout
(``train.csv``, ``train/{Id}_{red,green,blue,yellow}.png``, ``test/...``,
``sample_submission.csv``) plus ``solution.csv`` (the test labels with a
Public/Private ``Usage`` column) and ``synth.json`` (the parameters).

Each field holds several cells: an elliptical, textured nucleus (blue), radial
microtubule filaments (red) and a reticular ER network (yellow) in the
cytoplasm, a dark background and camera noise. The green channel carries the
labels: every class has a painter (:data:`PAINTERS`) that draws its
localisation pattern from the field's geometry; a multi-label image adds its
classes' patterns with random weights. The green intensity is normalised to a
random level per image, so that mean green intensity alone says little about
the class.

Labels follow the real statistics (SPEC.md): the number of labels per image is
drawn from ``LABELS_PER_IMAGE_COUNTS``, then the labels without replacement with
probability proportional to ``TRAIN_COUNTS`` (:func:`sample_labels`).

Every image has its own random generator, derived from ``(seed, split, index)``,
so a dataset is byte-for-byte reproducible whatever the number of workers.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from hpa_utils.data.labels import (
    CHANNELS,
    LABELS_PER_IMAGE_COUNTS,
    NUM_CLASSES,
    TRAIN_COUNTS,
    multihot_to_target,
    target_to_multihot,
)
from hpa_utils.errors import DataError

#: Bumped whenever the pictures change, so an old dataset is not mistaken for a new one.
GENERATOR_VERSION = 2
MANIFEST = "synth.json"
_SPLIT_CODES = {"train": 0, "test": 1}
_SHIFT = 4  # cv2 drawing: fixed-point coordinates with 4 fractional bits
_ONE = 1 << _SHIFT
_SHAPE_AMPS = np.array([0.34, 0.15, 0.07, 0.04])  # largest outline harmonics 2..5 (fractions of r)
_LINE = cv2.LINE_8  # cv2 anti-aliases 8-bit images only; we blur instead
#: Standard normal quantiles: indexing them with random uint16 gives Gaussian noise 10x faster.
_NORMAL_TABLE = np.sort(np.random.default_rng(2018).standard_normal(1 << 16)).astype(np.float32)


# --------------------------------------------------------------------------- labels and ids


def sample_labels(rng: np.random.Generator, n: int) -> list[list[int]]:
    """Draw the label sets of ``n`` images with Kaggle's label statistics.

    The number of labels of an image is drawn from ``LABELS_PER_IMAGE_COUNTS``
    (1..5); the labels themselves without replacement, with probability
    proportional to ``TRAIN_COUNTS``. Train and test use this same function.

    Args:
        rng: the random generator to draw from.
        n: number of images.

    Returns:
        ``n`` ascending lists of class ids.
    """
    ks = np.array(sorted(LABELS_PER_IMAGE_COUNTS), dtype=int)
    k_prob = np.array([LABELS_PER_IMAGE_COUNTS[k] for k in ks], dtype=float)
    counts = rng.choice(ks, size=n, p=k_prob / k_prob.sum())
    class_prob = np.asarray(TRAIN_COUNTS, dtype=float)
    class_prob /= class_prob.sum()
    return [sorted(int(c) for c in rng.choice(NUM_CLASSES, size=int(k), replace=False, p=class_prob))
            for k in counts]


def make_ids(rng: np.random.Generator, n: int) -> list[str]:
    """Draw ``n`` distinct UUID-like Ids in Kaggle's style, sorted.

    Example: ``00070df0-bbc3-11e8-b2bc-ac1f6b6435d0`` (a version-1 UUID: time
    fields, then Kaggle's constant node ``ac1f6b6435d0``).
    """
    ids: set[str] = set()
    while len(ids) < n:
        m = n - len(ids)
        low = rng.integers(0, 2**32, size=m, dtype=np.uint64)
        mid = rng.integers(0x90, 0xD0, size=m)
        seq = rng.integers(0x9, 0xD, size=m)
        ids.update(f"{a:08x}-bb{b:02x}-11e8-b2b{c:x}-ac1f6b6435d0"
                   for a, b, c in zip(low, mid, seq, strict=True))
    return sorted(ids)


def _rng(seed: int, *key: int) -> np.random.Generator:
    """An independent generator for ``(seed, *key)``, e.g. ``(seed, split, index)``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=tuple(key)))


# --------------------------------------------------------------------------- field geometry


@dataclass
class Cell:
    """One cell of a field (pixel units).

    Attributes:
        x, y, r: centre and mean radius of the cell body.
        shape: radial harmonics ``(a2, p2, ..., a5, p5)`` of the outline.
        nx, ny, na, nb, nangle: nucleus ellipse (centre, semi-axes, degrees);
            for a mitotic cell, the condensed chromosome plate.
        polarity: direction (radians) of the side where Golgi, MTOC and
            aggresome sit.
        nucleoli: ``(x, y, radius)`` of each nucleolus.
        mitotic: a rounded cell in mitosis.
    """

    x: float
    y: float
    r: float
    shape: tuple[float, ...]
    nx: float
    ny: float
    na: float
    nb: float
    nangle: float
    polarity: float
    nucleoli: list[tuple[float, float, float]]
    mitotic: bool = False

    def nucleus_radius(self, phi: float) -> float:
        """Distance from the nucleus centre to its outline in direction ``phi``."""
        t = np.asarray(phi) - np.deg2rad(self.nangle)
        return self.na * self.nb / np.hypot(self.nb * np.cos(t), self.na * np.sin(t))

    def beside_nucleus(self, phi, gap):
        """The point(s) ``gap`` px outside the nucleus in direction(s) ``phi``."""
        d = self.nucleus_radius(phi) + gap
        return self.nx + d * np.cos(phi), self.ny + d * np.sin(phi)


@dataclass
class Field:
    """A field of cells with the maps the painters draw from.

    Attributes:
        size: image side in px; ``u`` is px per unit of a 256 px image.
        cell_lab, nuc_lab: int32 maps, cell index or -1.
        cell, nuc, cyto: boolean masks.
        membrane, junction: float32 masks of cell outlines and cell-cell contacts.
        dist_edge, dist_nuc: px to the cell periphery, and to the nearest nucleus.
        nucleoli: float32 mask of the nucleoli.
        tubules: float32 microtubule filaments (the red texture).
        tubule_ends: (E, 4) array ``x, y, dx, dy`` of filament tips at the periphery.
        er: float32 reticular ER network (the yellow texture).
        spindle: float32 mitotic spindles.
    """

    size: int
    u: float
    cells: list[Cell]
    cell_lab: np.ndarray
    nuc_lab: np.ndarray
    cell: np.ndarray
    nuc: np.ndarray
    cyto: np.ndarray
    membrane: np.ndarray
    junction: np.ndarray
    dist_edge: np.ndarray
    dist_nuc: np.ndarray
    nucleoli: np.ndarray
    tubules: np.ndarray
    tubule_ends: np.ndarray
    er: np.ndarray
    spindle: np.ndarray

    def blank(self) -> np.ndarray:
        """A zero float32 canvas of the field's size."""
        return np.zeros((self.size, self.size), np.float32)


def _pt(x: float, y: float) -> tuple[int, int]:
    """Fixed-point cv2 point (see ``_SHIFT``)."""
    return int(round(x * _ONE)), int(round(y * _ONE))


def _px(v: float) -> int:
    """Fixed-point cv2 length."""
    return max(1, int(round(v * _ONE)))


def _thick(field: Field, t: float) -> int:
    """Integer line thickness for ``t`` units at 256 px (at least 1 px)."""
    return max(1, int(round(t * field.u)))


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (no-op for tiny sigma)."""
    if sigma < 0.3:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigma)


def _normal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Standard normal float32 noise (table look-up; plenty for pictures)."""
    return _NORMAL_TABLE[rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)]


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian noise smoothed at scale ``sigma`` px, zero mean, unit std."""
    step = max(1, int(sigma / 2))
    small = max(4, -(-size // step))
    noise = _normal(rng, (small, small))
    noise = _blur(noise, sigma / step)
    if step > 1:
        noise = cv2.resize(noise, (size, size), interpolation=cv2.INTER_LINEAR)
    noise -= noise.mean()
    return noise / (noise.std() + 1e-6)


def _layout_cells(rng: np.random.Generator, size: int, n_mitotic: int) -> list[Cell]:
    """Place 4-12 cells (geometry scales with ``size``); ``n_mitotic`` of them mitotic."""
    u = size / 256
    n = int(rng.integers(4, 13))
    coverage = rng.uniform(0.6, 1.0)
    r_mean = float(np.clip(size * np.sqrt(coverage / (n * np.pi)), 30 * u, 58 * u))
    centres: list[np.ndarray] = []
    for _ in range(n):
        for _try in range(40):
            c = rng.uniform(0.03 * size, 0.97 * size, 2)
            if all(np.hypot(*(c - o)) >= 1.3 * r_mean for o in centres):
                centres.append(c)
                break
    n_mitotic = max(0, min(n_mitotic, len(centres) - 2))  # keep two normal cells
    mitotic = set(rng.choice(len(centres), size=n_mitotic, replace=False).tolist())
    cells = []
    for i, (x, y) in enumerate(centres):
        is_mitotic = i in mitotic
        r = r_mean * rng.uniform(0.85, 1.2) * (0.72 if is_mitotic else 1.0)
        amps = rng.uniform(0, 1, 4) * _SHAPE_AMPS
        shape = tuple(float(v) for pair in zip(amps, rng.uniform(0, 2 * np.pi, 4), strict=True) for v in pair)
        off, off_dir = rng.uniform(0, 0.12 * r), rng.uniform(0, 2 * np.pi)
        nangle = rng.uniform(0, 180)
        if is_mitotic:
            shape = (0.0,) * 8
            nx, ny, na, nb = x, y, 0.42 * r, 0.13 * r
        else:
            na = r * rng.uniform(0.4, 0.52)
            nx, ny, nb = x + off * np.cos(off_dir), y + off * np.sin(off_dir), na * rng.uniform(0.65, 0.92)
        cell = Cell(x, y, r, shape, nx, ny, na, nb, nangle, rng.uniform(0, 2 * np.pi), [], is_mitotic)
        if not is_mitotic:
            for _ in range(int(rng.integers(1, 5))):
                rho, t = 0.55 * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
                lx, ly = rho * na * np.cos(t), rho * nb * np.sin(t)
                ca, sa = np.cos(np.deg2rad(nangle)), np.sin(np.deg2rad(nangle))
                cell.nucleoli.append((nx + lx * ca - ly * sa, ny + lx * sa + ly * ca,
                                      max(2.2 * u, nb * rng.uniform(0.18, 0.28))))
        cells.append(cell)
    return cells


def _label_maps(cells: Sequence[Cell], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise cells (a power diagram of their outlines) and nuclei into label maps."""
    best = np.full((size, size), np.inf, np.float32)
    cell_lab = np.full((size, size), -1, np.int32)
    for i, c in enumerate(cells):
        reach = (1 + _SHAPE_AMPS.sum()) * c.r
        x0, x1 = max(0, int(c.x - reach)), min(size, int(c.x + reach) + 1)
        y0, y1 = max(0, int(c.y - reach)), min(size, int(c.y + reach) + 1)
        if x0 >= x1 or y0 >= y1:
            continue
        dy, dx = np.ogrid[y0 - c.y:y1 - c.y, x0 - c.x:x1 - c.x]
        dx, dy = dx.astype(np.float32), dy.astype(np.float32)
        theta = np.arctan2(dy, dx)
        radius = np.full_like(theta, c.r)
        for k, (amp, phase) in enumerate(zip(c.shape[::2], c.shape[1::2], strict=True), start=2):
            if amp:
                radius += c.r * amp * np.cos(k * theta + phase)
        d = np.sqrt(dx * dx + dy * dy) / radius
        sub, lab = best[y0:y1, x0:x1], cell_lab[y0:y1, x0:x1]
        closer = d < sub
        sub[closer] = d[closer]
        lab[closer] = i
    cell_lab[best >= 1] = -1
    nuc_f = np.full((size, size), -1, np.float32)
    for i, c in enumerate(cells):
        cv2.ellipse(nuc_f, _pt(c.nx, c.ny), (_px(c.na), _px(c.nb)), c.nangle, 0, 360, float(i), -1,
                    _LINE, _SHIFT)
    nuc_lab = nuc_f.astype(np.int32)
    cell_lab[nuc_lab >= 0] = nuc_lab[nuc_lab >= 0]  # a nucleus always belongs to its cell
    return cell_lab, nuc_lab


def _walk(field: Field, starts: np.ndarray, angles: np.ndarray, owners: np.ndarray, steps: int,
          step: float, turn_sd: float, rng: np.random.Generator,
          curvature: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Grow filaments as random walks that stop when they leave their cell.

    Args:
        starts: (F, 2) start points; ``angles`` (F,) initial directions;
            ``owners`` (F,) the cell each filament must stay in.
        steps, step: number and length (px) of steps.
        turn_sd: random turning per step (radians); ``curvature`` (F,) a
            constant turn per step.

    Returns:
        The fixed-point polylines (those with at least two points), and an
        (F', 4) array ``x, y, dx, dy`` of their tips.
    """
    n = len(starts)
    turns = turn_sd * _normal(rng, (n, steps)).astype(np.float64)
    if curvature is not None:
        turns += np.asarray(curvature, np.float64)[:, None]
    ang = np.asarray(angles, np.float64)[:, None] + np.cumsum(turns, axis=1)
    track = np.empty((n, steps + 1, 2))
    track[:, 0] = starts
    track[:, 1:, 0] = track[:, :1, 0] + step * np.cumsum(np.cos(ang), axis=1)
    track[:, 1:, 1] = track[:, :1, 1] + step * np.cumsum(np.sin(ang), axis=1)
    ix, iy = np.rint(track[..., 0]).astype(np.intp), np.rint(track[..., 1]).astype(np.intp)
    inside = (ix >= 0) & (iy >= 0) & (ix < field.size) & (iy < field.size)
    here = field.cell_lab[np.clip(iy, 0, field.size - 1), np.clip(ix, 0, field.size - 1)]
    left = ~inside | (here != np.asarray(owners)[:, None])
    left[:, 0] = False
    last = np.where(left.any(axis=1), left.argmax(axis=1), steps + 1) - 1  # last step inside
    keep = np.flatnonzero(last >= 1)
    fixed = np.rint(track * _ONE).astype(np.int32)
    lines = [fixed[f, : last[f] + 1] for f in keep]
    tip, before = track[keep, last[keep]], track[keep, last[keep] - 1]
    d = tip - before
    d /= np.hypot(d[:, 0], d[:, 1])[:, None] + 1e-9
    return lines, np.concatenate([tip, d], axis=1)


def _tubules(field: Field, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Microtubules: filaments growing from the nucleus outward to the periphery."""
    starts, angles, owners = [], [], []
    for i, c in enumerate(field.cells):
        if c.mitotic:
            continue
        k = int(rng.integers(45, 65))
        phi = rng.uniform(0, 2 * np.pi, k)
        starts.append(np.stack(c.beside_nucleus(phi, 1.5 * field.u), 1))
        angles.append(phi + rng.normal(0, 0.6, k))
        owners += [i] * k
    img = field.blank()
    if not starts:
        return img, np.empty((0, 4))
    steps = int(np.ceil(2 * max(c.r for c in field.cells) / (3 * field.u)))
    lines, tips = _walk(field, np.concatenate(starts), np.concatenate(angles), np.array(owners), steps,
                        3 * field.u, 0.22, rng)
    cv2.polylines(img, lines, False, 1.0, _thick(field, 1), _LINE, _SHIFT)
    return _blur(img, 0.6 * field.u) * field.cell, tips


def _er_network(field: Field, rng: np.random.Generator) -> np.ndarray:
    """ER: the zero set of smooth noise (a reticular net), denser near the nucleus."""
    u = field.u
    net = np.exp(-((_smooth_noise(rng, field.size, 1.7 * u) / 0.35) ** 2))
    near = 0.3 + 0.7 * np.exp(-field.dist_nuc / (18 * u))
    patchy = 0.75 + 0.25 * np.clip(_smooth_noise(rng, field.size, 8 * u), -1, 1)
    er = net * near * patchy * field.cyto
    rim = field.blank()
    for c in field.cells:
        if not c.mitotic:
            cv2.ellipse(rim, _pt(c.nx, c.ny), (_px(c.na + u), _px(c.nb + u)), c.nangle, 0, 360, 0.35,
                        _thick(field, 2), _LINE, _SHIFT)
    return _blur(np.maximum(er, rim), 0.5 * u).astype(np.float32)


def _spindles(field: Field) -> np.ndarray:
    """Mitotic spindles: fibres from two poles to the chromosome plate, bright poles."""
    img = field.blank()
    for c in field.cells:
        if not c.mitotic:
            continue
        a = np.deg2rad(c.nangle)
        e, p = np.array([np.cos(a), np.sin(a)]), np.array([-np.sin(a), np.cos(a)])
        centre = np.array([c.x, c.y])
        for sign in (-1, 1):
            pole = centre + sign * 0.62 * c.r * p
            body = [pole, centre + 0.45 * c.r * e, centre - 0.45 * c.r * e]
            cv2.fillPoly(img, [np.round(np.array(body) * _ONE).astype(np.int32)], 0.3, _LINE, _SHIFT)
            for t in np.linspace(-1, 1, 7):
                end = centre + t * 0.42 * c.r * e
                mid = (pole + end) / 2 + t * 0.12 * c.r * e
                pts = np.round(np.array([pole, mid, end]) * _ONE).astype(np.int32)
                cv2.polylines(img, [pts], False, 0.8, _thick(field, 1), _LINE, _SHIFT)
            cv2.circle(img, _pt(*pole), _px(2 * field.u), 1.0, -1, _LINE, _SHIFT)
    return _blur(img, 0.6 * field.u)


def make_field(rng: np.random.Generator, size: int, mitotic: bool | None = None) -> Field:
    """Lay out a field of cells and compute every map the painters need.

    Args:
        rng: random generator.
        size: image side in px.
        mitotic: force (True) or forbid (False) a mitotic cell; None: 20% chance.
    """
    if mitotic is None:
        mitotic = rng.random() < 0.2
    n_mitotic = int(mitotic) * (2 if rng.random() < 0.25 else 1)
    cells = _layout_cells(rng, size, n_mitotic)
    cell_lab, nuc_lab = _label_maps(cells, size)
    u = size / 256
    cell, nuc = cell_lab >= 0, nuc_lab >= 0
    lab_f = cell_lab.astype(np.float32)
    k = 2 * max(1, int(round(2 * u))) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    dil, ero = cv2.dilate(lab_f, kernel), cv2.erode(lab_f, kernel)
    edge = (dil != ero) & cell
    junction = edge & (ero >= 0)
    dist_edge = cv2.distanceTransform((cell & ~junction).astype(np.uint8), cv2.DIST_L2, 3)
    dist_nuc = cv2.distanceTransform((~nuc).astype(np.uint8), cv2.DIST_L2, 3)
    nucleoli = np.zeros((size, size), np.float32)
    for c in cells:
        for x, y, r in c.nucleoli:
            cv2.circle(nucleoli, _pt(x, y), _px(r), 1.0, -1, _LINE, _SHIFT)
    empty = np.zeros((size, size), np.float32)
    field = Field(size=size, u=u, cells=cells, cell_lab=cell_lab, nuc_lab=nuc_lab, cell=cell, nuc=nuc,
                  cyto=cell & ~nuc, membrane=edge.astype(np.float32), junction=junction.astype(np.float32),
                  dist_edge=dist_edge, dist_nuc=dist_nuc, nucleoli=nucleoli * nuc, tubules=empty,
                  tubule_ends=np.empty((0, 4)), er=empty, spindle=empty)
    field.tubules, field.tubule_ends = _tubules(field, rng)
    field.er = _er_network(field, rng)
    field.spindle = _spindles(field)
    return field


# --------------------------------------------------------------------------- green patterns


def _sample_points(rng: np.random.Generator, weight: np.ndarray, k: int) -> np.ndarray:
    """``k`` points (x, y) drawn with probability proportional to ``weight``."""
    flat = weight.ravel().astype(np.float64)
    cdf = np.cumsum(flat)
    if k <= 0 or cdf[-1] <= 0:
        return np.empty((0, 2))
    idx = np.minimum(np.searchsorted(cdf, rng.random(k) * cdf[-1], side="right"), flat.size - 1)
    y, x = np.divmod(idx, weight.shape[1])
    return np.stack([x + rng.random(k), y + rng.random(k)], 1)


def _normal_cells(field: Field) -> list[Cell]:
    return [c for c in field.cells if not c.mitotic]


def _count(rng: np.random.Generator, per_cell: float, field: Field) -> int:
    """A Poisson number of objects, about ``per_cell`` per cell, at least one."""
    return max(1, int(rng.poisson(per_cell * len(field.cells))))


def _some_cells(rng: np.random.Generator, field: Field, share: float) -> list[Cell]:
    """About ``share`` of the interphase cells, at least one."""
    cells = _normal_cells(field)
    chosen = rng.random(len(cells)) < share
    chosen[int(rng.integers(len(cells)))] = True
    return [c for c, keep in zip(cells, chosen, strict=True) if keep]


def _dots(field: Field, rng: np.random.Generator, weight: np.ndarray, per_cell: float,
          radius: tuple[float, float], ring: bool = False) -> np.ndarray:
    """Round dots (or hollow rings) of ``radius`` units, about ``per_cell`` per cell."""
    k = _count(rng, per_cell, field)
    img = field.blank()
    thickness = _thick(field, 1.6) if ring else -1
    for x, y in _sample_points(rng, weight, k):
        cv2.circle(img, _pt(x, y), _px(rng.uniform(*radius) * field.u), rng.uniform(0.45, 1.0),
                   thickness, _LINE, _SHIFT)
    return _blur(img, 0.5 * field.u)


def _segments(field: Field, rng: np.random.Generator, points: np.ndarray, lengths: np.ndarray,
              angles: np.ndarray, thickness: float) -> np.ndarray:
    """Short straight segments centred on ``points``."""
    img = field.blank()
    for (x, y), h, a in zip(points, lengths / 2, angles, strict=True):
        dx, dy = h * np.cos(a), h * np.sin(a)
        cv2.line(img, _pt(x - dx, y - dy), _pt(x + dx, y + dy), rng.uniform(0.45, 1.0),
                 _thick(field, thickness), _LINE, _SHIFT)
    return _blur(img, 0.5 * field.u)


def _nucleoplasm(field: Field, rng: np.random.Generator) -> np.ndarray:
    """0: fills the nuclei, textured, sparing the nucleoli."""
    tex = 0.78 + 0.22 * np.clip(_smooth_noise(rng, field.size, 1.5 * field.u), -1, 1)
    return _blur(field.nuc * tex * (1 - 0.85 * field.nucleoli), 0.6 * field.u)


def _nuclear_membrane(field: Field, rng: np.random.Generator) -> np.ndarray:
    """1: a rim around each nucleus."""
    img = field.blank()
    for c in _normal_cells(field):
        cv2.ellipse(img, _pt(c.nx, c.ny), (_px(c.na), _px(c.nb)), c.nangle, 0, 360, 1.0,
                    _thick(field, 2), _LINE, _SHIFT)
    return _blur(img, 0.6 * field.u) + 0.08 * field.nuc


def _nucleoli(field: Field, rng: np.random.Generator) -> np.ndarray:
    """2: a few bright round spots inside each nucleus (the nucleoli)."""
    return _blur(field.nucleoli, 0.7 * field.u)


def _fibrillar_center(field: Field, rng: np.random.Generator) -> np.ndarray:
    """3: clusters of tiny dots inside the nucleoli."""
    img = field.blank()
    for c in field.cells:
        for x, y, r in c.nucleoli:
            for _ in range(int(rng.integers(3, 7))):
                rho, t = 1.1 * r * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
                cv2.circle(img, _pt(x + rho * np.cos(t), y + rho * np.sin(t)), _px(1.6 * field.u),
                           rng.uniform(0.6, 1.0), -1, _LINE, _SHIFT)
    return _blur(img, 0.4 * field.u) + 0.12 * _blur(field.nucleoli, field.u)


def _nuclear_speckles(field: Field, rng: np.random.Generator) -> np.ndarray:
    """4: many irregular speckles in the nucleoplasm."""
    blobs = _smooth_noise(rng, field.size, 1.6 * field.u)
    speck = np.clip(blobs - 0.8, 0, None) * field.nuc * (1 - field.nucleoli)
    return _blur(speck, 0.5 * field.u) + 0.12 * field.nuc


def _nuclear_bodies(field: Field, rng: np.random.Generator) -> np.ndarray:
    """5: 1-6 discrete dots per nucleus."""
    img = field.blank()
    for c in _normal_cells(field):
        a = np.deg2rad(c.nangle)
        for _ in range(int(rng.integers(1, 7))):
            rho, t = 0.7 * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            lx, ly = rho * c.na * np.cos(t), rho * c.nb * np.sin(t)
            x, y = c.nx + lx * np.cos(a) - ly * np.sin(a), c.ny + lx * np.sin(a) + ly * np.cos(a)
            cv2.circle(img, _pt(x, y), _px(rng.uniform(2.0, 3.0) * field.u), rng.uniform(0.6, 1.0), -1,
                       _LINE, _SHIFT)
    return _blur(img, 0.6 * field.u)


def _er(field: Field, rng: np.random.Generator) -> np.ndarray:
    """6: the reticular ER network of the yellow channel."""
    return field.er


def _golgi(field: Field, rng: np.random.Generator) -> np.ndarray:
    """7: a compact, fragmented crescent on one side of the nucleus."""
    img = field.blank()
    u = field.u
    for c in _normal_cells(field):
        span = rng.uniform(60, 130)
        mid = np.rad2deg(c.polarity - np.deg2rad(c.nangle))  # cv2 arc angles are in the ellipse frame
        cv2.ellipse(img, _pt(c.nx, c.ny), (_px(c.na + 3.5 * u), _px(c.nb + 3.5 * u)), c.nangle,
                    mid - span / 2, mid + span / 2, rng.uniform(0.6, 1.0), _thick(field, 5), _LINE, _SHIFT)
    texture = 0.35 + 0.65 * np.clip(0.5 + 0.5 * _smooth_noise(rng, field.size, 1.5 * u), 0, 1)
    return _blur(img * texture, 0.8 * u)


def _peroxisomes(field: Field, rng: np.random.Generator) -> np.ndarray:
    """8: many small dots spread over the cytoplasm."""
    return _dots(field, rng, field.cyto, 45, (1.4, 1.7))


def _endosomes(field: Field, rng: np.random.Generator) -> np.ndarray:
    """9: medium dots in the cytoplasm, a little denser near the nucleus."""
    weight = field.cyto * (0.4 + np.exp(-field.dist_nuc / (15 * field.u)))
    return _dots(field, rng, weight, 18, (2.3, 3.3))


def _lysosomes(field: Field, rng: np.random.Generator) -> np.ndarray:
    """10: dots clustered around the nucleus."""
    return _dots(field, rng, field.cyto * np.exp(-field.dist_nuc / (5 * field.u)), 22, (1.8, 2.8))


def _intermediate_filaments(field: Field, rng: np.random.Generator) -> np.ndarray:
    """11: long wavy fibres winding around the nucleus across the cell."""
    starts, angles, owners, bends = [], [], [], []
    step = 2.5 * field.u
    for owner, c in enumerate(field.cells):
        if c.mitotic:
            continue
        for _ in range(int(rng.integers(8, 14))):
            phi = rng.uniform(0, 2 * np.pi)
            d = c.nucleus_radius(phi) + rng.uniform(0.15, 0.6) * (c.r - c.nucleus_radius(phi))
            x, y = c.nx + d * np.cos(phi), c.ny + d * np.sin(phi)
            for direction in (1, -1):  # grow both ways around the nucleus
                starts.append((x, y))
                angles.append(phi + direction * np.pi / 2)
                owners.append(owner)
                bends.append(direction * step / max(2 * d, 1.0))
    img = field.blank()
    if starts:
        steps = int(np.ceil(2.2 * max(c.r for c in field.cells) / step))
        lines, _ = _walk(field, np.array(starts), np.array(angles), np.array(owners), steps, step, 0.12,
                         rng, curvature=np.array(bends))
        cv2.polylines(img, lines, False, 1.0, _thick(field, 1.6), _LINE, _SHIFT)
    return _blur(img, 0.6 * field.u)


def _actin(field: Field, rng: np.random.Generator) -> np.ndarray:
    """12: straight parallel stress fibres, one direction per cell, and a faint cortex."""
    img = field.blank()
    u = field.u
    for i, c in enumerate(field.cells):
        lines = field.blank()
        psi = rng.uniform(0, np.pi)
        t, n = np.array([np.cos(psi), np.sin(psi)]), np.array([-np.sin(psi), np.cos(psi)])
        o = -1.2 * c.r + rng.uniform(0, 4 * u)
        while o < 1.2 * c.r:
            p = np.array([c.x, c.y]) + o * n + rng.uniform(-0.3, 0.3) * c.r * t
            half = 1.3 * c.r * rng.uniform(0.5, 1.0)
            cv2.line(lines, _pt(*(p - half * t)), _pt(*(p + half * t)), rng.uniform(0.3, 1.0),
                     _thick(field, rng.choice([1, 2])), _LINE, _SHIFT)
            o += rng.uniform(4, 9) * u
        img += lines * (field.cell_lab == i)
    return _blur(img, 0.5 * u) + 0.4 * _blur(field.membrane, 0.6 * u)


def _radial_angles(field: Field, pts: np.ndarray) -> np.ndarray:
    """Direction from each point's cell centre to the point."""
    ix = np.clip(pts[:, 0].astype(int), 0, field.size - 1)
    iy = np.clip(pts[:, 1].astype(int), 0, field.size - 1)
    owner = field.cell_lab[iy, ix]
    cx = np.array([field.cells[o].x for o in owner])
    cy = np.array([field.cells[o].y for o in owner])
    return np.arctan2(pts[:, 1] - cy, pts[:, 0] - cx)


def _focal_adhesion(field: Field, rng: np.random.Generator) -> np.ndarray:
    """13: short radial dashes at the cell periphery."""
    u = field.u
    rim = field.cell & (field.dist_edge >= 1) & (field.dist_edge < max(5 * u, 2.5))
    pts = _sample_points(rng, rim.astype(np.float32), _count(rng, 14, field))
    return _segments(field, rng, pts, rng.uniform(4, 8, len(pts)) * u, _radial_angles(field, pts), 2)


def _microtubules(field: Field, rng: np.random.Generator) -> np.ndarray:
    """14: the microtubules of the red channel."""
    return field.tubules + 0.5 * field.spindle


def _microtubule_ends(field: Field, rng: np.random.Generator) -> np.ndarray:
    """15: short comets at the peripheral tips of the microtubules."""
    tips = field.tubule_ends
    tips = tips[(rng.random(len(tips)) < 0.6) | (np.arange(len(tips)) == 0)]
    img = field.blank()
    for x, y, dx, dy in tips:
        back = 3 * field.u
        cv2.line(img, _pt(x - back * dx, y - back * dy), _pt(x, y), rng.uniform(0.6, 1.0), _thick(field, 2),
                 _LINE, _SHIFT)
    return _blur(img, 0.5 * field.u)


def _cytokinetic_bridge(field: Field, rng: np.random.Generator) -> np.ndarray:
    """16: a bright line with a midbody between two neighbouring cells."""
    img = field.blank()
    cells = _normal_cells(field)
    pairs = sorted((np.hypot(a.x - b.x, a.y - b.y), i, j)
                   for i, a in enumerate(cells) for j, b in enumerate(cells) if i < j)
    for _, i, j in pairs[: 1 + int(rng.random() < 0.3)]:
        a, b = cells[i], cells[j]
        ab = np.arctan2(b.ny - a.ny, b.nx - a.nx)
        p, q = np.array(a.beside_nucleus(ab, 0)), np.array(b.beside_nucleus(ab + np.pi, 0))
        mid, half = (p + q) / 2, float(np.clip(0.45 * np.hypot(*(q - p)), 7 * field.u, 14 * field.u))
        direction = np.array([np.cos(ab), np.sin(ab)])
        cv2.line(img, _pt(*(mid - half * direction)), _pt(*(mid + half * direction)), 0.7, _thick(field, 2),
                 _LINE, _SHIFT)
        cv2.circle(img, _pt(*mid), _px(2.8 * field.u), 1.0, -1, _LINE, _SHIFT)
    return _blur(img, 0.6 * field.u)


def _mitotic_spindle(field: Field, rng: np.random.Generator) -> np.ndarray:
    """17: the spindle of a rounded mitotic cell."""
    return field.spindle


def _beside_dots(field: Field, rng: np.random.Generator, share: float, count: tuple[int, int],
                 radius: float, spread: float) -> np.ndarray:
    """Dots on the polarity side of the nucleus of ``share`` of the cells."""
    img = field.blank()
    u = field.u
    for c in _some_cells(rng, field, share):
        x, y = c.beside_nucleus(c.polarity + rng.normal(0, 0.3), rng.uniform(2, 5) * u)
        for _ in range(int(rng.integers(count[0], count[1] + 1))):
            cv2.circle(img, _pt(x + rng.normal(0, spread * u), y + rng.normal(0, spread * u)),
                       _px(radius * u), rng.uniform(0.8, 1.0), -1, _LINE, _SHIFT)
    return img


def _mtoc(field: Field, rng: np.random.Generator) -> np.ndarray:
    """18: one bright dot with a faint aster beside the nucleus."""
    dots = _beside_dots(field, rng, 0.85, (1, 1), 2.6, 0.0)
    return _blur(dots, 0.5 * field.u) + 0.6 * _blur(dots, 5 * field.u) * field.cell


def _centrosome(field: Field, rng: np.random.Generator) -> np.ndarray:
    """19: one or two small dots beside the nucleus."""
    return _blur(_beside_dots(field, rng, 0.9, (1, 2), 1.8, 2.0), 0.5 * field.u)


def _lipid_droplets(field: Field, rng: np.random.Generator) -> np.ndarray:
    """20: hollow rings in the cytoplasm."""
    inner = field.cyto * (0.02 + (field.dist_edge > 4 * field.u))  # clear of the cell edge
    return _dots(field, rng, inner, 6, (3.5, 6.0), ring=True)


def _plasma_membrane(field: Field, rng: np.random.Generator) -> np.ndarray:
    """21: the cell outlines."""
    return _blur(field.membrane, 0.6 * field.u)


def _cell_junctions(field: Field, rng: np.random.Generator) -> np.ndarray:
    """22: the contacts between neighbouring cells."""
    if field.junction.any():
        return _blur(field.junction, 0.7 * field.u)
    return 0.5 * _blur(field.membrane, 0.6 * field.u)  # no contacts in this field


def _mitochondria(field: Field, rng: np.random.Generator) -> np.ndarray:
    """23: short tubules, a dense network near the nucleus."""
    weight = field.cyto * (0.25 + np.exp(-field.dist_nuc / (10 * field.u)))
    pts = _sample_points(rng, weight, _count(rng, 45, field))
    n = len(pts)
    return _segments(field, rng, pts, rng.uniform(3, 7, n) * field.u, rng.uniform(0, np.pi, n), 1.5)


def _aggresome(field: Field, rng: np.random.Generator) -> np.ndarray:
    """24: one big bright blob beside the nucleus."""
    img = field.blank()
    u = field.u
    for c in _some_cells(rng, field, 0.75):
        size = rng.uniform(5, 8) * u
        x, y = c.beside_nucleus(c.polarity, 0.6 * size)
        for _ in range(3):
            cv2.circle(img, _pt(x + rng.normal(0, 0.3 * size), y + rng.normal(0, 0.3 * size)),
                       _px(size * rng.uniform(0.55, 0.8)), 1.0, -1, _LINE, _SHIFT)
    return _blur(img, 1.0 * u)


def _cytosol(field: Field, rng: np.random.Generator) -> np.ndarray:
    """25: a diffuse fill of the cytoplasm."""
    tex = 0.85 + 0.15 * np.clip(_smooth_noise(rng, field.size, 2 * field.u), -1, 1)
    return _blur(field.cyto * tex + 0.1 * field.nuc, 0.8 * field.u)


def _cytoplasmic_bodies(field: Field, rng: np.random.Generator) -> np.ndarray:
    """26: a few bright round bodies in the cytoplasm."""
    return _dots(field, rng, field.cyto, 2.0, (3.0, 4.5))


def _rods_and_rings(field: Field, rng: np.random.Generator) -> np.ndarray:
    """27: a few short rods and small rings in the cytoplasm."""
    u = field.u
    pts = _sample_points(rng, field.cyto.astype(np.float32), _count(rng, 1.5, field))
    rods = rng.random(len(pts)) < 0.5
    img = _segments(field, rng, pts[rods], rng.uniform(6, 10, rods.sum()) * u,
                    rng.uniform(0, np.pi, rods.sum()), 2)
    rings = field.blank()
    for x, y in pts[~rods]:
        cv2.circle(rings, _pt(x, y), _px(rng.uniform(3, 4) * u), 1.0, _thick(field, 1.6), _LINE, _SHIFT)
    return img + _blur(rings, 0.5 * u)


Painter = Callable[[Field, np.random.Generator], np.ndarray]

#: Class id -> function drawing that class's green pattern on a field (values about 0..1).
PAINTERS: dict[int, Painter] = {
    0: _nucleoplasm, 1: _nuclear_membrane, 2: _nucleoli, 3: _fibrillar_center, 4: _nuclear_speckles,
    5: _nuclear_bodies, 6: _er, 7: _golgi, 8: _peroxisomes, 9: _endosomes, 10: _lysosomes,
    11: _intermediate_filaments, 12: _actin, 13: _focal_adhesion, 14: _microtubules,
    15: _microtubule_ends, 16: _cytokinetic_bridge, 17: _mitotic_spindle, 18: _mtoc, 19: _centrosome,
    20: _lipid_droplets, 21: _plasma_membrane, 22: _cell_junctions, 23: _mitochondria, 24: _aggresome,
    25: _cytosol, 26: _cytoplasmic_bodies, 27: _rods_and_rings,
}


# --------------------------------------------------------------------------- channels


def _cell_gain(field: Field, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Per-cell brightness map (cells differ in expression); 1 on the background."""
    lut = np.append(rng.uniform(low, high, len(field.cells)), 1.0).astype(np.float32)
    return lut[field.cell_lab]  # index -1 picks the trailing 1.0


def _green(field: Field, labels: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """The protein channel: the labels' patterns mixed, at a random overall intensity."""
    raw = field.blank()
    for c in labels:
        pattern = PAINTERS[int(c)](field, rng).astype(np.float32)
        raw += rng.uniform(0.35, 1.0) * pattern / max(float(pattern.max()), 1e-6)
    raw += rng.uniform(0.0, 0.05) * _blur(field.cell.astype(np.float32), 2 * field.u)  # unspecific
    raw *= _cell_gain(field, rng, 0.45, 1.2)
    # Random level: the mean over the cells (not the peak) is drawn, so dense and
    # sparse patterns are equally bright on average, capped so peaks stay below 255.
    cell_mean = float(raw[field.cell].mean()) if field.cell.any() else float(raw.mean())
    scale = np.exp(rng.uniform(np.log(8), np.log(40))) / max(cell_mean, 1e-6)
    return raw * min(scale, rng.uniform(230, 330) / max(float(raw.max()), 1e-6))


def _nucleus_stain(field: Field, rng: np.random.Generator) -> np.ndarray:
    """Blue: textured nuclei with darker nucleoli; condensed, brighter mitotic plates."""
    tex = 0.72 + 0.28 * np.clip(0.5 + 0.5 * _smooth_noise(rng, field.size, 1.3 * field.u), 0, 1)
    mitotic = np.zeros(len(field.cells) + 1, np.float32)
    mitotic[:-1] = [1.35 if c.mitotic else 1.0 for c in field.cells]
    blue = field.nuc * tex * (1 - 0.4 * field.nucleoli) * mitotic[field.nuc_lab]
    return _blur(blue, 0.8 * field.u)


def _shading(rng: np.random.Generator, size: int) -> np.ndarray:
    """Uneven illumination of a field: a gentle random gradient around 1."""
    yy, xx = np.ogrid[-1:1:size * 1j, -1:1:size * 1j]
    return (1 + rng.uniform(-0.12, 0.12) * xx + rng.uniform(-0.12, 0.12) * yy).astype(np.float32)


def _finish(img: np.ndarray, rng: np.random.Generator, peak: float, shading: np.ndarray) -> np.ndarray:
    """Scale to ``peak`` (unless already scaled: peak 0), shade, add camera noise, quantise to uint8."""
    gain = peak / max(float(img.max()), 1e-6) if peak > 0 else 1.0
    img = img * (shading * np.float32(gain))
    read, shot = rng.uniform(0.6, 2.0), rng.uniform(0.2, 0.6)
    sd = np.sqrt(np.maximum(img, 0) * np.float32(shot**2) + np.float32(read**2))
    img += sd * _normal(rng, img.shape) + np.float32(0.5 - 1.3 * read)  # read noise mostly clips to 0
    return np.clip(img, 0, 255, out=img).astype(np.uint8)


def render_channels(labels: Sequence[int], size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Draw one field for ``labels``: ``{channel: (size, size) uint8}`` for red, green, blue, yellow."""
    labels = [int(c) for c in labels]
    field = make_field(rng, size, mitotic=True if 17 in labels else None)
    cyto, nuc = field.cyto.astype(np.float32), field.nuc.astype(np.float32)
    rounded = np.array([c.mitotic for c in field.cells] + [False], np.float32)[field.cell_lab]
    red = 0.55 * field.tubules + 0.35 * cyto + 0.05 * nuc + 0.9 * field.spindle + 0.25 * rounded
    red = _blur(red, 0.4 * field.u) * _cell_gain(field, rng, 0.6, 1.25)
    yellow = (field.er + 0.35 * cyto + 0.05 * nuc) * _cell_gain(field, rng, 0.6, 1.25)
    blue = _nucleus_stain(field, rng) * _cell_gain(field, rng, 0.7, 1.2)
    green = _green(field, labels, rng)
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


# --------------------------------------------------------------------------- writing


def _write_image(prefix: Path, channels: dict[str, np.ndarray]) -> None:
    """Write ``{prefix}_{channel}.png`` for the four channels."""
    for name in CHANNELS:
        path = f"{prefix}_{name}.png"
        if not cv2.imwrite(path, channels[name]):
            raise OSError(f"could not write {path}")


def _render_chunk(folder: str, split: str, seed: int, size: int,
                  items: list[tuple[int, str, list[int]]]) -> int:
    """Render and write the images ``items`` = [(index, Id, labels)] of one split."""
    for index, image_id, labels in items:
        channels = render_channels(labels, size, _rng(seed, _SPLIT_CODES[split], index))
        _write_image(Path(folder) / image_id, channels)
    return len(items)


def _init_worker() -> None:
    """Set up a pool worker: one cv2 thread per process, and (glibc) keep freed image
    buffers in the heap rather than unmapping them after every image, which saves
    about a third of the run time in page faults."""
    cv2.setNumThreads(1)
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: no matter
        pass


def _plan(seed: int, n_train: int, n_test: int, public_fraction: float):
    """Ids, labels and Public/Private usage of both splits, all from ``seed``."""
    ids = make_ids(_rng(seed, 20), n_train + n_test)
    order = _rng(seed, 21).permutation(len(ids))
    train_ids = sorted(ids[i] for i in order[:n_train])
    test_ids = sorted(ids[i] for i in order[n_train:])
    train_labels = sample_labels(_rng(seed, 10), n_train)
    test_labels = sample_labels(_rng(seed, 11), n_test)
    public = np.zeros(n_test, bool)
    public[_rng(seed, 22).permutation(n_test)[: int(round(public_fraction * n_test))]] = True
    return train_ids, train_labels, test_ids, test_labels, public


def _target(labels: Sequence[int]) -> str:
    return multihot_to_target(target_to_multihot(labels))


def _write_csvs(folder: Path, plan) -> None:
    train_ids, train_labels, test_ids, test_labels, public = plan
    lines = ["Id,Target"] + [f"{i},{_target(t)}" for i, t in zip(train_ids, train_labels, strict=True)]
    (folder / "train.csv").write_text("\n".join(lines) + "\n")
    lines = ["Id,Predicted"] + [f"{i},0" for i in test_ids]
    (folder / "sample_submission.csv").write_text("\n".join(lines) + "\n")
    lines = ["Id,Target,Usage"] + [f"{i},{_target(t)},{'Public' if p else 'Private'}"
                                   for i, t, p in zip(test_ids, test_labels, public, strict=True)]
    (folder / "solution.csv").write_text("\n".join(lines) + "\n")


def _read_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(folder: Path, params: dict) -> bool:
    files = ("train.csv", "sample_submission.csv", "solution.csv")
    if not all((folder / f).is_file() for f in files):
        return False
    for split, n in (("train", params["n_train"]), ("test", params["n_test"])):
        sub = folder / split
        if not sub.is_dir() or sum(1 for e in os.scandir(sub) if e.name.endswith(".png")) != 4 * n:
            return False
    return True


def _summary(out_dir: Path, params: dict, seconds: float, skipped: bool) -> dict:
    return {
        **{k: params[k] for k in ("n_train", "n_test", "size", "seed", "public_fraction")},
        "out_dir": str(out_dir),
        "train_csv": str(out_dir / "train.csv"),
        "train_dir": str(out_dir / "train"),
        "test_dir": str(out_dir / "test"),
        "sample_submission": str(out_dir / "sample_submission.csv"),
        "solution_csv": str(out_dir / "solution.csv"),
        "seconds": round(seconds, 3),
        "skipped": skipped,
    }


def _render_all(folder: Path, params: dict, plan, workers: int, progress: bool) -> None:
    """Render every image into ``folder``/train and ``folder``/test, in a process pool if workers > 1."""
    train_ids, train_labels, test_ids, test_labels, _ = plan
    jobs = []
    total = len(train_ids) + len(test_ids)
    chunk = max(1, min(64, -(-total // (max(workers, 1) * 8))))
    for split, ids, labels in (("train", train_ids, train_labels), ("test", test_ids, test_labels)):
        (folder / split).mkdir()
        items = [(i, image_id, labels[i]) for i, image_id in enumerate(ids)]
        jobs += [(str(folder / split), split, params["seed"], params["size"], items[s:s + chunk])
                 for s in range(0, len(items), chunk)]
    if workers <= 1 or len(jobs) <= 1:
        with tqdm(total=total, disable=not progress, unit="img", desc="synth") as bar:
            for job in jobs:
                bar.update(_render_chunk(*job))
        return
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker)
    try:
        futures = [pool.submit(_render_chunk, *job) for job in jobs]  # forks before tqdm starts a thread
        with tqdm(total=total, disable=not progress, unit="img", desc="synth") as bar:
            for future in as_completed(futures):
                bar.update(future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def generate_dataset(out_dir: str | os.PathLike, n_train: int = 3000, n_test: int = 1000, size: int = 256,
                     seed: int = 0, workers: int | None = None, public_fraction: float = 0.3,
                     overwrite: bool = False, progress: bool = False) -> dict:
    """Write a synthetic HPA dataset in Kaggle's layout, atomically.

    The dataset is built in a temporary sibling directory and renamed to
    ``out_dir`` only when complete. The same parameters give byte-identical
    CSVs and identical pixels whatever ``workers`` is.

    Args:
        out_dir: the dataset directory to create.
        n_train, n_test: number of training and test Ids.
        size: side of every PNG in px (Kaggle: 512).
        seed: random seed of the whole dataset.
        workers: processes drawing images; default ``os.cpu_count()``.
        public_fraction: share of test Ids marked ``Public`` in solution.csv.
        overwrite: replace an ``out_dir`` that holds something else.
        progress: show a tqdm progress bar.

    Returns:
        A summary: the parameters, ``out_dir`` and the paths in it, ``seconds``
        taken and ``skipped`` (True when an identical dataset was already there).

    Raises:
        DataError: ``out_dir`` exists and is not this dataset (other
            parameters, or not a synthetic dataset), and ``overwrite`` is False.
        ValueError: a parameter is out of range.
    """
    start = time.perf_counter()
    if n_train < 1 or n_test < 1 or size < 32 or not 0 <= public_fraction <= 1:
        raise ValueError("need n_train >= 1, n_test >= 1, size >= 32 and 0 <= public_fraction <= 1")
    out_dir = Path(out_dir)
    params = {"generator": "hpa_utils.synth", "version": GENERATOR_VERSION, "n_train": int(n_train),
              "n_test": int(n_test), "size": int(size), "seed": int(seed),
              "public_fraction": float(public_fraction)}
    if out_dir.exists():
        existing = _read_manifest(out_dir) if out_dir.is_dir() else None
        if existing == params and _is_complete(out_dir, params):
            return _summary(out_dir, params, time.perf_counter() - start, skipped=True)
    if out_dir.exists() and not overwrite:
        if existing is not None:
            diff = ", ".join(f"{k}={existing.get(k)!r} (asked {v!r})" for k, v in params.items()
                             if existing.get(k) != v) or "incomplete"
            raise DataError(f"{out_dir} holds a different synthetic dataset: {diff}; "
                            "use another directory or overwrite=True")
        if not out_dir.is_dir() or any(out_dir.iterdir()):
            raise DataError(f"{out_dir} exists and is not a synthetic HPA dataset (no {MANIFEST}); "
                            "use another directory or overwrite=True")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        plan = _plan(seed, n_train, n_test, public_fraction)
        _render_all(tmp, params, plan, workers, progress)
        _write_csvs(tmp, plan)
        (tmp / MANIFEST).write_text(json.dumps(params, indent=2) + "\n")
        if out_dir.exists() or out_dir.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=out_dir.name + ".old-", dir=out_dir.parent))
            os.replace(out_dir, old / "data")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _summary(out_dir, params, time.perf_counter() - start, skipped=False)

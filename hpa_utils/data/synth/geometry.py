"""Geometry of a synthetic field: its cells, their label maps and the textures painters draw from.

Also the low-level drawing helpers every module shares: fixed-point cv2
coordinates (:func:`pt`, :func:`px`, :func:`thick`), :func:`blur` and fast
Gaussian noise (:func:`normal`, :func:`smooth_noise`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

SHIFT = 4  # cv2 drawing: fixed-point coordinates with 4 fractional bits
_ONE = 1 << SHIFT
_SHAPE_AMPS = np.array([0.34, 0.15, 0.07, 0.04])  # largest outline harmonics 2..5 (fractions of r)
LINE = cv2.LINE_8  # cv2 anti-aliases 8-bit images only; we blur instead
#: Standard normal quantiles: indexing them with random uint16 gives Gaussian noise 10x faster.
_NORMAL_TABLE = np.sort(np.random.default_rng(2018).standard_normal(1 << 16)).astype(np.float32)


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


def pt(x: float, y: float) -> tuple[int, int]:
    """Fixed-point cv2 point (see ``SHIFT``)."""
    return int(round(x * _ONE)), int(round(y * _ONE))


def px(v: float) -> int:
    """Fixed-point cv2 length."""
    return max(1, int(round(v * _ONE)))


def thick(field: Field, t: float) -> int:
    """Integer line thickness for ``t`` units at 256 px (at least 1 px)."""
    return max(1, int(round(t * field.u)))


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (no-op for tiny sigma)."""
    if sigma < 0.3:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigma)


def normal(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Standard normal float32 noise (table look-up; plenty for pictures)."""
    return _NORMAL_TABLE[rng.integers(0, 1 << 16, size=shape, dtype=np.uint16)]


def smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Gaussian noise smoothed at scale ``sigma`` px, zero mean, unit std."""
    step = max(1, int(sigma / 2))
    small = max(4, -(-size // step))
    noise = normal(rng, (small, small))
    noise = blur(noise, sigma / step)
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
                cell.nucleoli.append(
                    (nx + lx * ca - ly * sa, ny + lx * sa + ly * ca, max(2.2 * u, nb * rng.uniform(0.18, 0.28)))
                )
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
        dy, dx = np.ogrid[y0 - c.y : y1 - c.y, x0 - c.x : x1 - c.x]
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
        cv2.ellipse(nuc_f, pt(c.nx, c.ny), (px(c.na), px(c.nb)), c.nangle, 0, 360, float(i), -1, LINE, SHIFT)
    nuc_lab = nuc_f.astype(np.int32)
    cell_lab[nuc_lab >= 0] = nuc_lab[nuc_lab >= 0]  # a nucleus always belongs to its cell
    return cell_lab, nuc_lab


def walk(
    field: Field,
    starts: np.ndarray,
    angles: np.ndarray,
    owners: np.ndarray,
    steps: int,
    step: float,
    turn_sd: float,
    rng: np.random.Generator,
    curvature: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
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
    turns = turn_sd * normal(rng, (n, steps)).astype(np.float64)
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
    lines, tips = walk(
        field, np.concatenate(starts), np.concatenate(angles), np.array(owners), steps, 3 * field.u, 0.22, rng
    )
    cv2.polylines(img, lines, False, 1.0, thick(field, 1), LINE, SHIFT)
    return blur(img, 0.6 * field.u) * field.cell, tips


def _er_network(field: Field, rng: np.random.Generator) -> np.ndarray:
    """ER: the zero set of smooth noise (a reticular net), denser near the nucleus."""
    u = field.u
    net = np.exp(-((smooth_noise(rng, field.size, 1.7 * u) / 0.35) ** 2))
    near = 0.3 + 0.7 * np.exp(-field.dist_nuc / (18 * u))
    patchy = 0.75 + 0.25 * np.clip(smooth_noise(rng, field.size, 8 * u), -1, 1)
    er = net * near * patchy * field.cyto
    rim = field.blank()
    for c in field.cells:
        if not c.mitotic:
            cv2.ellipse(
                rim, pt(c.nx, c.ny), (px(c.na + u), px(c.nb + u)), c.nangle, 0, 360, 0.35, thick(field, 2), LINE, SHIFT
            )
    return blur(np.maximum(er, rim), 0.5 * u).astype(np.float32)


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
            cv2.fillPoly(img, [np.round(np.array(body) * _ONE).astype(np.int32)], 0.3, LINE, SHIFT)
            for t in np.linspace(-1, 1, 7):
                end = centre + t * 0.42 * c.r * e
                mid = (pole + end) / 2 + t * 0.12 * c.r * e
                pts = np.round(np.array([pole, mid, end]) * _ONE).astype(np.int32)
                cv2.polylines(img, [pts], False, 0.8, thick(field, 1), LINE, SHIFT)
            cv2.circle(img, pt(*pole), px(2 * field.u), 1.0, -1, LINE, SHIFT)
    return blur(img, 0.6 * field.u)


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
            cv2.circle(nucleoli, pt(x, y), px(r), 1.0, -1, LINE, SHIFT)
    empty = np.zeros((size, size), np.float32)
    field = Field(
        size=size,
        u=u,
        cells=cells,
        cell_lab=cell_lab,
        nuc_lab=nuc_lab,
        cell=cell,
        nuc=nuc,
        cyto=cell & ~nuc,
        membrane=edge.astype(np.float32),
        junction=junction.astype(np.float32),
        dist_edge=dist_edge,
        dist_nuc=dist_nuc,
        nucleoli=nucleoli * nuc,
        tubules=empty,
        tubule_ends=np.empty((0, 4)),
        er=empty,
        spindle=empty,
    )
    field.tubules, field.tubule_ends = _tubules(field, rng)
    field.er = _er_network(field, rng)
    field.spindle = _spindles(field)
    return field

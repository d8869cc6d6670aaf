"""The green channel's localisation patterns: one painter per class, and :data:`PAINTERS`.

A painter draws its class's pattern on a :class:`~hpa_utils.data.synth.geometry.Field`
(float32, values about 0..1) from the field's geometry and a random generator.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from hpa_utils.data.synth.geometry import (
    LINE,
    SHIFT,
    Cell,
    Field,
    blur,
    pt,
    px,
    smooth_noise,
    thick,
    walk,
)


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


def _dots(
    field: Field,
    rng: np.random.Generator,
    weight: np.ndarray,
    per_cell: float,
    radius: tuple[float, float],
    ring: bool = False,
) -> np.ndarray:
    """Round dots (or hollow rings) of ``radius`` units, about ``per_cell`` per cell."""
    k = _count(rng, per_cell, field)
    img = field.blank()
    thickness = thick(field, 1.6) if ring else -1
    for x, y in _sample_points(rng, weight, k):
        cv2.circle(img, pt(x, y), px(rng.uniform(*radius) * field.u), rng.uniform(0.45, 1.0), thickness, LINE, SHIFT)
    return blur(img, 0.5 * field.u)


def _segments(
    field: Field,
    rng: np.random.Generator,
    points: np.ndarray,
    lengths: np.ndarray,
    angles: np.ndarray,
    thickness: float,
) -> np.ndarray:
    """Short straight segments centred on ``points``."""
    img = field.blank()
    for (x, y), h, a in zip(points, lengths / 2, angles, strict=True):
        dx, dy = h * np.cos(a), h * np.sin(a)
        cv2.line(
            img, pt(x - dx, y - dy), pt(x + dx, y + dy), rng.uniform(0.45, 1.0), thick(field, thickness), LINE, SHIFT
        )
    return blur(img, 0.5 * field.u)


def _nucleoplasm(field: Field, rng: np.random.Generator) -> np.ndarray:
    """0: fills the nuclei, textured, sparing the nucleoli."""
    tex = 0.78 + 0.22 * np.clip(smooth_noise(rng, field.size, 1.5 * field.u), -1, 1)
    return blur(field.nuc * tex * (1 - 0.85 * field.nucleoli), 0.6 * field.u)


def _nuclear_membrane(field: Field, rng: np.random.Generator) -> np.ndarray:
    """1: a rim around each nucleus."""
    img = field.blank()
    for c in _normal_cells(field):
        cv2.ellipse(img, pt(c.nx, c.ny), (px(c.na), px(c.nb)), c.nangle, 0, 360, 1.0, thick(field, 2), LINE, SHIFT)
    return blur(img, 0.6 * field.u) + 0.08 * field.nuc


def _nucleoli(field: Field, rng: np.random.Generator) -> np.ndarray:
    """2: a few bright round spots inside each nucleus (the nucleoli)."""
    return blur(field.nucleoli, 0.7 * field.u)


def _fibrillar_center(field: Field, rng: np.random.Generator) -> np.ndarray:
    """3: clusters of tiny dots inside the nucleoli."""
    img = field.blank()
    for c in field.cells:
        for x, y, r in c.nucleoli:
            for _ in range(int(rng.integers(3, 7))):
                rho, t = 1.1 * r * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
                cv2.circle(
                    img,
                    pt(x + rho * np.cos(t), y + rho * np.sin(t)),
                    px(1.6 * field.u),
                    rng.uniform(0.6, 1.0),
                    -1,
                    LINE,
                    SHIFT,
                )
    return blur(img, 0.4 * field.u) + 0.12 * blur(field.nucleoli, field.u)


def _nuclear_speckles(field: Field, rng: np.random.Generator) -> np.ndarray:
    """4: many irregular speckles in the nucleoplasm."""
    blobs = smooth_noise(rng, field.size, 1.6 * field.u)
    speck = np.clip(blobs - 0.8, 0, None) * field.nuc * (1 - field.nucleoli)
    return blur(speck, 0.5 * field.u) + 0.12 * field.nuc


def _nuclear_bodies(field: Field, rng: np.random.Generator) -> np.ndarray:
    """5: 1-6 discrete dots per nucleus."""
    img = field.blank()
    for c in _normal_cells(field):
        a = np.deg2rad(c.nangle)
        for _ in range(int(rng.integers(1, 7))):
            rho, t = 0.7 * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
            lx, ly = rho * c.na * np.cos(t), rho * c.nb * np.sin(t)
            x, y = c.nx + lx * np.cos(a) - ly * np.sin(a), c.ny + lx * np.sin(a) + ly * np.cos(a)
            cv2.circle(img, pt(x, y), px(rng.uniform(2.0, 3.0) * field.u), rng.uniform(0.6, 1.0), -1, LINE, SHIFT)
    return blur(img, 0.6 * field.u)


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
        cv2.ellipse(
            img,
            pt(c.nx, c.ny),
            (px(c.na + 3.5 * u), px(c.nb + 3.5 * u)),
            c.nangle,
            mid - span / 2,
            mid + span / 2,
            rng.uniform(0.6, 1.0),
            thick(field, 5),
            LINE,
            SHIFT,
        )
    texture = 0.35 + 0.65 * np.clip(0.5 + 0.5 * smooth_noise(rng, field.size, 1.5 * u), 0, 1)
    return blur(img * texture, 0.8 * u)


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
        lines, _ = walk(
            field,
            np.array(starts),
            np.array(angles),
            np.array(owners),
            steps,
            step,
            0.12,
            rng,
            curvature=np.array(bends),
        )
        cv2.polylines(img, lines, False, 1.0, thick(field, 1.6), LINE, SHIFT)
    return blur(img, 0.6 * field.u)


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
            cv2.line(
                lines,
                pt(*(p - half * t)),
                pt(*(p + half * t)),
                rng.uniform(0.3, 1.0),
                thick(field, rng.choice([1, 2])),
                LINE,
                SHIFT,
            )
            o += rng.uniform(4, 9) * u
        img += lines * (field.cell_lab == i)
    return blur(img, 0.5 * u) + 0.4 * blur(field.membrane, 0.6 * u)


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
        cv2.line(img, pt(x - back * dx, y - back * dy), pt(x, y), rng.uniform(0.6, 1.0), thick(field, 2), LINE, SHIFT)
    return blur(img, 0.5 * field.u)


def _cytokinetic_bridge(field: Field, rng: np.random.Generator) -> np.ndarray:
    """16: a bright line with a midbody between two neighbouring cells."""
    img = field.blank()
    cells = _normal_cells(field)
    pairs = sorted(
        (np.hypot(a.x - b.x, a.y - b.y), i, j) for i, a in enumerate(cells) for j, b in enumerate(cells) if i < j
    )
    for _, i, j in pairs[: 1 + int(rng.random() < 0.3)]:
        a, b = cells[i], cells[j]
        ab = np.arctan2(b.ny - a.ny, b.nx - a.nx)
        p, q = np.array(a.beside_nucleus(ab, 0)), np.array(b.beside_nucleus(ab + np.pi, 0))
        mid, half = (p + q) / 2, float(np.clip(0.45 * np.hypot(*(q - p)), 7 * field.u, 14 * field.u))
        direction = np.array([np.cos(ab), np.sin(ab)])
        cv2.line(img, pt(*(mid - half * direction)), pt(*(mid + half * direction)), 0.7, thick(field, 2), LINE, SHIFT)
        cv2.circle(img, pt(*mid), px(2.8 * field.u), 1.0, -1, LINE, SHIFT)
    return blur(img, 0.6 * field.u)


def _mitotic_spindle(field: Field, rng: np.random.Generator) -> np.ndarray:
    """17: the spindle of a rounded mitotic cell."""
    return field.spindle


def _beside_dots(
    field: Field, rng: np.random.Generator, share: float, count: tuple[int, int], radius: float, spread: float
) -> np.ndarray:
    """Dots on the polarity side of the nucleus of ``share`` of the cells."""
    img = field.blank()
    u = field.u
    for c in _some_cells(rng, field, share):
        x, y = c.beside_nucleus(c.polarity + rng.normal(0, 0.3), rng.uniform(2, 5) * u)
        for _ in range(int(rng.integers(count[0], count[1] + 1))):
            cv2.circle(
                img,
                pt(x + rng.normal(0, spread * u), y + rng.normal(0, spread * u)),
                px(radius * u),
                rng.uniform(0.8, 1.0),
                -1,
                LINE,
                SHIFT,
            )
    return img


def _mtoc(field: Field, rng: np.random.Generator) -> np.ndarray:
    """18: one bright dot with a faint aster beside the nucleus."""
    dots = _beside_dots(field, rng, 0.85, (1, 1), 2.6, 0.0)
    return blur(dots, 0.5 * field.u) + 0.6 * blur(dots, 5 * field.u) * field.cell


def _centrosome(field: Field, rng: np.random.Generator) -> np.ndarray:
    """19: one or two small dots beside the nucleus."""
    return blur(_beside_dots(field, rng, 0.9, (1, 2), 1.8, 2.0), 0.5 * field.u)


def _lipid_droplets(field: Field, rng: np.random.Generator) -> np.ndarray:
    """20: hollow rings in the cytoplasm."""
    inner = field.cyto * (0.02 + (field.dist_edge > 4 * field.u))  # clear of the cell edge
    return _dots(field, rng, inner, 6, (3.5, 6.0), ring=True)


def _plasma_membrane(field: Field, rng: np.random.Generator) -> np.ndarray:
    """21: the cell outlines."""
    return blur(field.membrane, 0.6 * field.u)


def _cell_junctions(field: Field, rng: np.random.Generator) -> np.ndarray:
    """22: the contacts between neighbouring cells."""
    if field.junction.any():
        return blur(field.junction, 0.7 * field.u)
    return 0.5 * blur(field.membrane, 0.6 * field.u)  # no contacts in this field


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
            cv2.circle(
                img,
                pt(x + rng.normal(0, 0.3 * size), y + rng.normal(0, 0.3 * size)),
                px(size * rng.uniform(0.55, 0.8)),
                1.0,
                -1,
                LINE,
                SHIFT,
            )
    return blur(img, 1.0 * u)


def _cytosol(field: Field, rng: np.random.Generator) -> np.ndarray:
    """25: a diffuse fill of the cytoplasm."""
    tex = 0.85 + 0.15 * np.clip(smooth_noise(rng, field.size, 2 * field.u), -1, 1)
    return blur(field.cyto * tex + 0.1 * field.nuc, 0.8 * field.u)


def _cytoplasmic_bodies(field: Field, rng: np.random.Generator) -> np.ndarray:
    """26: a few bright round bodies in the cytoplasm."""
    return _dots(field, rng, field.cyto, 2.0, (3.0, 4.5))


def _rods_and_rings(field: Field, rng: np.random.Generator) -> np.ndarray:
    """27: a few short rods and small rings in the cytoplasm."""
    u = field.u
    pts = _sample_points(rng, field.cyto.astype(np.float32), _count(rng, 1.5, field))
    rods = rng.random(len(pts)) < 0.5
    img = _segments(field, rng, pts[rods], rng.uniform(6, 10, rods.sum()) * u, rng.uniform(0, np.pi, rods.sum()), 2)
    rings = field.blank()
    for x, y in pts[~rods]:
        cv2.circle(rings, pt(x, y), px(rng.uniform(3, 4) * u), 1.0, thick(field, 1.6), LINE, SHIFT)
    return img + blur(rings, 0.5 * u)


Painter = Callable[[Field, np.random.Generator], np.ndarray]

#: Class id -> function drawing that class's green pattern on a field (values about 0..1).
PAINTERS: dict[int, Painter] = {
    0: _nucleoplasm,
    1: _nuclear_membrane,
    2: _nucleoli,
    3: _fibrillar_center,
    4: _nuclear_speckles,
    5: _nuclear_bodies,
    6: _er,
    7: _golgi,
    8: _peroxisomes,
    9: _endosomes,
    10: _lysosomes,
    11: _intermediate_filaments,
    12: _actin,
    13: _focal_adhesion,
    14: _microtubules,
    15: _microtubule_ends,
    16: _cytokinetic_bridge,
    17: _mitotic_spindle,
    18: _mtoc,
    19: _centrosome,
    20: _lipid_droplets,
    21: _plasma_membrane,
    22: _cell_junctions,
    23: _mitochondria,
    24: _aggresome,
    25: _cytosol,
    26: _cytoplasmic_bodies,
    27: _rods_and_rings,
}

"""A procedural chest-like CT phantom: the built-in example (made here, so no licence limits).

Air outside, a soft-tissue body, two lungs with vessels running at several angles, small nodules,
an oblique fissure, a spine: structures that thick slices blur, in HU, with smooth analytic edges
(no aliasing), so a pseudo-thick copy made by :func:`volumetricsr.data.simulate.simulate_thick` is a
fair test bed for every method.
"""
from __future__ import annotations

import numpy as np

from volumetricsr.data.volume import Volume


def _inside(distance: np.ndarray, edge: float = 0.6) -> np.ndarray:
    """Soft indicator of ``distance < 0`` with an edge about ``edge`` mm wide."""
    return 1.0 / (1.0 + np.exp(np.clip(distance / (edge / 4), -50, 50)))


def _tube(p: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance (mm) to a capsule from ``a`` to ``b``."""
    ab = b - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0, 1)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1) - radius


def make_phantom(size: tuple[int, int, int] = (160, 128, 121), spacing: float = 1.0, seed: int = 0) -> Volume:
    """Thin, isotropic phantom of ``size`` voxels (i, j, k) at ``spacing`` mm, int16 HU."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.arange(n) * spacing for n in size[::-1]), indexing="ij")
    centre = np.array([size[0], size[1], size[2]]) * spacing / 2
    p = np.stack([i, j, k], axis=-1) - centre
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    half = centre
    hu = np.full(k.shape, -1000.0)
    body = (x / (0.92 * half[0])) ** 2 + (y / (0.85 * half[1])) ** 2 - 1
    hu += 1040 * _inside(body * half[1] * 0.5)
    lungs = np.zeros_like(hu)
    for side in (-1, 1):
        shape_ = ((x - side * 0.42 * half[0]) / (0.33 * half[0])) ** 2 + (y / (0.62 * half[1])) ** 2 \
            + (z / (0.85 * half[2])) ** 2 - 1
        lungs = np.maximum(lungs, _inside(shape_ * 0.3 * half[1]))
    hu -= 890 * lungs
    spine = np.hypot(x, y - 0.62 * half[1]) - 0.11 * half[0]
    hu += 660 * _inside(spine)
    vessels = np.zeros_like(hu)
    for _ in range(24):
        side = rng.choice([-1, 1])
        a = np.array([side * 0.2 * half[0], rng.uniform(-0.15, 0.15) * half[1], rng.uniform(-0.5, 0.5) * half[2]])
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        direction[0] = side * abs(direction[0])          # from the hilum outwards
        b = a + direction * rng.uniform(0.4, 0.9) * half[2]
        vessels = np.maximum(vessels, _inside(_tube(p, a, b, rng.uniform(0.8, 2.2))))
    hu += (40 - (hu - 0)) * vessels * lungs          # vessels are soft tissue inside the lungs
    for _ in range(12):
        side = rng.choice([-1, 1])
        c = np.array([side * rng.uniform(0.3, 0.55) * half[0], rng.uniform(-0.1, 0.1) * half[1],
                      rng.uniform(-0.6, 0.6) * half[2]])
        nodule = _inside(np.linalg.norm(p - c, axis=-1) - rng.uniform(1.5, 4.0))
        hu += (60 - hu) * nodule * lungs
    fissure = np.abs(0.6 * x + 0.8 * z - 0.3 * half[2]) - 0.6
    hu += 150 * _inside(fissure, 0.8) * lungs * (x > 0)
    noise = rng.normal(scale=8.0, size=hu.shape)
    return Volume(np.clip(np.rint(hu + noise), -1024, 3071).astype(np.int16), (spacing,) * 3, (-centre).tolist())

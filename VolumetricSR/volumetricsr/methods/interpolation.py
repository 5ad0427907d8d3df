"""Interpolation baselines along the through-plane axis: always available, instant, any factor.

Their confidence map is the spread of the three kernels, which agree on smooth anatomy and differ
where the slices leave the most to guess (:mod:`..confidence`)."""
from __future__ import annotations

import numpy as np

from volumetricsr.compute.confidence import combine
from volumetricsr.data.geometry import ThroughPlaneGrid
from volumetricsr.data.resampling import apply_along_first_axis, bspline_weights, linear_weights, sinc_weights
from volumetricsr.methods.base import Method, RunContext, register


class Interpolation(Method):
    """Resamples each column of voxels along the through-plane axis with a 1-D kernel."""

    modalities = ("CT", "MR", "any")
    working_copies, confidence_copies = 2.5, 4.0
    keeps_wide_values = True

    def __init__(self, name, title, description, weights, min_slices=2):
        self.name, self.title, self.description = name, title, description
        self.weights, self.min_slices = weights, min_slices

    def upsample(self, stack: np.ndarray, grid: ThroughPlaneGrid, ctx: RunContext, **options) -> np.ndarray:
        def step(fraction: float) -> None:
            ctx.check()
            ctx.report(fraction, f"{self.title} interpolation")

        kernels = [self] + [k for k in KERNELS if k is not self and k.min_slices <= grid.n_in]
        parts = (apply_along_first_axis(k.weights(grid.input_positions(), grid.n_in), stack, step, dtype=stack.dtype)
                 for k in kernels)      # float64 for values float32 cannot hold (keeps_wide_values)
        return combine(parts, lambda y: y, ctx.spread, fuse=False)


LINEAR = register(Interpolation(
    "linear", "Linear", "Linear interpolation between neighbouring slices. Instant; blurs thin structures.",
    linear_weights))
BSPLINE = register(Interpolation(
    "bspline", "Cubic B-spline",
    "Interpolating cubic B-spline through the slices. Instant; smoother and sharper than linear.",
    bspline_weights, min_slices=4))
SINC = register(Interpolation(
    "sinc", "Windowed sinc",
    "Lanczos-windowed sinc (4 lobes). Instant; the sharpest interpolation, with slight ringing at edges.",
    sinc_weights))

KERNELS = (LINEAR, BSPLINE, SINC)

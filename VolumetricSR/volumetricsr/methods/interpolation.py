"""Interpolation baselines along the through-plane axis: always available, instant, any factor."""
from __future__ import annotations

import numpy as np

from ..geometry import ThroughPlaneGrid
from ..resampling import apply_along_first_axis, bspline_weights, linear_weights, sinc_weights
from .base import Method, RunContext, register


class Interpolation(Method):
    """Resamples each column of voxels along the through-plane axis with a 1-D kernel."""

    modalities = ("CT", "MR", "any")

    def __init__(self, name, title, description, weights, min_slices=2):
        self.name, self.title, self.description = name, title, description
        self.weights, self.min_slices = weights, min_slices

    def upsample(self, stack: np.ndarray, grid: ThroughPlaneGrid, ctx: RunContext, **options) -> np.ndarray:
        w = self.weights(grid.input_positions(), grid.n_in)

        def step(fraction: float) -> None:
            ctx.check()
            ctx.report(fraction, f"{self.title} interpolation")

        return apply_along_first_axis(w, stack, step)


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

"""1-D resampling along one axis as a matrix product.

Every interpolation here is linear in the data, so resampling ``n`` slices at ``m`` positions is
an ``(m, n)`` weight matrix applied to the slices. Building the matrix once and applying it with one
BLAS matrix product is exact and far faster than 3-D interpolation, which also interpolates in-plane
where nothing needs it.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from scipy.interpolate import make_interp_spline

from volumetricsr.data.geometry import samples_over

SINC_RADIUS = 4


def linear_weights(positions: np.ndarray, n: int) -> np.ndarray:
    """Piecewise-linear interpolation of ``n`` samples at continuous ``positions``."""
    return make_interp_spline(np.arange(n), np.eye(n), k=1)(np.clip(positions, 0, n - 1))


def bspline_weights(positions: np.ndarray, n: int) -> np.ndarray:
    """Interpolating cubic B-spline (not-a-knot ends), from SciPy, applied to the unit vectors."""
    return make_interp_spline(np.arange(n), np.eye(n), k=3)(np.clip(positions, 0, n - 1))


def sinc_weights(positions: np.ndarray, n: int, radius: int = SINC_RADIUS) -> np.ndarray:
    """Lanczos-windowed sinc of ``radius`` lobes, mirrored at the ends, rows normalised to sum 1."""
    positions = np.asarray(positions, dtype=float)
    base = np.floor(positions).astype(int)
    taps = np.arange(-radius + 1, radius + 1)
    index = base[:, None] + taps[None, :]
    w = np.sinc(positions[:, None] - index) * np.sinc((positions[:, None] - index) / radius)
    w /= w.sum(axis=1, keepdims=True)
    period = max(2 * (n - 1), 1)
    mirrored = np.abs((index % period + period) % period)
    mirrored = np.where(mirrored > n - 1, period - mirrored, mirrored)
    out = np.zeros((len(positions), n))
    np.add.at(out, (np.repeat(np.arange(len(positions)), len(taps)), mirrored.ravel()), w.ravel())
    return out


def apply_along_first_axis(weights: np.ndarray, stack: np.ndarray,
                           on_chunk: Optional[Callable[[float], None]] = None, chunks: int = 16,
                           dtype=np.float32) -> np.ndarray:
    """``out[m] = sum_n weights[m, n] * stack[n]``, in row chunks so progress and cancel can run;
    computed and returned as ``dtype``."""
    w = weights.astype(dtype)
    out = np.empty((w.shape[0],) + stack.shape[1:], dtype=dtype)
    rows = stack.shape[1]
    bounds = np.linspace(0, rows, min(chunks, rows) + 1).astype(int)
    for c, (r0, r1) in enumerate(zip(bounds[:-1], bounds[1:])):
        out[:, r0:r1] = np.tensordot(w, stack[:, r0:r1], axes=(1, 0))
        if on_chunk is not None:
            on_chunk((c + 1) / (len(bounds) - 1))
    return out


def resample_axis(array: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    """Cubic B-spline resampling of ``array`` along ``axis`` to ``n_out`` samples, ends kept."""
    n = array.shape[axis]
    if n_out == n:
        return array
    moved = np.moveaxis(array, axis, 0)
    positions = np.arange(n_out) * (n - 1) / (n_out - 1)
    return np.moveaxis(apply_along_first_axis(bspline_weights(positions, n), moved), 0, axis)


def fine_in_plane(stack: np.ndarray, spacing: tuple[float, float]) -> tuple[np.ndarray, float]:
    """``stack`` (slices, rows, cols) resampled in-plane to its finest in-plane ``spacing`` (rows, cols)
    over the same extent, and that spacing: isotropic in-plane voxels for 2-D plane networks."""
    fine = min(spacing)
    rows, cols = (samples_over(m, s, fine) for m, s in zip(stack.shape[1:], spacing))
    return resample_axis(resample_axis(stack, 1, rows), 2, cols), fine


def resample_in_plane(stack: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Back from :func:`fine_in_plane` to ``rows`` x ``cols``."""
    return resample_axis(resample_axis(stack, 1, rows), 2, cols)

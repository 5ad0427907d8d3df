"""Agreement of a result with the acquired slices.

Each acquired (thick) slice is modelled as the slice-profile-weighted mean of the result's slices
over its extent: the ``simulate-thick`` model, with a profile (gaussian, rect, triangle) and a
thickness (default: the slice spacing). :func:`thickening_matrix` is that operator ``D`` along the
through-plane axis; :func:`consistency` re-thickens a result and compares it with the input, slice
by slice; :func:`enforce_consistency` makes the smallest change (least squares along the axis) after
which re-thickening reproduces the input exactly: ``Y' = Y + D^T (D D^T)^-1 (X - D Y)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from volumetricsr.common.errors import InputError
from volumetricsr.data.geometry import from_stack, to_stack
from volumetricsr.data.profiles import profile_density
from volumetricsr.data.volume import Volume

_SUBSAMPLES = 64


def thickening_matrix(n_in: int, n_out: int, spacing_in: float, thickness: Optional[float] = None,
                      profile: str = "gaussian") -> np.ndarray:
    """``(n_in, n_out)``: acquired slice ``k`` (at ``k * spacing_in`` mm) as the profile-weighted mean
    of the output slices, which span the same extent (the first and last slices coincide); each
    output slice weighs the profile integrated over its own extent. Rows are truncated to the
    slices that exist and sum to 1."""
    step = spacing_in * (n_in - 1) / max(n_out - 1, 1)
    thickness = spacing_in if thickness is None else float(thickness)
    sub = ((np.arange(_SUBSAMPLES) + 0.5) / _SUBSAMPLES - 0.5) * step
    z_out = np.arange(n_out) * step
    d = np.empty((n_in, n_out))
    for k in range(n_in):
        d[k] = profile_density(profile, z_out[:, None] + sub[None, :] - k * spacing_in, thickness).mean(axis=1)
    return d / d.sum(axis=1, keepdims=True)


def _residual(output: Volume, acquired: Volume, thickness: Optional[float],
              profile: str) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """The through-plane axis, the output as a stack, ``D`` and ``X - D Y`` (acquired slices first); in
    float64 for a float64 output (values float32 cannot hold), else float32."""
    grow = np.subtract(output.size, acquired.size)
    axis = int(np.argmax(grow))
    if grow[axis] <= 0 or np.count_nonzero(grow) != 1:
        raise InputError(f"The result ({output.size}) must have more slices than the acquired volume "
                         f"({acquired.size}) along one axis and the same size along the others.")
    kind = np.float64 if output.array.dtype == np.float64 else np.float32
    y = to_stack(output.array, axis).astype(kind)
    x = to_stack(acquired.array, axis).astype(kind)
    d = thickening_matrix(x.shape[0], y.shape[0], acquired.spacing[axis], thickness, profile)
    return axis, y, d, x - np.tensordot(d.astype(kind), y, axes=1)


@dataclass
class Consistency:
    """Acquired minus re-thickened result: per acquired slice (RMS, max |.|), and as a volume on the
    acquired grid."""

    rms: np.ndarray
    max: np.ndarray
    residual: Volume

    def summary(self) -> dict:
        return {"rms": float(np.sqrt(np.mean(self.rms ** 2))), "max": float(self.max.max()),
                "worst_slice": int(np.argmax(self.rms)), "slices": len(self.rms)}


def consistency(output: Volume, acquired: Volume, thickness: Optional[float] = None,
                profile: str = "gaussian") -> Consistency:
    """How far re-thickening ``output`` is from ``acquired``, slice by slice."""
    axis, _, _, r = _residual(output, acquired, thickness, profile)
    per_slice = r.reshape(r.shape[0], -1)
    residual = acquired.with_array(np.ascontiguousarray(from_stack(r, axis)).astype(np.float32))
    return Consistency(np.sqrt(np.mean(per_slice ** 2, axis=1)), np.abs(per_slice).max(axis=1), residual)


def enforce_consistency(output: Volume, acquired: Volume, thickness: Optional[float] = None,
                        profile: str = "gaussian") -> Volume:
    """``output`` changed as little as possible (least squares along the through-plane axis, for
    every in-plane pixel) so that re-thickening it gives ``acquired``; float32 (float64 for a float64
    ``output``)."""
    axis, y, d, r = _residual(output, acquired, thickness, profile)
    a = np.linalg.solve(d @ d.T, r.reshape(r.shape[0], -1).astype(np.float64))   # (D D^T)^-1 (X - D Y), all pixels
    y += np.tensordot(d.T, a, axes=1).reshape(y.shape).astype(y.dtype)
    return output.with_array(np.ascontiguousarray(from_stack(y, axis)))

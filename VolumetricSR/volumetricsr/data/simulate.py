"""Pseudo-thick volumes from thin ones, by slice-profile averaging (not by picking slices)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from volumetricsr.common.errors import InputError
from volumetricsr.data.geometry import AxisLike, from_stack, through_plane_axis, to_stack
from volumetricsr.data.profiles import slice_profile_weights
from volumetricsr.data.resampling import apply_along_first_axis
from volumetricsr.data.volume import Volume, check_scalar_volume


def thick_weights(n_thin: int, factor: int, kernel: np.ndarray) -> np.ndarray:
    """``(n_thick, n_thin)`` matrix: thick slice k = profile-weighted mean around thin slice factor*k.

    Near the ends the profile is truncated to the thin slices that exist and renormalised.
    """
    n_thick = (n_thin - 1) // factor + 1
    half = len(kernel) // 2
    w = np.zeros((n_thick, n_thin))
    for k in range(n_thick):
        lo, hi = max(0, factor * k - half), min(n_thin, factor * k + half + 1)
        w[k, lo:hi] = kernel[lo - (factor * k - half):hi - (factor * k - half)]
    return w / w.sum(axis=1, keepdims=True)


def simulate_thick(volume: Volume, factor: int, thickness: Optional[float] = None,
                   profile: str = "gaussian", axis: AxisLike = None) -> Volume:
    """Thick slices every ``factor`` thin slices, each averaged over a slice profile of ``thickness`` mm.

    Thick slice ``k`` is centred on thin slice ``factor*k`` (so thick slice 0 keeps the thin origin);
    ``thickness`` defaults to the new slice spacing (contiguous slabs). Voxel type is kept.
    """
    check_scalar_volume(volume)
    if int(factor) != factor or factor < 2:
        raise InputError(f"The factor must be a whole number of at least 2, not {factor}.")
    factor = int(factor)
    a = through_plane_axis(volume, axis)
    n = volume.size[a]
    if n < factor + 1:
        raise InputError(f"{n} slices along {'IJK'[a]} are too few for factor {factor} (need at least {factor + 1}).")
    spacing = volume.spacing[a]
    thickness = factor * spacing if thickness is None else float(thickness)
    kernel = slice_profile_weights(profile, thickness, spacing)
    stack = to_stack(volume.array, a).astype(np.float32)
    thick = apply_along_first_axis(thick_weights(n, factor, kernel), stack)
    new_spacing = list(volume.spacing)
    new_spacing[a] = spacing * factor
    array = np.ascontiguousarray(from_stack(thick, a))
    if np.issubdtype(volume.array.dtype, np.integer):
        info = np.iinfo(volume.array.dtype)
        array = np.clip(np.rint(array), info.min, info.max)
    return volume.with_array(array.astype(volume.array.dtype), spacing=tuple(new_spacing))

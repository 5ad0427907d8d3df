"""CLADE's data: a thick stack on its working grid (:func:`prepare`), unpaired random patches of its
planes (:class:`PlanePatches`) and training volumes read from files (:func:`read_for_training`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from volumetricsr.common.errors import InputError
from volumetricsr.data.geometry import ThroughPlaneGrid, samples_over, through_plane_axis
from volumetricsr.data.normalization import Normalization, for_modality, looks_like_hu
from volumetricsr.data.profiles import DEFAULT_PROFILE, thickness_of
from volumetricsr.data.resampling import fine_in_plane, resample_axis
from volumetricsr.training.pairs import plane_patch

#: The side of the square patches both domains are cut into.
PATCH = 32


@dataclass
class Prepared:
    """A thick stack on CLADE's working grid: ``iso`` (slices interpolated to the finest in-plane
    spacing, cubic B-spline) and ``slices`` (the acquired ones), both in [-1, 1]; ``source``: the
    input on the fine in-plane grid, for restoring what the window clips."""

    iso: np.ndarray
    slices: np.ndarray
    source: np.ndarray
    lo: float
    hi: float
    spacing: float          # the acquired slice spacing, mm


def prepare(stack: np.ndarray, grid: ThroughPlaneGrid, norm: Normalization) -> Prepared:
    source, fine = fine_in_plane(stack, grid.in_plane_spacing)
    lo, hi = norm.range_of(source)
    slices = norm.forward(source, lo, hi) * 2 - 1
    n_iso = samples_over(stack.shape[0], grid.spacing_in, fine)
    iso = resample_axis(slices, 0, n_iso).astype(np.float32)
    return Prepared(iso, slices, source, lo, hi, grid.spacing_in)


class PlanePatches:
    """Unpaired random patches: high-resolution ones from the acquired slices of ``slices`` stacks,
    low-resolution ones from the planes of ``iso`` volumes that contain the through-plane axis (the
    first ``planes`` orientations), all in [-1, 1]; cut from the 3-D arrays, no plane copies."""

    def __init__(self, slices: list[np.ndarray], iso: list[np.ndarray], planes: int = 2, patch: int = PATCH):
        self.patch, self.planes = patch, planes
        self.hr = [a for a in slices if min(a.shape[1:]) >= patch]
        self.lr = [a for a in iso if min(a.shape) >= patch]
        if not self.hr or not self.lr:
            raise InputError(f"CLADE needs planes of at least {patch}x{patch} voxels in both orientations.")

    def batch(self, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: ``size`` low-resolution and ``size`` high-resolution patches, drawn independently."""
        size2 = (self.patch, self.patch)
        x = [plane_patch(self.lr[int(rng.integers(len(self.lr)))], 1 + int(rng.integers(self.planes)), size2, rng)
             for _ in range(size)]
        y = [plane_patch(self.hr[int(rng.integers(len(self.hr)))], 0, size2, rng) for _ in range(size)]
        return torch.from_numpy(np.stack(x))[:, None], torch.from_numpy(np.stack(y))[:, None]


def read_for_training(path: Path, simulate_spacing: Optional[float], modality: str,
                      profile: tuple = DEFAULT_PROFILE) -> tuple[Prepared, str]:
    """One training volume on CLADE's grid; ``simulate_spacing``: made thick first (pseudo-thick), with
    ``profile`` ``(shape, FWHM / spacing)``."""
    from volumetricsr.data.geometry import plan_grid, to_stack
    from volumetricsr.data.io import read_volume
    from volumetricsr.data.simulate import simulate_thick

    volume = read_volume(path)
    if simulate_spacing:
        axis = through_plane_axis(volume)
        factor = max(2, round(simulate_spacing / volume.spacing[axis]))
        spacing = factor * volume.spacing[axis]
        volume = simulate_thick(volume, factor, thickness_of(profile, spacing), profile[0], axis=axis)
    grid = plan_grid(volume)
    stack = np.ascontiguousarray(to_stack(volume.array, grid.axis), dtype=np.float32)
    modality = modality if modality != "auto" else ("CT" if looks_like_hu(stack) else "MR")
    return prepare(stack, grid, for_modality(modality)), modality

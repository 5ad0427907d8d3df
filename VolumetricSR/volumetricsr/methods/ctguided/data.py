"""Unpaired, domain-tagged training data (the CT-guided method): high-resolution CTs and
low-resolution MRIs, with no pairing assumed.

Each domain is given as a folder of volumes, one volume file, or a text/CSV list with one volume
per line (the first column; relative paths are relative to the list; ``#`` comments). The CTs are
made isotropic at the spacing the MR network produces (:func:`read_hr_ct`); the MRIs keep their
acquisition and get isotropic in-plane voxels (:func:`read_lr_mri`). Intensities go to [-1, 1]:
CT in the HU window, MR between its robust percentiles (:func:`~volumetricsr.data.normalization.for_modality`).
Training draws patches from them (:class:`CTPatches`, :class:`ThickPlanePatches`) and validates on
the MRIs' own in-plane slices (:func:`in_plane_pairs`).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from volumetricsr.common.errors import InputError
from volumetricsr.data.geometry import plan_grid, samples_over, to_stack
from volumetricsr.data.io import is_volume_file, read_volume, volume_name
from volumetricsr.data.normalization import for_modality
from volumetricsr.data.profiles import slice_profile_weights, thickness_of
from volumetricsr.data.resampling import fine_in_plane, resample_axis
from volumetricsr.training.pairs import plane_patch
from volumetricsr.training.samplers import PatchSampler

#: CT voxels above this (HU) are the body; the CT is cropped to them (plus a margin) before training.
BODY_HU = -500.0
#: Thick slices a training MRI needs (the CITNet's attribute encoder halves the image four times).
MIN_SLICES = 5


def volume_list(spec: "str | Path", what: str) -> list[Path]:
    """The volumes named by ``spec`` (folder, file or list), sorted for folders, in order for lists."""
    root = Path(spec)
    if not root.exists():
        raise InputError(f"{what} {root} does not exist.")
    if root.is_dir():
        paths = sorted(p for p in root.iterdir() if is_volume_file(p))
    elif is_volume_file(root):
        paths = [root]
    else:
        paths = []
        for n, line in enumerate(root.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            cell = next(csv.reader([line]))[0].strip() if "," in line else line.split()[0]
            if n == 1 and cell.lower() in ("path", "input", "volume"):
                continue
            p = (root.parent / cell).resolve()
            if not p.exists():
                raise InputError(f"{root}:{n}: {p} does not exist.")
            paths.append(p)
    if not paths:
        raise InputError(f"No volumes in {root} ({what}): give a folder of volumes, one volume, or a list file.")
    return paths


@dataclass
class UnpairedData:
    ct: list[Path]
    mri: list[Path]

    @classmethod
    def discover(cls, ct: "str | Path", mri: "str | Path") -> "UnpairedData":
        return cls(volume_list(ct, "--ct"), volume_list(mri, "--mri"))

    def split(self) -> dict:
        """The exact volumes of each domain: saved with a run and compared when it resumes."""
        return {d: [[volume_name(p), str(p)] for p in getattr(self, d)] for d in ("ct", "mri")}

    def describe(self) -> dict:
        return {"ct": [p.name for p in self.ct], "mri": [p.name for p in self.mri], "pairs": "none (unpaired)"}


@dataclass
class LowResMR:
    """A low-resolution MRI as a stack ``(slices, rows, cols)`` along its thick axis, isotropic in-plane
    voxels of ``fine`` mm, in [-1, 1]; ``spacing``: its slice spacing."""

    name: str
    stack: np.ndarray
    spacing: float
    fine: float


def read_lr_mri(path: Path) -> LowResMR:
    volume = read_volume(path)
    grid = plan_grid(volume)
    stack = np.ascontiguousarray(to_stack(volume.array, grid.axis), dtype=np.float32)
    work, fine = fine_in_plane(stack, grid.in_plane_spacing)
    norm = for_modality("MR")
    lo, hi = norm.range_of(work)
    return LowResMR(volume_name(path), norm.forward(work, lo, hi) * 2 - 1, grid.spacing_in, fine)


def _resample_to(array: np.ndarray, axis: int, spacing: float, target: float) -> np.ndarray:
    """Along ``axis`` from ``spacing`` to ``target`` mm (cubic B-spline, Gaussian anti-aliasing when coarser)."""
    ratio = target / spacing
    if ratio > 1:
        array = gaussian_filter1d(array, 0.5 * np.sqrt(ratio ** 2 - 1), axis=axis, mode="nearest")
    return resample_axis(array, axis, samples_over(array.shape[axis], spacing, target))


def read_hr_ct(path: Path, spacing: float, margin: int = 4) -> np.ndarray:
    """A CT isotropic at ``spacing`` mm, cropped to the body (voxels above :data:`BODY_HU`), in [-1, 1]."""
    volume = read_volume(path)
    array = volume.array.astype(np.float32)
    body = np.argwhere(array > BODY_HU)
    if len(body):
        lo, hi = np.maximum(body.min(0) - margin, 0), body.max(0) + margin + 1
        array = array[tuple(slice(a, b) for a, b in zip(lo, hi))]
    for axis, s in enumerate(volume.spacing[::-1]):          # the array is indexed [k, j, i]
        array = _resample_to(array, axis, s, spacing)
    norm = for_modality("CT")
    return norm.forward(array, norm.low, norm.high) * 2 - 1


class CTPatches:
    """Low/high-resolution pairs from isotropic CTs: planes along every axis, degraded by D along one
    of their in-plane directions (:class:`~volumetricsr.training.samplers.PatchSampler`, which favours edges)."""

    def __init__(self, volumes: list[np.ndarray], factor: int, kernel: np.ndarray, patch: int):
        self.samplers = [PatchSampler(np.ascontiguousarray(np.moveaxis(v, axis, 0)), factor, kernel,
                                      *np.moveaxis(v, axis, 0).shape[1:], patch)
                         for v in volumes for axis in range(3)]

    def batch(self, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return self.samplers[int(rng.integers(len(self.samplers)))].batch(size, rng)


class ThickPlanePatches:
    """Patches of ``rows`` consecutive thick slices x ``width`` columns from the planes of low-resolution
    stacks that contain the thick axis (both orientations), randomly mirrored left-right."""

    def __init__(self, stacks: list[np.ndarray], rows: int, width: int):
        self.stacks = stacks
        self.rows = min(rows, *(s.shape[0] for s in stacks))
        self.width = min(width, *(min(s.shape[1:]) for s in stacks))
        if self.rows < MIN_SLICES or self.width < 16:
            raise InputError(f"The MRIs need at least {MIN_SLICES} slices and 16 x 16 in-plane voxels to train on "
                             f"(the smallest has {self.rows} slices of width {self.width}).")

    def batch(self, size: int, rng: np.random.Generator) -> torch.Tensor:
        size2 = (self.rows, self.width)
        out = [plane_patch(self.stacks[int(rng.integers(len(self.stacks)))], 1 + int(rng.integers(2)), size2, rng)
               for _ in range(size)]
        return torch.from_numpy(np.stack(out))[:, None]


def mr_kernel(shape: str, spacing: float, factor: int, ratio: float = 1.0) -> np.ndarray:
    """The slice profile ``shape`` with FWHM ``ratio`` x ``spacing`` of MR slices ``spacing`` mm apart,
    sampled at ``spacing / factor``."""
    return slice_profile_weights(shape, thickness_of((shape, ratio), spacing), spacing / factor)


def in_plane_pairs(mr: LowResMR, factor: int, profile: tuple, patch: int, count: int,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` fixed low/high-resolution pairs from the MR's own in-plane slices, degraded by D
    along one in-plane axis at the network's output spacing (the validation set)."""
    hr = mr.spacing / factor
    rows, cols = (samples_over(m, mr.fine, hr) for m in mr.stack.shape[1:])
    sampler = PatchSampler(mr.stack, factor, mr_kernel(profile[0], mr.spacing, factor, profile[1]), rows, cols, patch)
    return sampler.batch(count, rng)

"""Training samplers shared by the methods that learn from a volume's own in-plane slices."""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.ndimage import correlate1d, uniform_filter

from volumetricsr.common.errors import InputError
from volumetricsr.data.resampling import resample_axis


def degrade_rows(images: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Blur ``images`` (..., rows, cols) along rows with a slice-profile ``kernel`` (mirrored ends)."""
    return correlate1d(images, kernel, axis=-2, mode="mirror")


class PatchSampler:
    """Low/high-resolution training patches from in-plane slices, favouring edges.

    For both in-plane axes, the slices are resampled along that axis to the fine spacing, blurred
    with the slice profile, and subsampled every ``factor`` rows (at a random offset). Patch
    positions are drawn with probability proportional to the local gradient magnitude (plus a
    floor so that flat regions are still seen).
    """

    def __init__(self, slices: np.ndarray, factor: int, kernel: np.ndarray, fine_rows: int, fine_cols: int,
                 patch: int):
        self.factor = factor
        self.sharp = [np.ascontiguousarray(resample_axis(np.swapaxes(slices, 1, 2) if t else slices, 1,
                                                         fine_cols if t else fine_rows), np.float32)
                      for t in (False, True)]      # degraded along rows, then along columns
        room = min(s.shape[1] for s in self.sharp) - factor      # rows a patch may span, plus its phase
        self.lr_rows = min(max(4, math.ceil(patch / factor)), (room - 1) // factor + 1)
        self.width = min(patch, *(s.shape[2] for s in self.sharp))
        if self.lr_rows < 2:
            raise InputError(f"The slices are too small to learn from ({fine_rows} x {fine_cols} in-plane voxels at "
                             f"x{factor}); self-supervised SR needs at least {2 * factor + 1} voxels each way.")
        span = (self.lr_rows - 1) * factor + 1
        self.blurred, self.cdf = [], []
        for imgs in self.sharp:
            self.blurred.append(degrade_rows(imgs, kernel).astype(np.float32))
            grad = uniform_filter(np.hypot(*np.gradient(imgs, axis=(1, 2))), size=(1, 9, 9))
            weight = grad + 0.1 * grad.mean() + 1e-8
            valid = weight[:, :imgs.shape[1] - span - factor + 1, :imgs.shape[2] - self.width + 1]
            c = np.cumsum(valid.ravel(), dtype=np.float64)
            self.cdf.append((c / c[-1], valid.shape))

    def batch(self, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        lows, highs = [], []
        span = (self.lr_rows - 1) * self.factor + 1
        for _ in range(size):
            o = int(rng.integers(2))
            cdf, shape = self.cdf[o]
            s, r, c = np.unravel_index(int(np.searchsorted(cdf, rng.random())), shape)
            r += int(rng.integers(self.factor))      # random phase of the slice grid
            rows = r + self.factor * np.arange(self.lr_rows)
            low = self.blurred[o][s, rows, c:c + self.width]
            high = self.sharp[o][s, r:r + span, c:c + self.width]
            if rng.random() < 0.5:
                low, high = low[:, ::-1], high[:, ::-1]
            if rng.random() < 0.5:
                low, high = low[::-1], high[::-1]
            lows.append(np.ascontiguousarray(low))
            highs.append(np.ascontiguousarray(high))
        return torch.from_numpy(np.stack(lows))[:, None], torch.from_numpy(np.stack(highs))[:, None]

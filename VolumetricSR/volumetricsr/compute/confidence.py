"""Where a result is guessing: the per-voxel spread of the predictions a method makes.

A method that fuses several predictions (selfsr, CLADE and the CT-guided method: one per plane
orientation) reports their spread; a method that makes one prediction (a network over 3-D windows)
makes more for the map: its input mirrored left-right, and its windows shifted by half a stride; the
interpolation baselines report the spread of the three kernels (linear, B-spline, windowed sinc),
which disagree where the slices leave the most to guess. The map is the population standard
deviation of the predictions, per voxel, in intensity units, on the output grid; zero where they
agree. Asking for it never changes the result.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import numpy as np


class Spread:
    """Running per-voxel mean and spread of same-shaped arrays (Welford's algorithm, float64-free)."""

    def __init__(self) -> None:
        self.count, self._mean, self._m2 = 0, None, None

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32)
        self.count += 1
        if self._mean is None:
            self._mean, self._m2 = x.copy(), np.zeros_like(x)
            return
        delta = x - self._mean
        self._mean += delta / self.count
        delta *= x - self._mean
        self._m2 += delta

    def std(self) -> np.ndarray:
        """Population standard deviation (``|a - b| / 2`` for two predictions)."""
        if self.count < 2:
            raise ValueError("A spread needs at least two predictions.")
        return np.sqrt(np.maximum(self._m2 / self.count, 0, out=self._m2), out=self._m2)


def combine(parts: Iterable[np.ndarray], finish: Callable[[np.ndarray], np.ndarray],
            spread: Optional[Spread], fuse: bool) -> np.ndarray:
    """The output stack from the predictions ``parts`` (the method's own units and grid; its to
    change) and ``finish`` (to intensities on the output grid, in place where it can): ``finish`` of
    their mean (``fuse``) or of the first alone. With ``spread``, every finished part goes into it too;
    a single-prediction method's other parts (a lazy iterable) are computed only then."""
    total, first, count = None, None, 0
    for part in parts:
        count += 1
        if fuse:
            total = (part.copy() if spread is not None else part) if total is None else np.add(total, part, out=total)
        if spread is None:
            if not fuse:
                return finish(part)
            continue
        finished = finish(part)
        spread.add(finished)
        if first is None and not fuse:
            first = finished
    if not fuse:
        return first
    total /= count
    return finish(total)


def mirror_axis(direction: np.ndarray, axis: int) -> int:
    """The stack axis (1: rows, 2: columns; see :func:`~.geometry.to_stack`) that runs closest to
    the patient's left-right direction, for a volume whose through-plane index axis is ``axis``."""
    others = [a for a in (2, 1, 0) if a != axis]          # ITK axes of the stack's rows, columns
    return 1 + int(np.argmax([abs(direction[0, a]) for a in others]))

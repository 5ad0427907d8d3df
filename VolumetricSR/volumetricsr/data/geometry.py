"""Through-plane axis detection and the output grid of through-plane upsampling.

Convention (as in RPLHR-CT): thick slice ``k`` sits at thin slice ``s*k`` with
``s = thick spacing / thin spacing``, so ``n`` thick slices give ``(n-1)*s + 1`` thin slices, the
first and last at the same physical positions as the first and last thick slices. For a
non-integer ``s`` the thin spacing is adjusted slightly so that this stays exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from volumetricsr.common.errors import AlreadyIsotropicError, InputError
from volumetricsr.data.volume import AXIS_NAMES, Volume

AxisLike = Union[int, str, None]

#: Relative spacing difference below which a volume counts as already at the target spacing.
ISOTROPIC_TOLERANCE = 0.01


def samples_over(n: int, spacing: float, target: float) -> int:
    """How many samples ``target`` mm apart span the extent of ``n`` samples ``spacing`` mm apart."""
    return int(round((n - 1) * spacing / target)) + 1


def parse_axis(axis: AxisLike) -> Optional[int]:
    """``'I'|'J'|'K'`` or ``0|1|2`` (ITK index axis) or ``None`` (detect)."""
    if axis is None or isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        if axis is not None and axis not in (0, 1, 2):
            raise InputError(f"Axis {axis} does not exist; use I, J or K (0, 1 or 2).")
        return None if axis is None else int(axis)
    name = str(axis).strip().upper()
    if name in ("", "AUTO"):
        return None
    if name not in AXIS_NAMES:
        raise InputError(f"Unknown axis {axis!r}; use I, J or K.")
    return AXIS_NAMES.index(name)


def through_plane_axis(volume: Volume, axis: AxisLike = None) -> int:
    """The index axis with the largest spacing (K for an isotropic volume), or the one the user names."""
    named = parse_axis(axis)
    if named is not None:
        return named
    sp = np.asarray(volume.spacing)
    order = np.argsort(sp)[::-1]
    top, second = sp[order[0]], sp[order[1]]
    if np.allclose(sp, sp[0], rtol=ISOTROPIC_TOLERANCE):
        return 2
    if top > second * (1 + ISOTROPIC_TOLERANCE):
        return int(order[0])
    raise InputError(f"Two axes share the largest spacing ({volume.spacing} mm along I, J, K), so the "
                     "through-plane axis is ambiguous. Name it (--axis I, J or K).")


@dataclass(frozen=True)
class ThroughPlaneGrid:
    """Input and output sampling along the through-plane axis."""

    axis: int                       # ITK index axis (0=I, 1=J, 2=K)
    n_in: int
    n_out: int
    spacing_in: float
    spacing_out: float
    in_plane_spacing: tuple[float, float]   # (rows, columns) of a stack slice, see :func:`to_stack`

    @property
    def factor(self) -> float:
        return self.spacing_in / self.spacing_out

    @property
    def axis_name(self) -> str:
        return AXIS_NAMES[self.axis]

    def input_positions(self) -> np.ndarray:
        """Continuous input slice index of every output slice (0 ... n_in-1)."""
        return np.arange(self.n_out) * (self.n_in - 1) / max(self.n_out - 1, 1)

    def describe(self) -> str:
        return (f"axis {self.axis_name}: {self.n_in} slices at {self.spacing_in:.4g} mm -> "
                f"{self.n_out} slices at {self.spacing_out:.4g} mm (x{self.factor:.4g})")


def plan_grid(volume: Volume, spacing: Optional[float] = None, axis: AxisLike = None,
              force: bool = False) -> ThroughPlaneGrid:
    """The output grid for upsampling ``volume`` to ``spacing`` mm (default: the in-plane spacing)."""
    a = through_plane_axis(volume, axis)
    n_in = volume.size[a]
    thick = volume.spacing[a]
    in_plane = [volume.spacing[b] for b in range(3) if b != a]
    target = float(min(in_plane) if spacing is None else spacing)
    if not math.isfinite(target) or target <= 0:
        raise InputError(f"The target spacing must be a positive number of mm, not {spacing!r}.")
    if target > thick * (1 + ISOTROPIC_TOLERANCE):
        raise InputError(f"The target spacing {target:g} mm is coarser than the slice spacing "
                         f"{thick:g} mm along {AXIS_NAMES[a]}; super-resolution only makes slices thinner.")
    if abs(thick - target) <= ISOTROPIC_TOLERANCE * thick and not force:
        raise AlreadyIsotropicError(
            f"The volume already has {thick:g} mm spacing along {AXIS_NAMES[a]} (target {target:g} mm): "
            "there is nothing to do. Give a smaller target spacing, or force (--force) to resample anyway.")
    n_out = samples_over(n_in, thick, target)
    spacing_out = thick * (n_in - 1) / (n_out - 1) if n_out > 1 else target
    return ThroughPlaneGrid(a, n_in, n_out, thick, spacing_out, stack_spacing(volume, a))


def finest_spacing(grid: ThroughPlaneGrid, max_slices: int) -> Optional[float]:
    """The finest target spacing, rounded up to 3 significant digits, whose grid has at most
    ``max_slices`` slices along ``grid``'s axis; None when none is finer than the slices' own."""
    if max_slices <= grid.n_in:
        return None
    exact = grid.spacing_in * (grid.n_in - 1) / (max_slices - 1)
    step = 10.0 ** (math.floor(math.log10(exact)) - 2)
    spacing = float(f"{math.ceil(exact / step) * step:.3g}")
    fine = spacing < grid.spacing_in * (1 - ISOTROPIC_TOLERANCE)
    return spacing if fine and samples_over(grid.n_in, grid.spacing_in, spacing) <= max_slices else None


def stack_spacing(volume: Volume, axis: int) -> tuple[float, float]:
    """The in-plane spacings (rows, columns) of a slice of :func:`to_stack` along ITK ``axis``
    (numpy order: rows = the higher ITK axis)."""
    rows, cols = sorted((b for b in range(3) if b != axis), reverse=True)
    return volume.spacing[rows], volume.spacing[cols]


def to_stack(array: np.ndarray, axis: int) -> np.ndarray:
    """View of a ``[k, j, i]`` array with the through-plane axis first: ``(slices, rows, cols)``."""
    return np.moveaxis(array, 2 - axis, 0)


def from_stack(stack: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of :func:`to_stack`."""
    return np.moveaxis(stack, 0, 2 - axis)


def output_volume(volume: Volume, grid: ThroughPlaneGrid, stack: np.ndarray) -> Volume:
    """Wrap an upsampled stack in the input's geometry: same origin, direction and extent."""
    if stack.shape[0] != grid.n_out:
        raise ValueError(f"Method returned {stack.shape[0]} slices, expected {grid.n_out}.")
    spacing = list(volume.spacing)
    spacing[grid.axis] = grid.spacing_out
    return volume.with_array(np.ascontiguousarray(from_stack(stack, grid.axis)), spacing=tuple(spacing))

"""A volume: voxels plus the geometry that places them in patient space (ITK/LPS convention)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from volumetricsr.common.errors import InputError

AXIS_NAMES = "IJK"
#: Voxel spacings a header may state, in mm (10 nm to 100 m); beyond them it is wrong, and the
#: ratios the methods compute from them overflow.
SPACING_RANGE = (1e-5, 1e5)
#: Integers up to this magnitude are exact in float32; beyond it, not all are.
FLOAT32_EXACT = 2 ** 24


@dataclass(frozen=True)
class Volume:
    """Voxels and geometry.

    ``array`` is indexed ``[k, j, i]`` (as SimpleITK and Slicer hand arrays out); ``spacing`` and
    ``origin`` are in ``(i, j, k)`` order, in mm; column ``a`` of ``direction`` is the unit vector of
    index axis ``a`` in LPS patient coordinates. ``origin`` is the centre of voxel ``(0, 0, 0)``.
    ``metadata`` carries what a writer may want back (for example DICOM study tags).
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    metadata: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        object.__setattr__(self, "direction", np.asarray(self.direction, dtype=float).reshape(3, 3))

    @property
    def size(self) -> tuple[int, int, int]:
        """Number of voxels along (i, j, k)."""
        return tuple(int(n) for n in self.array.shape[::-1])

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Physical (LPS, mm) positions of continuous indices ``ijk`` (shape ``(..., 3)``)."""
        ijk = np.asarray(ijk, dtype=float)
        return np.asarray(self.origin) + (ijk * np.asarray(self.spacing)) @ self.direction.T

    def voxel_centres(self) -> np.ndarray:
        """Physical positions of every voxel, shaped like ``array`` plus a last axis of 3."""
        k, j, i = np.meshgrid(*(np.arange(n) for n in self.array.shape), indexing="ij")
        return self.index_to_physical(np.stack([i, j, k], axis=-1))

    def with_array(self, array: np.ndarray, **geometry) -> "Volume":
        """A copy with new voxels and optionally new ``spacing``/``origin``/``direction``."""
        return replace(self, array=array, **geometry)

    def same_grid(self, other: "Volume", tol: float = 1e-4) -> bool:
        return (self.array.shape == other.array.shape
                and np.allclose(self.spacing, other.spacing, rtol=tol, atol=tol)
                and np.allclose(self.origin, other.origin, atol=tol * 10)
                and np.allclose(self.direction, other.direction, atol=tol))

    def describe(self) -> str:
        sp = " x ".join(f"{s:.4g}" for s in self.spacing)
        size = " x ".join(str(n) for n in self.size)
        return f"{size} voxels, spacing {sp} mm, {self.array.dtype}"


def check_scalar_volume(volume: Volume, name: str = "input") -> None:
    """Raise :class:`InputError` unless ``volume`` is a finite 3-D scalar volume."""
    a = volume.array
    if a.ndim != 3:
        kind = "2-D image" if a.ndim == 2 else f"{a.ndim}-D array"
        raise InputError(f"The {name} is a {kind}; VolumetricSR needs a 3-D scalar volume.")
    if 1 in a.shape:
        raise InputError(f"The {name} has a single slice ({' x '.join(map(str, volume.size))} voxels): "
                         "it is a 2-D image, and there is nothing to interpolate between.")
    if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
        raise InputError(f"The {name} has voxel type {a.dtype}; a real scalar type is needed.")
    if np.issubdtype(a.dtype, np.floating):
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise nonfinite_error(f"The {name}", bad)
    if min(volume.spacing) <= 0:
        raise InputError(f"The {name} has a non-positive voxel spacing {volume.spacing}.")
    low, high = SPACING_RANGE
    odd = [f"{s:g} mm along {AXIS_NAMES[a]}" for a, s in enumerate(volume.spacing) if not low <= s <= high]
    if odd:
        raise InputError(f"The {name} has a voxel spacing of {', '.join(odd)}, outside {low:g} to {high:g} mm: "
                         "its header is wrong. Fix it (each axis's spacing in mm) before super-resolution.")


def nonfinite_error(what: str, count: int) -> InputError:
    """The one message for voxels that are NaN or infinite (``what``: "The input", a file)."""
    return InputError(f"{what} has {count} NaN or infinite voxels. Replace them (for example with the "
                      "background value) before super-resolution.")


def beyond_float32(array: np.ndarray) -> float:
    """The largest magnitude in ``array`` when its type holds values float32 cannot hold exactly (32-
    and 64-bit integers, float64) and it has some beyond :data:`FLOAT32_EXACT`; else 0."""
    wide = array.dtype.itemsize >= (8 if array.dtype.kind == "f" else 4)
    if array.size == 0 or array.dtype.kind not in "iuf" or not wide:
        return 0.0
    largest = max(abs(float(array.max())), abs(float(array.min())))
    return largest if largest > FLOAT32_EXACT else 0.0


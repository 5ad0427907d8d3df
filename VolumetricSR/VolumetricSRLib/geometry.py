"""Slicer's IJK-to-RAS matrix <-> the core's LPS spacing/origin/direction (pure numpy).

Slicer places voxel (i, j, k) at ``IJKToRAS @ (i, j, k, 1)`` in RAS; the core (ITK convention) uses
``origin + direction @ diag(spacing) @ (i, j, k)`` in LPS. RAS and LPS differ by the sign of the first two
axes, so both the origin and the direction columns are flipped in x and y. Arrays are ``[k, j, i]`` on
both sides, so voxels need no reordering.
"""
from __future__ import annotations

import numpy as np

#: Multiplying a RAS vector by this gives the LPS vector, and back.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def geometry_from_ijk_to_ras(ijk_to_ras) -> tuple[tuple[float, float, float], tuple[float, float, float], np.ndarray]:
    """``(spacing, origin_lps, direction_lps)`` of a 4x4 IJK-to-RAS matrix."""
    m = np.asarray(ijk_to_ras, dtype=float).reshape(4, 4)
    scaled = m[:3, :3]
    spacing = np.linalg.norm(scaled, axis=0)
    if np.any(spacing <= 0):
        raise ValueError(f"The IJK-to-RAS matrix has a zero column (spacing {spacing}).")
    direction = RAS_TO_LPS @ (scaled / spacing)
    origin = RAS_TO_LPS @ m[:3, 3]
    return tuple(float(s) for s in spacing), tuple(float(o) for o in origin), direction


def ijk_to_ras_from_geometry(spacing, origin, direction) -> np.ndarray:
    """The 4x4 IJK-to-RAS matrix of an LPS ``spacing``/``origin``/``direction``."""
    m = np.eye(4)
    m[:3, :3] = RAS_TO_LPS @ np.asarray(direction, dtype=float).reshape(3, 3) @ np.diag(np.asarray(spacing, dtype=float))
    m[:3, 3] = RAS_TO_LPS @ np.asarray(origin, dtype=float)
    return m

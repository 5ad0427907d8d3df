"""Before/after views for people: reformats across the slices, side by side (matplotlib, optional)."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from .errors import VolumetricSRError
from .geometry import to_stack
from .volume import Volume


def _matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError as exc:
        raise VolumetricSRError("Figures need matplotlib: pip install matplotlib") from exc


def reformat(volume: Volume, axis: int, row_fraction: float = 0.5) -> tuple[np.ndarray, tuple[float, float]]:
    """The plane through ``row_fraction`` of the rows that contains the through-plane axis.

    Returns the image (through-plane axis vertical, superior up) and its physical (width, height) in mm.
    """
    stack = to_stack(volume.array, axis)
    row = int(round(row_fraction * (stack.shape[1] - 1)))
    image = stack[:, row, :]
    if volume.direction[2, axis] > 0:      # slices run towards the head (LPS z): superior goes up
        image = image[::-1]
    cols_axis = min(b for b in range(3) if b != axis)
    return image, (image.shape[1] * volume.spacing[cols_axis], image.shape[0] * volume.spacing[axis])


def comparison_figure(panels: dict[str, Volume], path: "str | os.PathLike", axis: int, *,
                      window: Optional[tuple[float, float]] = None, row_fraction: float = 0.5,
                      crop: Optional[tuple[slice, slice]] = None, title: str = "") -> None:
    """Save a row of reformats, one per volume (thick inputs drawn as blocks, as a viewer shows them).

    ``crop``: (vertical, horizontal) fractions as slices of [0, 1], e.g. to zoom into a region.
    """
    plt = _matplotlib()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    for ax, (name, vol) in zip(axes[0], panels.items()):
        image, (width, height) = reformat(vol, axis, row_fraction)
        pixel_h, pixel_w = height / image.shape[0], width / image.shape[1]
        if crop is not None:
            (r0, r1), (c0, c1) = [(int((c.start or 0) * n), int((c.stop or 1) * n))
                                  for c, n in zip(crop, image.shape)]
            image = image[r0:r1, c0:c1]
        extent = (0, image.shape[1] * pixel_w, image.shape[0] * pixel_h, 0)
        lo, hi = window or np.percentile(image, [1, 99])
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest", aspect="equal")
        ax.set_title(name, fontsize=10)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""Before/after views for people: reformats across the slices, side by side (matplotlib, optional)."""
from __future__ import annotations

import os
from typing import Optional

import numpy as np

from volumetricsr.common.errors import VolumetricSRError
from volumetricsr.data.geometry import to_stack
from volumetricsr.data.volume import Volume


def _matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except ImportError as exc:
        raise VolumetricSRError("Figures need matplotlib: pip install matplotlib") from exc


VIEWS = {"coronal": 1, "sagittal": 2}   # the in-plane stack axis a view holds fixed (named for axial slices)


def reformat(volume: Volume, axis: int, row_fraction: float = 0.5,
             view: str = "coronal") -> tuple[np.ndarray, tuple[float, float]]:
    """The plane that contains the through-plane axis and cuts the slices at ``row_fraction`` of their
    rows (``view="coronal"``) or columns (``"sagittal"``).

    Returns the image (through-plane axis vertical, superior up) and its physical (width, height) in mm.
    """
    stack = to_stack(volume.array, axis)
    fixed = VIEWS[view]
    index = int(round(row_fraction * (stack.shape[fixed] - 1)))
    image = stack[:, index, :] if fixed == 1 else stack[:, :, index]
    if volume.direction[2, axis] > 0:      # slices run towards the head (LPS z): superior goes up
        image = image[::-1]
    smaller, larger = [b for b in range(3) if b != axis]   # stack axes 1, 2: the larger, the smaller index axis
    cols_axis = smaller if fixed == 1 else larger
    return image, (image.shape[1] * volume.spacing[cols_axis], image.shape[0] * volume.spacing[axis])


def comparison_figure(panels: dict[str, Volume], path: "str | os.PathLike", axis: int, *,
                      window: Optional[tuple[float, float]] = None, row_fraction: float = 0.5,
                      crop: Optional[tuple[slice, slice]] = None, title: str = "",
                      views: tuple[str, ...] = ("coronal",), heat: tuple[str, ...] = ()) -> None:
    """Save reformats side by side, one column per volume and one row per view (thick inputs drawn as
    blocks, as a viewer shows them).

    ``crop``: (vertical, horizontal) fractions as slices of [0, 1], e.g. to zoom into a region.
    ``heat``: panels that are maps (errors, confidence), drawn in colour from 0 to each one's 99th
    percentile, with a colour bar (their scales differ: compare where, and read how much).
    """
    plt = _matplotlib()
    fig, axes = plt.subplots(len(views), len(panels), figsize=(3.2 * len(panels), 3.6 * len(views)), squeeze=False)
    for row, view in enumerate(views):
        for ax, (name, vol) in zip(axes[row], panels.items()):
            image, (width, height) = reformat(vol, axis, row_fraction, view)
            pixel_h, pixel_w = height / image.shape[0], width / image.shape[1]
            if crop is not None:
                (r0, r1), (c0, c1) = [(int((c.start or 0) * n), int((c.stop or 1) * n))
                                      for c, n in zip(crop, image.shape)]
                image = image[r0:r1, c0:c1]
            extent = (0, image.shape[1] * pixel_w, image.shape[0] * pixel_h, 0)
            if name in heat:
                top = float(np.percentile(image, 99)) or 1.0
                shown = ax.imshow(image, cmap="magma", vmin=0, vmax=top, extent=extent, interpolation="nearest")
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
            else:
                lo, hi = window or np.percentile(image, [1, 99])
                ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, extent=extent, interpolation="nearest", aspect="equal")
            ax.set_title(name if len(views) == 1 else f"{name}, {view}", fontsize=10)
            ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

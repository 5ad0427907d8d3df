"""The one-call entry points used by the command line, the Slicer modules and scripts."""
from __future__ import annotations

import os
from typing import Optional

from .device import resolve_device
from .geometry import AxisLike
from .io import cast_array, check_writable, read_volume, write_volume
from .methods import get_method
from .progress import CancelToken, ProgressCallback
from .volume import Volume


def super_resolve(volume: Volume, method: str = "bspline", spacing: Optional[float] = None, *,
                  axis: AxisLike = None, device: str = "auto", dtype: Optional[str] = None,
                  force: bool = False, progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None, results: Optional[dict] = None, **options) -> Volume:
    """Upsample ``volume`` along its through-plane axis with ``method``; returns a new volume.

    ``spacing``: target through-plane spacing in mm (default: the finest in-plane spacing).
    ``dtype``: None (float32), 'input' (the input's voxel type) or a numpy type name.
    ``options``: method settings, e.g. ``model``, ``backend`` ('torch'|'onnx'), ``precision``,
    ``window``, ``overlap``, ``batch_size`` for network methods.
    ``results``: a dict that receives what the run reports besides the volume (selfsr: ``training``).
    """
    m = get_method(method)
    dev = resolve_device(device) if m.uses_device else "cpu"
    out = m.run(volume, spacing, axis=axis, device=dev, progress=progress, cancel=cancel, force=force,
                results=results, **options)
    if dtype is not None:
        out = out.with_array(cast_array(out.array, volume.array.dtype if dtype == "input" else dtype))
    return out


def infer(input_path: "str | os.PathLike", output_path: "str | os.PathLike", method: str = "bspline",
          spacing: Optional[float] = None, *, series: Optional[str] = None, **kwargs) -> Volume:
    """Read, super-resolve and atomically write; the output is checked to be writable first."""
    check_writable(output_path)
    volume = read_volume(input_path, series)
    out = super_resolve(volume, method, spacing, **kwargs)
    write_volume(out, output_path)
    return out

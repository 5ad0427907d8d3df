"""The one-call entry points used by the command line, the Slicer modules and scripts."""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from volumetricsr.common import __version__
from volumetricsr.compute.consistency import consistency, enforce_consistency as enforce
from volumetricsr.compute.cpu_memory import available_bytes
from volumetricsr.compute.device import resolve_device
from volumetricsr.data.geometry import AxisLike, finest_spacing, plan_grid, stack_spacing, through_plane_axis, to_stack
from volumetricsr.common.errors import InputError, Notice
from volumetricsr.data.io import (cast_array, check_frames_format, check_size, read_frames, volume_transaction,
                                  write_frames)
from volumetricsr.methods import Method, get_method
from volumetricsr.methods.options import method_rules
from volumetricsr.common.options import check_options, check_spacing
from volumetricsr.data.profile_estimation import LAGS, estimate_profile
from volumetricsr.data.profiles import PROFILES
from volumetricsr.common.progress import CancelToken, ProgressCallback, scaled
from volumetricsr.data.volume import FLOAT32_EXACT, Volume, beyond_float32


#: How the acquired slices were made, which every method takes: consistency re-thickens with it, and
#: a method that models it (selfsr) learns with it too. Thickness default: the slice spacing.
SLICE_PROFILE = method_rules("thickness", "profile")


def check_request(method: str, spacing: Optional[float] = None,
                  options: Optional[dict] = None) -> tuple[Method, dict]:
    """Every check that needs no volume (method, target spacing, option values; a network method's
    card, not its weights; the slice profile): an :class:`~volumetricsr.common.errors.InputError` before any
    work. Returns the method and the options' clean values."""
    m = get_method(method)
    check_spacing(spacing)
    options = dict(options or {})
    acquired = {k: options.pop(k) for k in SLICE_PROFILE if k in options and k not in m.option_rules}
    return m, {**m.check_options(options), **check_options("The slice profile", SLICE_PROFILE, acquired)}


def super_resolve(volume: Volume, method: str = "bspline", spacing: Optional[float] = None, *,
                  axis: AxisLike = None, device: str = "auto", dtype: Optional[str] = None,
                  force: bool = False, progress: Optional[ProgressCallback] = None,
                  cancel: Optional[CancelToken] = None, results: Optional[dict] = None,
                  enforce_consistency: bool = False, consistency_map: bool = False, confidence_map: bool = False,
                  **options) -> Volume:
    """Upsample ``volume`` along its through-plane axis with ``method``; returns a new volume.

    ``spacing``: target through-plane spacing in mm (default: the finest in-plane spacing).
    ``dtype``: None (float32), 'input' (the input's voxel type) or a numpy type name.
    ``options``: method settings, e.g. ``model``, ``backend`` ('torch'|'onnx'), ``precision``,
    ``window``, ``overlap``, ``batch_size`` for network methods; for every method ``thickness`` (mm)
    and ``profile`` ('gaussian'|'rect'|'triangle') of the acquired slices (:data:`SLICE_PROFILE`;
    thickness default: what a DICOM input states, else the slice spacing).
    ``results``: a dict that receives what the run reports besides the volume (selfsr: ``training``).
    ``enforce_consistency``: change the result as little as possible so that re-thickening it (with
    ``thickness``/``profile``) reproduces the input exactly (:mod:`.consistency`).
    Every run that adds slices also reports its agreement with the input in
    ``results['consistency']`` (RMS, max, worst slice), with the same slice profile.
    ``consistency_map``: also the residual (input minus the re-thickened result, on the input's
    grid) as ``results['consistency_map']``; ``confidence_map``: the spread of the method's
    predictions (:mod:`.confidence`), on the result's grid, as ``results['confidence_map']``. Both
    are float32 volumes in intensity units.
    """
    if options.get("thickness") is None:
        options["thickness"] = stated_thickness(volume, axis)
    m, _ = check_request(method, spacing, options)
    check_memory(m, volume, spacing, axis, force, confidence=confidence_map, cast=dtype is not None,
                 enforce=enforce_consistency, residual=consistency_map)
    results = {} if results is None else results
    if "profile" in m.option_rules or enforce_consistency or consistency_map:     # they use the profile
        options.update(acquired_profile(volume, axis, options.get("thickness"), options.get("profile"), results))
    if consistency_map:
        grid = plan_grid(volume, spacing, axis, force)          # cheap, and before any work
        if grid.n_out <= grid.n_in:
            raise InputError("No consistency map: the result would have no more slices than the input to "
                             "re-thicken; leave the map out, or ask for a finer spacing.")
    dev = resolve_device(device) if m.uses_device else "cpu"
    out = m.run(volume, spacing, axis=axis, device=dev, progress=progress, cancel=cancel, force=force,
                results=results, confidence=confidence_map,
                **{k: v for k, v in options.items() if k in m.option_rules})     # the profile: only if it models it
    profile = options.get("thickness"), options.get("profile") or "gaussian"
    if enforce_consistency:
        out = enforce(out, volume, *profile)
    if np.greater(out.size, volume.size).any():      # upsampled (not a forced resampling at the same spacing)
        check = consistency(out, volume, *profile)
        results["consistency"] = check.summary()
        if consistency_map:
            results["consistency_map"] = check.residual
    metadata = {**volume.metadata, "derivation": derivation(m, volume, out, results)}
    out = out.with_array(out.array, metadata=metadata)
    for key, what in MAPS.items():
        if key in results:
            made = {**metadata["derivation"], "description": f"VolumetricSR {what} of a {m.title or m.name} result, "
                                                             "in intensity units: a map, not an image"}
            results[key] = results[key].with_array(results[key].array, metadata={**volume.metadata, "derivation": made})
    target = None if dtype is None else np.dtype(volume.array.dtype if dtype == "input" else dtype)
    rounded = rounding(m, volume, out, target)
    if rounded:
        warnings.warn(rounded, Notice, stacklevel=2)
        results.setdefault("warnings", []).append(rounded)
    return out.with_array(cast_array(out.array, np.float32 if target is None else target))


#: The share of a frame's work left to a frame that reuses a network trained on another (inference
#: only), for progress and time estimates (selfsr, benchmarks/sequence.py: 3 frames 61.5 s reused, 136.9 s
#: trained on each, so about 0.17; rounded up).
REUSED_FRAME_COST = 0.25


def reuses_network(method: Method, frames: int, options: Optional[dict] = None) -> bool:
    """Whether :func:`super_resolve_frames` trains ``method`` on one frame and reuses the network for
    the others: a method that trains per volume and can save its network, with no ``model`` given."""
    return (frames > 1 and method.trains_per_volume and "save_model" in method.option_rules
            and not (options or {}).get("model"))


def frame_costs(method: Method, frames: int, options: Optional[dict] = None) -> list[float]:
    """Each frame's share of a sequence's work, in runs of one volume, in the order they run."""
    other = REUSED_FRAME_COST if reuses_network(method, frames, options) else 1.0
    return [1.0] + [other] * (frames - 1)


def super_resolve_frames(frames: list[Volume], method: str = "bspline", spacing: Optional[float] = None, *,
                         progress: Optional[ProgressCallback] = None, cancel: Optional[CancelToken] = None,
                         results: Optional[dict] = None, **kwargs) -> list[Volume]:
    """Super-resolve every volume of a sequence (cine MR, multi-phase CT, DCE: frames of one size and
    spacing) as :func:`super_resolve` does with the same ``method`` and options; returns them in order.

    The middle frame goes first: the slice profile is found there once and stated for the others,
    and a method that trains per volume and can save its network (selfsr) trains there only, each
    other frame reusing that network (``save_model`` keeps it; a given ``model`` is used for all).
    ``results`` receives ``frames`` (each frame's results), ``trained_on`` (the frame trained on, or
    None), the middle frame's ``slice_profile`` and the ``consistency`` of the frame that agrees
    least with its slices (with its ``frame``). Progress covers the whole sequence."""
    m, _ = check_request(method, spacing, {k: v for k, v in kwargs.items() if k not in SUPER_RESOLVE_ARGS})
    odd = next((t for t, f in enumerate(frames) if f.array.shape != frames[0].array.shape
                or not np.allclose(f.spacing, frames[0].spacing, rtol=1e-4)), None)
    if not frames or odd is not None:
        raise InputError("The sequence has no frames." if not frames else
                         f"Frame {odd} of the sequence has another size or spacing than frame 0 "
                         f"({frames[odd].describe()} against {frames[0].describe()}); its frames must share them.")
    results = {} if results is None else results
    first = len(frames) // 2
    order = [first] + [t for t in range(len(frames)) if t != first]
    reuse = reuses_network(m, len(frames), kwargs)
    costs = np.cumsum([0.0] + frame_costs(m, len(frames), kwargs))
    outs, per_frame = [None] * len(frames), [None] * len(frames)
    options = dict(kwargs)
    with tempfile.TemporaryDirectory(prefix="volumetricsr-frames-") as folder:
        if reuse:
            options["save_model"] = options.get("save_model") or str(Path(folder) / "sequence.json")
        for i, t in enumerate(order):
            per_frame[t] = {}
            outs[t] = super_resolve(frames[t], m.name, spacing, cancel=cancel, results=per_frame[t],
                                    progress=scaled(progress, costs[i] / costs[-1], costs[i + 1] / costs[-1]),
                                    **options)
            if i == 0:
                found = per_frame[t].get("slice_profile")
                if found:
                    options.update(thickness=found["thickness"], profile=found["profile"])
                if reuse:
                    network = options.pop("save_model")
                    options = {k: v for k, v in options.items() if k not in ("warm_start", "prior")}
                    options["model"] = network
    if len(frames) == 1:            # a single volume's results as super_resolve gives them, too
        results.update(per_frame[0])
    results.update(frames=per_frame, trained_on=first if reuse else None)
    if "slice_profile" in per_frame[first]:
        results["slice_profile"] = per_frame[first]["slice_profile"]
    checked = [(r["consistency"]["rms"], t) for t, r in enumerate(per_frame) if "consistency" in r]
    if checked:
        worst = max(checked)[1]
        results["consistency"] = {**per_frame[worst]["consistency"], "frame": worst}
    return outs


def rounding(method: Method, volume: Volume, out: Volume, target: Optional[np.dtype]) -> Optional[str]:
    """Why values of ``volume`` that float32 cannot hold (integers beyond 2^24) lost their exact values
    on the way to ``out`` cast to ``target`` (None: float32), or None if they kept them (a method that
    computes in float64, :attr:`~volumetricsr.methods.base.Method.keeps_wide_values`, and a wide type)."""
    largest = beyond_float32(volume.array)
    if not largest:
        return None
    if out.array.dtype != np.float64:
        why = f"{method.title or method.name} computes in float32"
    elif target is None or target.kind == "f" and target.itemsize < 8:
        why = "the result is float32 (--dtype input keeps them)"
    else:
        return None
    return (f"The input holds values up to {largest:.10g}, beyond the {FLOAT32_EXACT} (2^24) that float32 holds "
            f"exactly, and {why}: they were rounded, by up to {np.spacing(np.float32(largest)) / 2:g}.")


def check_memory(method: Method, volume: Volume, spacing: Optional[float] = None, axis: AxisLike = None,
                 force: bool = False, *, confidence: bool = False, cast: bool = False, enforce: bool = False,
                 residual: bool = False) -> None:
    """Refuse, before any allocation, a run that needs more memory than the machine has available
    (:func:`~volumetricsr.compute.cpu_memory.available_bytes`), saying the result's size and the finest
    spacing that fits. The estimate: the method's (:meth:`~volumetricsr.methods.base.Method.memory_needed`)
    and what a run adds here (the cast to another type, the consistency enforcement, the residual map)."""
    try:
        grid = plan_grid(volume, spacing, axis, force)
    except InputError:
        return                          # the run says what is wrong with the request itself
    available = available_bytes()
    if available is None:
        return
    fixed, per_slice = method.memory_needed(volume, grid.n_in, confidence)
    out_slice = 4.0 * (volume.array.size // grid.n_in)
    per_slice += (cast + 2 * enforce) * out_slice
    fixed += 2 * residual * 4.0 * volume.array.size
    need = fixed + per_slice * grid.n_out
    if need <= available:
        return
    size = list(volume.size)
    size[grid.axis] = grid.n_out
    finest = finest_spacing(grid, int((available - fixed) // per_slice))
    advice = (f"The finest spacing that fits is about {finest:g} mm (--spacing {finest:g})." if finest else
              "Not even one slice more than the input's fits: free memory, or crop the volume first.")
    raise InputError(f"Not enough memory: the result would be {' x '.join(map(str, size))} voxels "
                     f"({_gib(out_slice * grid.n_out)} as float32); with the input and {method.title or method.name}'s "
                     f"working memory the run needs about {_gib(need)}, and {_gib(available)} are available. {advice}")


def check_result_size(volume: Volume, spacing: Optional[float], axis: AxisLike, force: bool, paths: list) -> None:
    """Fail before any work when the result, written to each of ``paths`` (None: not asked for), would
    be too large for its format (:func:`~volumetricsr.data.io.check_size`)."""
    try:
        grid = plan_grid(volume, spacing, axis, force)
    except InputError:
        return                          # the run says what is wrong with the request itself
    size = list(volume.size)
    size[grid.axis] = grid.n_out
    for path in filter(None, paths):
        check_size(path, tuple(size))


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


def acquired_profile(volume: Volume, axis: AxisLike, thickness: Optional[float], profile: Optional[str],
                     results: dict) -> dict:
    """The acquired slices' ``thickness`` and ``profile``. A stated thickness (the user's or DICOM's)
    is used with the stated profile, else Gaussian; otherwise the thickness, and the profile unless
    stated, are estimated from the volume (:mod:`.profile_estimation`). A volume with too few slices
    to estimate from gets the defaults (Gaussian, thickness = the slice spacing). Reported in
    ``results['slice_profile']`` with its ``source``."""
    a = through_plane_axis(volume, axis)
    if thickness is not None:
        found = {"profile": profile or "gaussian", "thickness": thickness, "source": "stated"}
    elif volume.size[a] < LAGS + 2:
        found = {"profile": profile or "gaussian", "thickness": volume.spacing[a], "source": "default"}
    else:
        estimate = estimate_profile(to_stack(volume.array, a), stack_spacing(volume, a), volume.spacing[a],
                                    shapes=(profile,) if profile else PROFILES)
        found = {**estimate.summary(), "source": "stated profile, thickness estimated" if profile else "estimated"}
    results["slice_profile"] = found
    return {"thickness": found["thickness"], "profile": found["profile"]}


def describe_profile(found: dict) -> str:
    """One line for ``results['slice_profile']``: what was used and where it came from."""
    used = f"{found['profile']}, FWHM {found['thickness']:.3g} mm"
    if "confidence" not in found:
        return f"slice profile {used} ({found['source']})"
    lo, hi = found["fwhm_range_mm"]
    capped = (f"; {found['capped_from_mm']:.3g} mm estimated, wider than the spacing: not used"
              if found.get("capped_from_mm") else "")
    return (f"slice profile {used} ({found['source']} from the volume, {found['confidence']} confidence: "
            f"{lo:.3g}-{hi:.3g} mm fit as well{capped}; state --profile/--thickness to override)")


def stated_thickness(volume: Volume, axis: AxisLike = None) -> Optional[float]:
    """The slice thickness a DICOM input states (0018,0050), when its slices are the through-plane
    axis (K); else None."""
    try:
        thickness = float(str(volume.metadata.get("dicom", {}).get("0018|0050", "")).strip())
    except ValueError:
        return None
    return thickness if 0 < thickness <= SLICE_PROFILE["thickness"].high and \
        through_plane_axis(volume, axis) == 2 else None


#: The maps a run can make, each a volume in ``results``.
MAPS = {"consistency_map": "consistency map (acquired slices minus the re-thickened result)",
        "confidence_map": "confidence map (spread of the method's predictions)"}


def derivation(method: Method, volume: Volume, out: Volume, results: dict) -> dict:
    """How ``out`` was made from ``volume``: for writers (DICOM DerivationDescription) and for people."""
    axis = int(np.argmax(np.abs(np.subtract(volume.spacing, out.spacing))))
    model = f" (model {results['model']})" if results.get("model") else ""
    return {"method": method.name, "model": results.get("model"), "axis": axis,
            "source_spacing_mm": volume.spacing[axis], "spacing_mm": out.spacing[axis],
            "description": f"VolumetricSR {__version__} {method.title or method.name}{model}: through-plane "
                           f"super-resolution from {volume.spacing[axis]:g} mm slices to {out.spacing[axis]:.4g} mm "
                           f"spacing; not acquired at that resolution"}


SUPER_RESOLVE_ARGS = ("axis", "device", "dtype", "force", "progress", "cancel", "results", "enforce_consistency",
                      "consistency_map", "confidence_map")


def infer(input_path: "str | os.PathLike", output_path: "str | os.PathLike", method: str = "bspline",
          spacing: Optional[float] = None, *, series: Optional[str] = None, maps: Optional[dict] = None,
          **kwargs) -> "Volume | list[Volume]":
    """Read, super-resolve and write the result and the ``maps`` asked for (``{"consistency_map": path,
    "confidence_map": path}``) as one transaction of the writer (:mod:`~volumetricsr.data.writer`):
    the request and every path (against the input, its data file and each other) are checked before
    any work; all files are placed at the end, or none. A 4-D input (a sequence) is super-resolved
    frame by frame (:func:`super_resolve_frames`) into one 4-D output (and 4-D maps); the result is
    then the list of frames."""
    maps = dict(maps or {})
    check_request(method, spacing, {k: v for k, v in kwargs.items() if k not in SUPER_RESOLVE_ARGS})
    outputs = {"output": output_path, **{f"--{key.replace('_', '-')}": path for key, path in maps.items()}}
    with volume_transaction(outputs, {"input": input_path}) as tx:
        frames = read_input(input_path, outputs.values(), series)
        check_result_size(frames[0], spacing, kwargs.get("axis"), kwargs.get("force", False),
                          [output_path, maps.get("confidence_map")])
        results = kwargs.pop("results", None)
        results = {} if results is None else results
        out = super_resolve_frames(frames, method, spacing, results=results, **{key: True for key in maps}, **kwargs)
        write_results(out, results, {"output": output_path, **maps}, tx)
    return out if len(out) > 1 else out[0]


def read_input(path: "str | os.PathLike", outputs, series: Optional[str] = None) -> list[Volume]:
    """The frames of ``path`` (one for a 3-D volume), once each of ``outputs`` can hold that many."""
    frames = read_frames(path, series)
    for output in outputs:
        check_frames_format(output, len(frames))
    return frames


def write_results(out: list[Volume], results: dict, outputs: dict, tx) -> None:
    """A :func:`super_resolve_frames` run into the transaction ``tx``: its frames to ``outputs['output']``,
    each map (``outputs``' other keys: ``consistency_map``, ``confidence_map``) to its path."""
    for key, path in outputs.items():
        write_frames(out if key == "output" else [r[key] for r in results["frames"]], path, tx=tx)

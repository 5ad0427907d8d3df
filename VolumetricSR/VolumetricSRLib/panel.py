"""Texts the VolumetricSR panel shows: method list and details, and the input geometry summary."""
from __future__ import annotations

import html
from typing import Optional


def method_items() -> list[tuple[str, str]]:
    """``[(name, title)]`` of every registered method, then those that need PyTorch while it is
    missing (marked: choosing one and clicking Apply installs it)."""
    from volumetricsr import available_methods

    items = [(m.name, m.title or m.name) for m in available_methods()]
    return items + [(name, f"{title} (needs PyTorch: Apply installs it)") for name, title in pending_methods().items()]


#: The method the panel opens on where its packages load, and the one it opens on before.
RECOMMENDED, FALLBACK = "selfsr", "bspline"


def default_method() -> tuple[str, str]:
    """``(name, why)``: the method the panel opens on (and a setting of ``""`` means), and why."""
    from volumetricsr import methods

    title = methods.TORCH_METHODS[RECOMMENDED]
    if not methods.TORCH_PROBLEM:
        return RECOMMENDED, (f"{title} is the recommended method: it suits any CT or MRI at any factor and needs "
                             "no model or training data.")
    return FALLBACK, (f"The recommended method, {title}, needs PyTorch (<i>Install dependencies</i>, Compute "
                      "section); until then, B-spline.")


#: Seconds a run takes on 2 CPU cores: (fixed, per million output voxels). Measured: the interpolations
#: by benchmarks/slicer_gil.py (blocking), the others by benchmarks/trust.py (docs/trust.md: selfsr 68 s
#: for 7.9 M output voxels; CLADE 230 s and TVSRN 600 s for 7.9 M; CT-guided 60 s for 12.4 M).
CPU_SECONDS = {"linear": (0.0, 0.03), "bspline": (0.0, 0.03), "sinc": (0.0, 0.03), "selfsr": (25.0, 5.5),
               "clade": (0.0, 29.0), "tvsrn": (0.0, 76.0), "ctguided": (0.0, 4.8)}


def run_time_text(method, volume, spacing: Optional[float] = None, axis: Optional[str] = None,
                  frames: int = 1) -> str:
    """'about 1 min 10 s on 2 CPU cores (measured)' for ``method`` on the core ``volume`` (None: no
    input), or on ``frames`` such volumes (a sequence, :func:`~volumetricsr.app.api.frame_costs`);
    '' where it cannot be said."""
    from volumetricsr.app.api import frame_costs
    from volumetricsr import VolumetricSRError
    from volumetricsr.data.geometry import plan_grid

    from .runner import format_duration

    if volume is None or method.name not in CPU_SECONDS:
        return ""
    try:
        grid = plan_grid(volume, spacing, axis, force=True)
    except VolumetricSRError:
        return ""
    fixed, per_million = CPU_SECONDS[method.name]
    seconds = (fixed + per_million * grid.n_out * volume.array.size / grid.n_in / 1e6) * sum(frame_costs(method, frames))
    what = f" for the {frames} frames" if frames > 1 else ""
    if seconds < 5:
        return f"a few seconds{what}"
    about = (format_duration(round(seconds, -1)) if seconds < 120 else f"{round(seconds / 60)} min" if seconds < 3600
             else format_duration(round(seconds / 600) * 600))
    return f"about {about}{what} on 2 CPU cores (measured)"


def node_volume(node):
    """The core ``Volume`` of ``node`` (sharing its voxels), or None where it has none to give."""
    from volumetricsr import VolumetricSRError

    from .scene import volume_from_node

    try:
        return None if node is None else volume_from_node(node, copy=False)
    except VolumetricSRError:
        return None


def pending_methods() -> dict[str, str]:
    """The methods that need PyTorch and are not registered because it does not import: name -> title."""
    from volumetricsr import methods

    return {} if not methods.TORCH_PROBLEM else dict(methods.TORCH_METHODS)


def pending_html(name: str) -> str:
    from volumetricsr import methods

    title = methods.TORCH_METHODS.get(name, name)
    return (f"{html.escape(title)} needs PyTorch, which does not import here ({html.escape(methods.TORCH_PROBLEM)}). "
            "Click Apply to install it (or <i>Install dependencies</i> in the Compute section).")


def method_requirements(method) -> list[str]:
    needs = []
    if method.needs_model:
        needs.append("a trained model")
    if method.trains_per_volume:
        needs.append("training on the input volume at run time (slow)")
    if method.uses_device:
        needs.append("PyTorch; a GPU is much faster")
    if method.native_factor:
        needs.append(f"built for x{method.native_factor:g} (other factors are resampled)")
    needs.append(f"at least {method.min_slices} slices")
    return needs


def method_html(method, why: str = "", time_text: str = "") -> str:
    """Description, modalities and requirements of a core method object; why the panel chose it
    (``why``, HTML) and how long a run takes (``time_text``), where given."""
    reqs = "; ".join(method_requirements(method))
    return (f"{html.escape(method.description)}<br><b>Modalities:</b> {html.escape(', '.join(method.modalities))}"
            f"<br><b>Needs:</b> {html.escape(reqs)}" + (f"<br><b>Why this method:</b> {why}" if why else "")
            + (f"<br><b>Time:</b> {html.escape(time_text)}" if time_text else ""))


def geometry_summary(node, spacing: Optional[float] = None, axis: Optional[str] = None) -> str:
    """'spacing ...; through-plane axis K: 40 slices at 5 mm -> 196 at 1 mm (x5)', or why not."""
    if node is None:
        return "Select an input volume."
    from volumetricsr import VolumetricSRError
    from volumetricsr.data.geometry import plan_grid

    from .scene import volume_from_node

    try:
        volume = volume_from_node(node, copy=False)
    except VolumetricSRError as exc:
        return str(exc)
    try:
        grid = plan_grid(volume, spacing, axis, force=True)
    except VolumetricSRError as exc:
        return f"{volume.describe()}\n{exc}"
    from volumetricsr.app.api import stated_thickness

    stated = stated_thickness(volume, axis)
    note = f"; slices {stated:g} mm thick (DICOM)" if stated else ""
    return f"{volume.describe()}\nThrough-plane {grid.describe()}{note}"


def consistency_text(summary: Optional[dict]) -> str:
    """The run's agreement with the acquired slices, for the status line ('' when there is none)."""
    if not summary:
        return ""
    where = (f"worst: frame {summary['frame']}, slice {summary['worst_slice']}" if "frame" in summary
             else f"worst slice {summary['worst_slice']}")
    return (f"Consistency with the acquired slices: RMS {summary['rms']:.3g}, max {summary['max']:.3g} "
            f"(input units; {where}).")


def frames_text(frames: int, trained_on: Optional[int]) -> str:
    """'3 frames; trained on frame 1, its network reused for the others' for a sequence's status line."""
    reused = f"; trained on frame {trained_on}, its network reused for the others" if trained_on is not None else ""
    return f"{frames} frames{reused}"


def profile_text(found: Optional[dict]) -> str:
    """The slice profile the run used and where it came from ('' when it used none)."""
    from volumetricsr.app.api import describe_profile

    return describe_profile(found).capitalize() + "." if found else ""

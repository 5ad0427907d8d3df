"""What Apply and the console API do, without widgets: node -> core -> new node.

The computation works on a copy of the voxels and touches no node; the output node is made or
changed only afterwards, on the caller's thread (:meth:`SuperResolutionLogic.finish`). A cancelled
or failed run therefore leaves the scene as it was.

Where it runs: :meth:`~SuperResolutionLogic.run` (blocking, the console API) computes in this
process, which waits anyway. :meth:`~SuperResolutionLogic.start` (the panel's Apply) runs the
instant methods (interpolations, seconds) the same way, in the polling thread with the window kept
live between progress reports (:class:`~.runner.InlineTask`), and every method with a network or
per-volume training in a child process (:func:`~.processtask.infer_task`). Never in a worker thread:
Slicer's Python keeps the GIL on the main thread while the GUI idles, so a thread there crawls
(benchmarks/slicer_gil.py).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Optional

from . import scene, sequences
from .dependencies import DependencyInstaller, requirements_for
from .childprocess import slicer_launcher
from .processtask import infer_task
from .runner import InlineTask
from .settings import RunSettings

#: ``super_resolve`` arguments of every method: consistency and the maps (see :meth:`RunSettings.trust_options`).
TRUST_OPTIONS = ("enforce_consistency", "consistency_map", "confidence_map")


def import_core():
    """The ``volumetricsr`` package, or a clear error when a dependency of it is missing or broken."""
    try:
        import volumetricsr
        import volumetricsr.app.api  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"The VolumetricSR core could not be imported ({exc}). Install the missing package "
                          "with 'Install dependencies' in the VolumetricSR module, then restart Slicer.") from exc
    return volumetricsr


@dataclass
class Job:
    """One prepared run: a private copy of the input voxels and everything the core needs."""

    input_node: object
    volume: object
    method: str
    spacing: Optional[float]
    axis: Optional[str]
    device: str
    options: dict
    output_node: object = None     # an existing node to overwrite, or None for a new one
    name: str = ""
    dtype: Optional[str] = None
    show: bool = True
    cancel: object = field(default=None)
    warnings: list = field(default_factory=list)    # fitness warnings to show before the run
    force: bool = False            # run even where the input does not suit the method
    in_process: bool = True        # instant (an interpolation): start() runs it in this process
    trust: dict = field(default_factory=dict)     # enforce_consistency, consistency_map, confidence_map
    results: dict = field(default_factory=dict)   # what the run reports: consistency, the maps, their nodes
    frames: Optional[list] = None  # a sequence's frames (private copies; ``volume`` is the middle one), or None
    sequence: object = None        # the input sequence node of a sequence run (``input_node``: its proxy volume)


def _log_result(node, described: str, results: dict) -> None:
    """One line in Slicer's log for a result: what it is and its consistency (a sequence's worst frame)."""
    c = results.get("consistency")
    frame = f" (frame {c['frame']})" if c and "frame" in c else ""
    logging.info(f"VolumetricSR: {node.GetName()}: {described}" + (f"; consistency RMS {c['rms']:.4g}{frame}" if c else ""))


class SuperResolutionLogic:
    """Prepare, compute and finish a super-resolution run; ``run`` does all three, blocking."""

    def __init__(self, installer: Optional[DependencyInstaller] = None, launcher: Callable = slicer_launcher):
        self.installer, self.launcher = installer, launcher

    def _installer(self, interactive: bool) -> DependencyInstaller:
        return self.installer or DependencyInstaller(interactive=interactive)

    def core(self, interactive: bool = False):
        """The core package; when it cannot be imported, its packages are offered first (first use)."""
        try:
            return import_core()
        except ImportError:   # the core imports torch and einops (network methods)
            self._installer(interactive).ensure(requirements_for(True))
            return import_core()

    def ensure_method(self, name: str, interactive: bool = False) -> None:
        """A method that needs PyTorch while it does not import: install it (asking when
        ``interactive``), then register the methods in this process, or say that Slicer must restart."""
        from volumetricsr import methods
        from volumetricsr.common.errors import InputError

        if name not in methods.TORCH_METHODS or not methods.TORCH_PROBLEM:
            return
        self._installer(interactive).ensure(requirements_for(True))
        problem = methods.load_torch_methods()
        if problem:
            raise InputError(f"{methods.TORCH_METHODS[name]} needs PyTorch, which is installed but does not load in "
                             f"this session ({problem}). Restart Slicer, then Apply again.")

    def prepare(self, input_node, method: str = "bspline", spacing: Optional[float] = None, *,
                device: str = "auto", axis: Optional[str] = None, output_node=None, dtype: Optional[str] = None,
                show: bool = True, interactive: bool = False, all_frames: bool = False, **options) -> Job:
        """Check everything that can be checked before computing; raises with a message for the user.
        ``input_node`` a sequence node, or a sequence's proxy volume with ``all_frames``: every frame
        (:mod:`.sequences`)."""
        sequence = sequences.input_sequence(input_node, all_frames)
        if sequence is None:
            scene.check_input_node(input_node)
        core = self.core(interactive)
        from volumetricsr.common.errors import InputError
        from volumetricsr.data.geometry import plan_grid

        self.ensure_method(method, interactive)
        m = core.get_method(method)
        if output_node is not None and output_node is input_node:
            raise InputError("The output volume must differ from the input volume.")
        if output_node is not None and sequence is not None:
            raise InputError(f"A run of every frame of {sequence.GetName()} makes a new sequence of results: set the "
                             "output volume to 'Create new volume' (or untick 'All frames' for the frame shown).")
        self._installer(interactive).ensure(requirements_for(m.needs_model or m.uses_device,
                                                             options.get("backend", "torch")))
        if m.needs_model:
            from volumetricsr.compute.models import find_model

            options["model"] = find_model(options.get("model") or None, m.name).id
        force = bool(options.pop("force", False))
        trust = {key: bool(options.pop(key)) for key in TRUST_OPTIONS if key in options}
        _, method_options = core.app.api.check_request(m.name, spacing, options)
        frames = sequences.frames_from_sequence(sequence) if sequence is not None else None
        volume = frames[len(frames) // 2] if frames else scene.volume_from_node(input_node, copy=True)
        stated = core.app.api.stated_thickness(volume, axis)
        if options.get("thickness") is None and stated:
            options["thickness"] = stated             # explicit: a child process reads no DICOM tags
            _, method_options = core.app.api.check_request(m.name, spacing, options)
        grid = plan_grid(volume, spacing, axis, force)   # fails early on a bad target
        notes = m.fitness(volume, grid, method_options, force)
        instant = not (m.needs_model or m.trains_per_volume or m.uses_device)
        shown = (sequences.proxy_of(sequence) or sequence) if sequence is not None else input_node
        return Job(shown, volume, m.name, spacing, axis, device, options, output_node,
                   scene.output_name(sequence or input_node, m.name), dtype, show, core.CancelToken(), notes, force,
                   instant, trust, frames=frames, sequence=sequence)

    def prepare_from_settings(self, input_node, settings: RunSettings, output_node=None, interactive: bool = True) -> Job:
        from .panel import default_method

        core = self.core(interactive)
        name = settings.method or default_method()[0]
        self.ensure_method(name, interactive)
        m = core.get_method(name)
        return self.prepare(input_node, m.name, settings.target_spacing, device=settings.device,
                            axis=settings.target_axis, output_node=output_node, interactive=interactive,
                            all_frames=settings.allFrames, force=settings.force, **settings.trust_options(),
                            **settings.method_options(m))

    @staticmethod
    def compute(job: Job, progress: Optional[Callable] = None, cancel=None):
        """Run the core on the job's private copy (no scene access): a sequence's frames through
        ``super_resolve_frames`` (a list of results; each map a list in ``job.results``)."""
        from volumetricsr import super_resolve, super_resolve_frames

        args = dict(axis=job.axis, device=job.device, dtype=job.dtype, force=job.force, progress=progress,
                    cancel=cancel or job.cancel, results=job.results, **job.trust, **job.options)
        if job.frames is None:
            return super_resolve(job.volume, job.method, job.spacing, **args)
        out = super_resolve_frames(job.frames, job.method, job.spacing, **args)
        job.results.update({key: [r[key] for r in job.results["frames"]] for key in scene.MAP_STYLES
                            if job.trust.get(key)})
        return out

    @staticmethod
    def finish(job: Job, result):
        """Make (or overwrite) the output node from the result, and a node for each map beside it
        (``job.results['map_nodes']``), on the scene's thread; returns the output node. A sequence
        run's result (a list of frames) becomes a sequence of results with a sequence per map
        (:func:`.sequences.create_output_sequence`), and that sequence node is returned."""
        if job.frames is not None:
            return SuperResolutionLogic._finish_sequence(job, result)
        if job.output_node is None:
            node = scene.create_output_node(result, job.input_node, job.name)
        else:
            scene.replace_node_content(result, job.output_node, job.input_node)
            node = job.output_node
        maps: dict = {}
        try:
            for key in (k for k in scene.MAP_STYLES if k in job.results):
                maps[key] = scene.create_map_node(job.results[key], node, key)
        except BaseException:       # the run's nodes come all together or not at all
            import slicer

            for made in [*maps.values(), *([node] if job.output_node is None else [])]:
                slicer.mrmlScene.RemoveNode(made)
            raise
        job.results["map_nodes"] = maps
        if job.show:
            scene.show(node)
        _log_result(node, result.describe(), job.results)
        return node

    @staticmethod
    def _finish_sequence(job: Job, frames):
        maps = {key: job.results[key] for key in scene.MAP_STYLES if key in job.results}
        like = None if sequences.is_sequence(job.input_node) else job.input_node
        output, job.results["map_nodes"] = sequences.create_output_sequence(frames, maps, job.sequence, job.name,
                                                                            like)
        if job.show:
            sequences.show(output)
        _log_result(output, f"{len(frames)} frames of {frames[0].describe()}", job.results)
        return output

    def start(self, job: Job, *, on_progress=None, on_done=None, on_cancelled=None, on_error=None):
        """A task (call ``poll()`` on it, e.g. from a timer): instant methods run in this process at
        the first ``poll``, Slicer's events processed between progress reports; the others in a
        child process. ``on_done(node)`` after the node is made."""
        def done(result):
            node = self.finish(job, result)
            if on_done:
                on_done(node)

        if not job.in_process:
            return infer_task(job, launcher=self.launcher, on_progress=on_progress, on_done=done,
                              on_cancelled=on_cancelled, on_error=on_error).start()
        import slicer

        return InlineTask(lambda progress, cancel: self.compute(job, progress, cancel), job.cancel,
                          on_progress=on_progress, on_done=done, on_cancelled=on_cancelled, on_error=on_error,
                          between=slicer.app.processEvents).start()

    def run(self, inputNode, method: str = "bspline", spacing: Optional[float] = None, device: str = "auto", *,
            outputNode=None, axis: Optional[str] = None, progress: Optional[Callable] = None, cancel=None,
            show: bool = True, interactive: bool = False, results: Optional[dict] = None, all_frames: bool = False,
            **options):
        """Super-resolve ``inputNode`` and return the new (or given ``outputNode``) volume node. Blocking.

        A sequence node (or a sequence's proxy volume with ``all_frames=True``) gives every frame, through
        the same method and options, as a new sequence node of results (returned) in the input's
        sequence browser, its index values kept; ``results['map_nodes']`` are then map sequences.

        ``spacing``: target through-plane spacing in mm (None: isotropic). ``options``: method options such
        as ``model``, ``backend``, ``precision``, ``window``, ``overlap``, ``batch_size``, ``dtype``,
        ``force``, and ``enforce_consistency``, ``consistency_map``, ``confidence_map`` (every method).
        ``results``: a dict that receives ``consistency`` (RMS, max, worst slice) and ``map_nodes``.
        Missing Python packages are installed without asking unless ``interactive`` is True.
        """
        dtype = options.pop("dtype", None)
        job = self.prepare(inputNode, method, spacing, device=device, axis=axis, output_node=outputNode,
                           dtype=dtype, show=show, interactive=interactive, all_frames=all_frames, **options)
        if results is not None:
            job.results = results
        return self.finish(job, self.compute(job, progress, cancel))

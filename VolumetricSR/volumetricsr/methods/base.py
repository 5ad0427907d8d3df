"""The interface every super-resolution method implements, and the registry that lists them."""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

import numpy as np

from volumetricsr.compute.confidence import Spread, mirror_axis
from volumetricsr.common.errors import InputError, ModelError, Notice
from volumetricsr.compute.models import ModelCard, find_model
from volumetricsr.common.options import Rule, check_options
from volumetricsr.data.normalization import guess_modality
from volumetricsr.data.geometry import AxisLike, ThroughPlaneGrid, output_volume, plan_grid, to_stack
from volumetricsr.common.progress import CancelToken, ProgressCallback, report
from volumetricsr.data.volume import Volume, beyond_float32, check_scalar_volume


@dataclass
class RunContext:
    """What a method needs besides the data: where to compute, whom to tell, whether to stop."""

    device: str = "cpu"
    progress: Optional[ProgressCallback] = None
    cancel: CancelToken = field(default_factory=CancelToken)
    results: dict = field(default_factory=dict)     # what this run reports back (e.g. selfsr's training)
    spread: Optional[Spread] = None     # when a confidence map is asked for: the predictions' spread
    mirror_axis: int = 2                # the stack axis closest to patient left-right
    volume: Optional[Volume] = None     # the input, for what a method may ask of it (its modality)

    @cached_property
    def modality(self) -> Optional[str]:
        """'CT', 'MR' or None (unknown): :func:`~..normalization.guess_modality`, only when asked."""
        return None if self.volume is None else guess_modality(self.volume.array, self.volume.metadata)

    def warn(self, message: str) -> None:
        """A warning for the user: shown at once (``warnings``) and kept in ``results['warnings']``."""
        warnings.warn(message, Notice, stacklevel=2)
        self.results.setdefault("warnings", []).append(message)

    def report(self, fraction: float, message: str = "") -> None:
        report(self.progress, fraction, message)

    def check(self) -> None:
        self.cancel.raise_if_cancelled()


class Method(ABC):
    """A through-plane super-resolution method.

    Subclasses set the class attributes and implement :meth:`upsample`, which works on a float32
    stack ``(slices, rows, cols)`` whose first axis is the through-plane axis; :meth:`run` does the
    checks and the geometry once for every method.
    """

    name: str = ""
    title: str = ""
    description: str = ""
    modalities: tuple[str, ...] = ("CT", "MR")
    needs_model: bool = False          # needs trained weights (a model id)
    trains_per_volume: bool = False    # learns from the input volume itself at run time
    native_factor: Optional[float] = None   # the factor it was built for; None: any factor
    min_slices: int = 2
    uses_device: bool = False          # runs on a GPU when one is given
    experimental: bool = False         # built but not yet evaluated: left out of the demo's defaults
    option_rules: dict[str, Rule] = {}   # the keyword options ``run`` accepts, each with its rule
    #: Output-sized float32 arrays a run holds at its peak beside the input, and how many more a
    #: confidence map adds: peak RSS over the output's size, measured on 256x256x40 int16 at 5 mm
    #: (the interpolations 2.2-2.4, 6.0 with the map; selfsr with a prior 4.9) and 512x512x120 at
    #: 5 mm to 1 mm (selfsr training: 6.5, docs/reliability.md).
    working_copies: float = 6.5
    confidence_copies: float = 4.0
    #: Computes in float64 when the input holds values float32 cannot hold exactly (integers beyond
    #: 2^24): a method that is exact in the data's own arithmetic (the interpolations) keeps them.
    keeps_wide_values: bool = False

    @property
    def options(self) -> tuple[str, ...]:
        return tuple(self.option_rules)

    def check_options(self, options: dict) -> dict:
        """Clean option values, or an :class:`InputError` naming the bad one (needs no volume, loads nothing)."""
        return check_options(self.title or self.name, self.option_rules, options)

    #: Options that name a saved model of this method (a per-volume method's ``model``, ``warm_start``).
    saved_model_options: tuple = ()

    def load_card(self, model: Optional[str]) -> ModelCard:
        """The card of ``model`` (an id or a card's path; None: this method's default model), checked to
        be this method's: every method's one card loader (JSON only; the weights load on ``build``)."""
        card = find_model(model, self.name)
        if card.method != self.name:
            raise ModelError(f"Model {card.id} is a {card.method} model, not {self.name}.")
        return card

    def onnx_example(self, card: ModelCard, net, window=None) -> tuple[tuple, tuple]:
        """The input an ONNX export traces ``net`` with, and the axes left free (0: the batch)."""
        raise InputError(f"{self.title} has no network to export to ONNX.")

    def fitness(self, volume: Volume, grid: ThroughPlaneGrid, options: dict, force: bool = False) -> list[str]:
        """Warnings about how well ``volume`` suits this method with ``options`` (cheap: no weights);
        raises :class:`InputError` for a clear misfit unless ``force``. Here: a saved model named by
        one of :attr:`saved_model_options` that was trained at another slice spacing."""
        source = next((options[k] for k in self.saved_model_options if options.get(k)), None)
        note = self.load_card(source).spacing_warning(grid.spacing_in) if source else None
        return [note] if note else []

    def memory_needed(self, volume: Volume, n_in: int, confidence: bool = False) -> tuple[float, float]:
        """What a run on ``volume`` (``n_in`` slices along its through-plane axis) holds at its peak, an
        estimate made before any allocation: (bytes whatever the output, bytes per output slice): the
        input as read and its float32 stack; :attr:`working_copies` output slices and the 1-D weights."""
        per_slice = volume.array.size // n_in
        item = 8.0 if self.keeps_wide_values and beyond_float32(volume.array) else 4.0
        copies = self.working_copies + confidence * self.confidence_copies
        return volume.array.nbytes + item * volume.array.size, copies * item * per_slice + 32.0 * (n_in + 64)

    def info(self) -> dict:
        return {k: getattr(self, k) for k in ("name", "title", "description", "modalities", "needs_model",
                                              "trains_per_volume", "native_factor", "min_slices", "uses_device",
                                              "experimental", "options")}

    def run(self, volume: Volume, spacing: Optional[float] = None, *, axis: AxisLike = None,
            device: str = "cpu", progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelToken] = None, force: bool = False, results: Optional[dict] = None,
            confidence: bool = False, **options) -> Volume:
        """Upsample ``volume`` along its through-plane axis to ``spacing`` mm (default: isotropic).

        The input is never modified; the result is a new float32 (float64: see
        :attr:`keeps_wide_values`) :class:`Volume` with the input's
        origin, direction and physical extent. Options are checked first, then the volume and the
        grid, then the fitness of the input for the method (``force`` overrides a misfit). ``results``: a dict the method fills with what the
        run reports besides the volume (methods are shared objects: nothing of a run stays on them).
        ``confidence``: also make the confidence map (:mod:`..confidence`), a volume on the output's
        grid, as ``results['confidence_map']``; the result is the same either way.
        """
        options = self.check_options(options)
        check_scalar_volume(volume)
        grid = plan_grid(volume, spacing, axis, force)
        if grid.n_in < self.min_slices:
            raise InputError(f"{self.title or self.name} needs at least {self.min_slices} slices along the "
                             f"through-plane axis {grid.axis_name}; the volume has {grid.n_in}.")
        ctx = RunContext(device, progress, cancel or CancelToken(), {} if results is None else results,
                         Spread() if confidence else None, mirror_axis(volume.direction, grid.axis),
                         volume)
        for message in self.fitness(volume, grid, options, force):
            ctx.warn(message)
        ctx.check()
        kind = np.float64 if self.keeps_wide_values and beyond_float32(volume.array) else np.float32
        stack = to_stack(volume.array, grid.axis).astype(kind)   # a copy: the input stays as it is
        out = self.upsample(stack, grid, ctx, **options)
        if ctx.spread is not None:
            if ctx.spread.count < 2:
                raise RuntimeError(f"{self.name} made {ctx.spread.count} prediction(s) for the confidence map.")
            ctx.results["confidence_map"] = output_volume(volume, grid, ctx.spread.std())
        ctx.report(1.0, "done")
        return output_volume(volume, grid, out)

    @abstractmethod
    def upsample(self, stack: np.ndarray, grid: ThroughPlaneGrid, ctx: RunContext, **options) -> np.ndarray:
        """Return the ``(grid.n_out, rows, cols)`` float32 stack for the ``(grid.n_in, rows, cols)`` input."""


_REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method instance to the registry (its ``name`` is the key used everywhere)."""
    if not method.name:
        raise ValueError("A method needs a name.")
    _REGISTRY[method.name] = method
    return method


#: Methods that could not be registered: a hint on why (set by the package, e.g. PyTorch missing).
UNAVAILABLE_HINT = ""


def get_method(name: str) -> Method:
    key = (name or "").strip().lower()
    if key not in _REGISTRY:
        raise InputError(f"Unknown method {name!r}. Available: {', '.join(sorted(_REGISTRY))} "
                         f"(`volumetricsr methods` describes them).{UNAVAILABLE_HINT}")
    return _REGISTRY[key]


def available_methods() -> list[Method]:
    return [ _REGISTRY[k] for k in sorted(_REGISTRY) ]

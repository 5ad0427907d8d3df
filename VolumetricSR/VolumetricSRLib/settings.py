"""The run settings of the VolumetricSR panel, independent of how they are stored.

Their values are checked by the core (``volumetricsr.app.api.check_request``), with the same messages
as on the command line.

The module's ``parameterNodeWrapper`` class has fields of the same names; :func:`settings_from` reads
them from it (or from any object with those attributes), so the conversion to core options is tested
without Slicer.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

BACKENDS = ("torch", "onnx")
BACKEND_TITLES = {"torch": "PyTorch", "onnx": "ONNX Runtime"}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AXES = ("auto", "I", "J", "K")
#: auto (estimated from the volume), then volumetricsr.data.profiles.PROFILES
PROFILES = ("auto", "gaussian", "rect", "triangle")
#: Self-supervised training; auto: fast on CPU, quality on GPU; prior: the shipped prior alone (seconds).
BUDGETS = ("auto", "fast", "balanced", "quality", "prior")
#: Overlap value meaning "the method's own default" (the spin box shows it as special text).
METHOD_DEFAULT = -0.05


@dataclass
class RunSettings:
    """Everything Apply needs besides the input and output nodes."""

    method: str = "bspline"
    model: str = ""                 # model id; "" = the method's first model
    isotropic: bool = True          # target spacing = finest in-plane spacing
    spacing: float = 1.0            # target through-plane spacing in mm, used when not isotropic
    axis: str = "auto"
    device: str = "auto"
    backend: str = "torch"
    precision: str = "auto"
    windowSlices: int = 0           # 0 = the model's default
    windowSize: int = 0             # in-plane window edge; 0 = the model's default
    overlapSlices: float = METHOD_DEFAULT   # fraction of a window; negative = the method's default
    overlapInPlane: float = METHOD_DEFAULT
    batchSize: int = 0              # windows (or planes) per network call; 0 = the method's default
    budget: str = "auto"            # methods that train on the volume (selfsr)
    iterations: int = 0             # 0 = the budget's
    seed: int = 0
    stride: int = -1                # CLADE patch stride; -1 = the budget's/modality's, 0 = whole planes
    planes: int = 0                 # CLADE low-resolution orientations (1 or 2); 0 = the budget's
    force: bool = False             # run a model on an input that does not suit it (e.g. a CT model on MR)
    enforceConsistency: bool = False   # trust: re-thickening the result gives the input exactly
    consistencyMap: bool = False       # trust: input minus the re-thickened result, a volume beside it
    confidenceMap: bool = False        # trust: the spread of the method's predictions, a volume beside it
    sliceThickness: float = 0.0        # the acquired slices' thickness in mm; 0 = stated in DICOM, else estimated
    sliceProfile: str = "auto"         # the acquired slices' profile; auto = estimated from the volume

    @property
    def target_spacing(self) -> Optional[float]:
        return None if self.isotropic else float(self.spacing)

    @property
    def target_axis(self) -> Optional[str]:
        return None if self.axis in ("", "auto") else self.axis

    def trust_options(self) -> dict:
        """The ``super_resolve`` arguments every method has: the acquired slices' profile,
        consistency and the maps."""
        profile = {**({"profile": self.sliceProfile} if self.sliceProfile != "auto" else {}),   # else estimated
                   **({"thickness": float(self.sliceThickness)} if self.sliceThickness > 0 else {})}
        return {"enforce_consistency": bool(self.enforceConsistency), "consistency_map": bool(self.consistencyMap),
                "confidence_map": bool(self.confidenceMap), **profile}

    def method_options(self, method) -> dict:
        """Keyword options for ``volumetricsr.super_resolve`` with the core ``method`` object."""
        options = {}
        if method.needs_model:
            options.update(model=self.model or None, backend=self.backend, precision=self.precision)
            if self.batchSize > 0:
                options["batch_size"] = int(self.batchSize)
            if self.overlapSlices >= 0 or self.overlapInPlane >= 0:
                d, h, w = tuple(getattr(method, "overlap", (0.5, 0.25, 0.25)))
                options["overlap"] = (float(self.overlapSlices) if self.overlapSlices >= 0 else d,
                                      *((float(self.overlapInPlane),) * 2 if self.overlapInPlane >= 0 else (h, w)))
            if self.windowSlices or self.windowSize:
                default = tuple(getattr(method, "window", (4, 256, 256)))
                options["window"] = (self.windowSlices or default[0], self.windowSize or default[1],
                                     self.windowSize or default[2])
        if method.trains_per_volume:
            options["seed"] = int(self.seed)
            if self.model:                  # a saved model of this method: no training
                options["model"] = self.model
            if self.budget != "auto":
                options["budget"] = self.budget
            if self.iterations > 0:
                options["iterations"] = int(self.iterations)
            if self.stride >= 0:
                options["stride"] = int(self.stride)
            if self.planes > 0:
                options["planes"] = int(self.planes)
        return {k: v for k, v in options.items() if k in method.options}


def settings_from(source) -> RunSettings:
    """A :class:`RunSettings` with each field read from the same-named attribute of ``source``."""
    return RunSettings(**{f.name: getattr(source, f.name) for f in fields(RunSettings) if hasattr(source, f.name)})

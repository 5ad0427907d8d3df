"""The run settings of the VolumetricSR panel, and how the panel offers them: made from the core's
option declarations (``volumetricsr.methods.options``), which the command line uses too.

:class:`RunSettings` holds the settings in the core's terms: None leaves an option to the method.
A field that sets a core option names it (:func:`option`), and everything the panel shows of it
comes from the declaration (:class:`Offered`): the parameter node's field (type, range or choices,
default), a spin box's range, a combo box's choices, the tooltip (the declared help). An option
left to the method is offered one step below its declared range (the spin box shows it as special
text), or as ``UNSET``, the first choice. :func:`settings_from` reads a :class:`RunSettings` from
the parameter node (or any object with those attributes); the core checks the values
(``volumetricsr.app.api.check_request``) with the command line's messages.

Nothing here imports Slicer or the core when loaded (Slicer imports the module file at its start);
the declarations are read when a panel or a run needs them.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import Any, Callable, ClassVar, Optional

#: The choice that leaves an option to the method (or to an estimate from the volume).
UNSET = "auto"
#: Labels of the inference backends in the panel (the backends themselves are the declared ones).
BACKEND_TITLES = {"torch": "PyTorch", "onnx": "ONNX Runtime"}
#: The largest value a Qt spin box holds (a C int): a wider option needs a double spin box, 0 decimals.
SPIN_BOX_MAX = 2**31 - 1


def option(name: str, default=None, *, step: float = 1, shown: Optional[Callable[[str], str]] = None):
    """A settings field that sets the declared core option ``name``; ``default`` None: the method's.
    ``step``: the panel's resolution of a real number (the declared range is offered at it);
    ``shown``: how the panel writes a choice (the axes in capitals)."""
    return field(default=default, metadata={"option": name, "step": step, "shown": shown})


@dataclass
class RunSettings:
    """Everything Apply needs besides the input and output nodes (``NODES``)."""

    NODES: ClassVar[dict] = {"inputVolume": "vtkMRMLScalarVolumeNode",
                             "outputVolume": "vtkMRMLScalarVolumeNode"}     # outputVolume None: a new one

    allFrames: bool = True                               # input a sequence's proxy volume: every frame
    method: str = ""                                     # "": the panel's default (panel.default_method)
    model: Optional[str] = option("model")              # None: the method's first model
    isotropic: bool = True                               # target spacing = finest in-plane spacing
    spacing: float = option("spacing", 1.0, step=0.01)  # used when not isotropic
    axis: Optional[str] = option("axis", shown=str.upper)
    device: str = "auto"                                 # the devices found here (cuda:1, ...)
    backend: str = option("backend", "torch")
    precision: str = option("precision", "auto")
    windowSlices: Optional[int] = option("window")       # the window's through-plane part
    windowSize: Optional[int] = option("window")         # its in-plane edge
    overlapSlices: Optional[float] = option("overlap", step=0.05)     # through-plane
    overlapInPlane: Optional[float] = option("overlap", step=0.05)
    batchSize: Optional[int] = option("batch_size")
    budget: Optional[str] = option("budget")
    iterations: Optional[int] = option("iterations")
    seed: int = option("seed", 0)
    stride: Optional[int] = option("stride")             # 0: whole planes
    planes: Optional[int] = option("planes")
    force: bool = option("force", False)
    enforceConsistency: bool = option("enforce_consistency", False)
    consistencyMap: bool = False
    confidenceMap: bool = False
    sliceThickness: Optional[float] = option("thickness", step=0.01)   # None: stated in DICOM, else estimated
    sliceProfile: Optional[str] = option("profile")                     # None: estimated

    @staticmethod
    def declarations() -> dict:
        """The declared options these settings set, by name."""
        from volumetricsr.methods.options import METHOD_OPTIONS, RUN_OPTIONS

        return {**METHOD_OPTIONS, **RUN_OPTIONS}

    @property
    def target_spacing(self) -> Optional[float]:
        return None if self.isotropic else float(self.spacing)

    @property
    def target_axis(self) -> Optional[str]:
        return self.axis

    def trust_options(self) -> dict:
        """The ``super_resolve`` arguments every method has: the acquired slices' profile (those set),
        consistency and the maps."""
        from volumetricsr.app.api import SLICE_PROFILE

        acquired = {f.metadata["option"]: getattr(self, f.name) for f in fields(self)
                    if f.metadata.get("option") in SLICE_PROFILE and getattr(self, f.name) is not None}
        return {"enforce_consistency": bool(self.enforceConsistency), "consistency_map": bool(self.consistencyMap),
                "confidence_map": bool(self.confidenceMap), **acquired}

    def method_options(self, method) -> dict:
        """Keyword options for ``volumetricsr.super_resolve``: every option the core ``method`` takes
        (``method.options``) that is set here. A window or an overlap is set by two fields, its
        through-plane and its in-plane part; a part not set is the method's own."""
        takes = set(method.options) & per_method_options()
        parts: dict[str, list] = {}
        for f in fields(self):
            if f.metadata.get("option") in takes:
                parts.setdefault(f.metadata["option"], []).append(getattr(self, f.name))
        options = {}
        for name, values in parts.items():
            if all(v is None for v in values):
                continue
            if len(values) == 2:
                own, (through, in_plane) = tuple(getattr(method, name)), values
                options[name] = (own[0] if through is None else through,
                                 *(own[1:] if in_plane is None else (in_plane, in_plane)))
            else:
                options[name] = values[0]
        return options


def per_method_options() -> frozenset:
    """The options a method takes only where it lists them (``Method.option_rules``): not those of
    every run (``RUN_OPTIONS``) nor the acquired slices' (``app.api.SLICE_PROFILE``)."""
    from volumetricsr.app.api import SLICE_PROFILE
    from volumetricsr.methods.options import METHOD_OPTIONS

    return frozenset(METHOD_OPTIONS) - set(SLICE_PROFILE)


@dataclass(frozen=True)
class Offered:
    """How the panel offers one settings field: made from its option's declaration (``option``)."""

    field: str
    option: Any              # the declaration (volumetricsr.common.options.Option)
    unset: bool              # None (the method's default) is offered
    step: float
    shown: Optional[Callable[[str], str]]

    @property
    def rule(self):
        """The declared rule; a window's or overlap's (a Triple) is that of each of its parts."""
        return getattr(self.option.rule, "item", self.option.rule)

    @property
    def kind(self) -> type:
        """The parameter node field's type: int, float (a number, or a count wider than a spin box),
        bool or str."""
        from volumetricsr.common.options import Count, Number, OneOf

        rule = self.rule
        if isinstance(rule, Count):
            return int if rule.high <= SPIN_BOX_MAX else float
        if isinstance(rule, Number):
            return float
        return bool if isinstance(rule, OneOf) and set(rule.values) <= {True, False} else str

    @property
    def range(self) -> Optional[tuple]:
        """``(minimum, maximum)`` of a number's spin box: the declared range at ``step`` (an open end
        one step inside), and one step below it when the method's default is offered; else None."""
        from volumetricsr.common.options import Count, Number

        rule = self.rule
        if not isinstance(rule, (Count, Number)):
            return None
        low, high = rule.low, rule.high
        if isinstance(rule, Number):
            low, high = (low, high - self.step) if rule.fraction else (low + self.step, high)
        if self.unset:
            low -= self.step
        return (self.kind(round(low, 10)), self.kind(round(high, 10)))

    @property
    def choices(self) -> Optional[tuple]:
        """A combo box's items: the declared values (as ``shown``), ``UNSET`` first when the method's
        default is offered; None for other rules."""
        from volumetricsr.common.options import OneOf

        if not isinstance(self.rule, OneOf) or self.kind is bool:
            return None
        values = tuple((self.shown or str)(v) for v in self.rule.values)
        return ((UNSET,) if self.unset and UNSET not in values else ()) + values

    @property
    def sentinel(self):
        """The parameter node's value for "the method's default"."""
        return self.range[0] if self.range else UNSET if self.choices else ""

    @property
    def tooltip(self) -> str:
        text = self.option.help
        return text[:1].upper() + text[1:] + "."

    def value(self, shown):
        """The core's value of what the parameter node holds: None for the method's default (a number
        below the declared range, or the sentinel)."""
        from volumetricsr.common.options import Count

        below = self.range is not None and shown < self.range[0] + self.step / 2
        if self.unset and (below or self.range is None and shown == self.sentinel):
            return None
        return int(round(shown)) if isinstance(self.rule, Count) else shown


@functools.cache
def offered(cls: type = RunSettings) -> dict[str, Offered]:
    """How the panel offers each field of ``cls`` that sets a declared option, by field name."""
    declared = cls.declarations()
    return {f.name: Offered(f.name, declared[f.metadata["option"]], f.default is None, f.metadata["step"],
                            f.metadata["shown"]) for f in fields(cls) if "option" in f.metadata}


def parameter_fields(cls: type = RunSettings) -> dict[str, tuple[Any, Any]]:
    """The parameter node's fields for ``cls``: name -> (type, default), the type ``Annotated`` with
    the declared range or choices (Slicer's ``WithinRange``/``Choice``, which its GUI connectors
    give the bound spin and combo boxes)."""
    from typing import Annotated

    import slicer
    from slicer.parameterNodeWrapper import Choice, WithinRange

    out = {name: (getattr(slicer, node_class), None) for name, node_class in getattr(cls, "NODES", {}).items()}
    ways = offered(cls)
    for f in fields(cls):
        way = ways.get(f.name)
        if way is None:
            out[f.name] = (type(f.default), f.default)
            continue
        kind = (Annotated[way.kind, WithinRange(*way.range)] if way.range else
                Annotated[way.kind, Choice(list(way.choices))] if way.choices else way.kind)
        out[f.name] = (kind, way.sentinel if way.unset else way.kind(f.default))
    return out


@functools.cache
def parameter_node_class(cls: type = RunSettings, name: str = "VolumetricSRParameterNode") -> type:
    """The ``parameterNodeWrapper`` class of ``cls``'s fields (:func:`parameter_fields`), made once:
    the panel's state, saved with the scene."""
    from slicer.parameterNodeWrapper import parameterNodeWrapper

    spec = parameter_fields(cls)
    namespace = {"__annotations__": {k: kind for k, (kind, _) in spec.items()},
                 **{k: default for k, (_, default) in spec.items() if default is not None},
                 "__doc__": f"Panel state saved with the scene: the fields of {cls.__name__}."}
    return parameterNodeWrapper(type(name, (), namespace))


def settings_from(source, cls: type = RunSettings):
    """A ``cls`` (:class:`RunSettings`) with each field read from the same-named attribute of ``source``,
    in the core's terms (the method's default as None)."""
    ways = offered(cls)
    values = {f.name: getattr(source, f.name) for f in fields(cls) if hasattr(source, f.name)}
    return cls(**{name: ways[name].value(v) if name in ways else v for name, v in values.items()})

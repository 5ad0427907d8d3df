"""Every option a method takes, declared once (:class:`~volumetricsr.common.options.Option`).

A method picks its options from :data:`METHOD_OPTIONS` by name (``rules_of(METHOD_OPTIONS, ...)``,
refining a rule only where it allows less: its own budgets); the ``infer`` and ``infer-batch``
flags, the API's checks and the Slicer panel's ranges and choices are all made from these.
"""
from __future__ import annotations

from volumetricsr.common.options import BATCH, FRACTION, Count, Number, OneOf, Option, Triple, rules_of, text
from volumetricsr.compute.engine import BLENDS
from volumetricsr.compute.networks.clade import NORMS
from volumetricsr.compute.predictors import PRECISIONS
from volumetricsr.data.profiles import PROFILES

BACKENDS = ("torch", "onnx")
#: Every training budget of the methods that train on the volume; each method allows its own.
BUDGETS = ("fast", "balanced", "quality", "prior")
SEED = Count(0, 2**32 - 1)
ON_OFF = OneOf((True, False))

_DECLARED = (
    # the acquired slices: every method (consistency re-thickens with them; selfsr learns with them)
    Option("thickness", Number(0.0, 200.0, " mm"), "the acquired slices' thickness (FWHM) in mm (default: what a "
           "DICOM input states, else estimated from the volume), for consistency and for selfsr's training"),
    Option("profile", OneOf(PROFILES), "the acquired slices' profile (default: estimated from the volume)"),
    # trained models and the engine
    Option("model", text, "model id or card path (default: the method's first); for selfsr a saved per-volume "
           "model, which skips training"),
    Option("backend", OneOf(BACKENDS), "inference backend (default torch)"),
    Option("precision", OneOf(PRECISIONS), "default auto: bf16 autocast where the CPU/GPU has native bf16, else fp32"),
    Option("batch_size", BATCH, "windows (or planes) per network call"),
    Option("window", Triple(Count(1, 4096)), "input window in thick slices and in-plane voxels (smaller: less memory)"),
    Option("overlap", Triple(FRACTION), "fraction of a window shared with its neighbour along each axis"),
    Option("blend", OneOf(BLENDS), "how overlapping windows are combined"),
    Option("compile", OneOf((True, False, "auto")), "tvsrn: torch.compile the network (default auto: when it pays "
           "off for the number of windows)", flag="--no-compile", const=False),
    # methods that train on the volume
    Option("budget", OneOf(BUDGETS), "training budget (default: fast on CPU, quality on GPU; selfsr's prior: the "
           "shipped prior for the volume's modality and factor, no training, seconds)"),
    Option("iterations", Count(1, 1_000_000), "training iterations (overrides the budget's)"),
    Option("seed", SEED, "random seed, for repeatable results (default 0)"),
    Option("save_model", text, "save the per-volume network as a model (an id, or a .json path)"),
    Option("warm_start", text, "start training from this saved model (same protocol)"),
    Option("prior", text, "selfsr, budgets fast and prior: the prior to start from (default auto: the shipped one "
           "for the volume's modality and factor, if any; an id or card; none: from scratch)"),
    # CLADE
    Option("stride", Count(0, 4096), "patch stride in voxels (paper: 6 CT, 12 MR; 0: whole planes, the CPU default)"),
    Option("planes", Count(1, 2), "low-resolution orientations (fast: 1, else 2)"),
    Option("norm", OneOf(NORMS), "instance: the conventional CycleGAN (ablation)"),
    Option("gmap", ON_OFF, "without the gradient-mapping loss (ablation)", flag="--no-gmap", const=False),
    Option("residual", ON_OFF, "the paper's generator mapping, not a residual on its input",
           flag="--plain-generator", const=False),
)
METHOD_OPTIONS = {o.name: o for o in _DECLARED}
#: The command line's groups of method options, in the order ``infer --help`` shows them.
GROUPS = {"the acquired slices (every method)": ("thickness", "profile"),
          "network methods (trained models)": ("model", "backend", "precision", "batch_size", "window", "overlap",
                                               "blend", "compile"),
          "methods that train on the volume (selfsr, clade)": ("budget", "iterations", "seed", "save_model",
                                                               "warm_start", "prior"),
          "CLADE (clade)": ("stride", "planes", "norm", "gmap", "residual")}


def method_rules(*names: str, **refined) -> dict:
    """A method's ``option_rules``: the declared rules of ``names``, ``refined`` where it allows less."""
    return rules_of(METHOD_OPTIONS, *names, **refined)

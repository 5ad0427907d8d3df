"""Every option a method or a run takes, declared once (:class:`~volumetricsr.common.options.Option`).

A method picks its options from :data:`METHOD_OPTIONS` by name (``rules_of(METHOD_OPTIONS, ...)``,
refining a rule only where it allows less: its own budgets); the ``infer`` and ``infer-batch``
flags, the API's checks and the Slicer panel's ranges and choices are all made from these.
"""
from __future__ import annotations

from volumetricsr.common.options import (BATCH, FRACTION, SPACING, THREADS, Count, Number, OneOf, Option, Triple,
                                         rules_of, text)
from volumetricsr.compute.choices import BLENDS, NORMS, PRECISIONS
from volumetricsr.data.profiles import PROFILES

BACKENDS = ("torch", "onnx")
DEVICES = ("auto", "cpu", "cuda", "mps")
AXES = ("i", "j", "k")
#: Every training budget of the methods that train on the volume; each method allows its own.
BUDGETS = ("fast", "balanced", "quality", "prior")
SEED = Count(0, 2**32 - 1)
ON_OFF = OneOf((True, False))
#: The modality of a training task's volumes, which sets their intensity scaling (auto: from their values).
MODALITY = OneOf(("auto", "CT", "MR"))

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


#: The options of a run that are not the method's: where the slices go and what computes them.
RUN_OPTIONS = {o.name: o for o in (
    Option("spacing", SPACING, "target through-plane spacing in mm (default: in-plane, isotropic)"),
    Option("axis", OneOf(AXES), "through-plane axis, as the volume's I, J or K (default: the largest spacing)"),
    Option("device", OneOf(DEVICES), "where networks run (default auto: a GPU if there is one)", default="auto"),
    Option("threads", THREADS, "CPU threads (default: the cores this process may use)"),
    Option("force", ON_OFF, default=False, help="resample even when the volume is already at the target spacing; "
           "run a model on a volume it does not suit"),
    Option("dtype", OneOf(("float32", "input")), "output voxel type: float32 (default) or the input's type",
           default="float32"),
    Option("maps", OneOf(("consistency", "confidence")), "also write these maps beside each output "
           "(NAME_consistency.nii.gz, NAME_confidence.nii.gz)", default=(), many=True),
    Option("workers", Count(1, 1024), "studies at once, each in its own process, the CPU cores split between them "
           "(default: 1; with --ray, one per GPU of the cluster, else one per node)"),
    Option("enforce_consistency", ON_OFF, default=False, help="change the result as little as possible so that "
           "re-thickening it gives the input exactly"),
)}


def method_rules(*names: str, **refined) -> dict:
    """A method's ``option_rules``: the declared rules of ``names``, ``refined`` where it allows less."""
    return rules_of(METHOD_OPTIONS, *names, **refined)

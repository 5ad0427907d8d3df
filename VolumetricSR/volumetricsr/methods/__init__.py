"""Super-resolution methods. Importing this package registers the built-in ones.

The interpolation methods need only NumPy and SciPy; the methods that run networks are registered
only when PyTorch imports, so a fresh install (a new Slicer, say) can already interpolate. Until
then :data:`TORCH_METHODS` names them (a GUI lists them as needing an install) and
:data:`TORCH_PROBLEM` says why they are missing; :func:`load_torch_methods` tries again, e.g.
right after PyTorch was installed into the running process.
"""
from volumetricsr.methods import base
from volumetricsr.methods.base import Method, RunContext, available_methods, get_method, register
from volumetricsr.methods import interpolation  # noqa: F401  (registers linear, bspline, sinc)

#: The methods that need PyTorch: name -> title (as each class's ``title``).
TORCH_METHODS = {"selfsr": "Self-supervised (per volume)", "tvsrn": "TVSRN",
                 "clade": "CLADE (unpaired CycleGAN, per volume)", "ctguided": "CT-guided MRI SR"}
HAS_TORCH, TORCH_PROBLEM = False, "not tried yet"


def load_torch_methods() -> str:
    """Register the methods that need PyTorch; '' when they are, else the reason they are not."""
    global HAS_TORCH, TORCH_PROBLEM
    try:
        import torch  # noqa: F401
        # each registers its method and its training task
        import volumetricsr.methods.clade.method  # noqa: F401
        import volumetricsr.methods.clade.task  # noqa: F401
        import volumetricsr.methods.ctguided.method  # noqa: F401
        import volumetricsr.methods.ctguided.task  # noqa: F401
        import volumetricsr.methods.selfsr.method  # noqa: F401
        import volumetricsr.methods.selfsr.priors  # noqa: F401
        import volumetricsr.methods.selfsr.task  # noqa: F401
        import volumetricsr.methods.tvsrn.method  # noqa: F401
        import volumetricsr.methods.tvsrn.task  # noqa: F401
    except Exception as exc:   # not only ImportError: a torch whose libraries fail to load raises OSError
        HAS_TORCH, TORCH_PROBLEM = False, f"{type(exc).__name__}: {exc}".strip()
    else:
        HAS_TORCH, TORCH_PROBLEM = True, ""
    base.UNAVAILABLE_HINT = "" if not TORCH_PROBLEM else (
        f" The network methods ({', '.join(TORCH_METHODS)}) need PyTorch, which does not import here "
        f"({TORCH_PROBLEM}).")
    return TORCH_PROBLEM


load_torch_methods()

__all__ = ["HAS_TORCH", "TORCH_METHODS", "TORCH_PROBLEM", "Method", "RunContext", "available_methods",
           "get_method", "load_torch_methods", "register"]

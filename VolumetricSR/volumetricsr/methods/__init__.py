"""Super-resolution methods. Importing this package registers the built-in ones.

The interpolation methods need only NumPy and SciPy; the methods that run networks are registered
only when PyTorch can be imported, so a fresh install (a new Slicer, say) can already interpolate.
"""
from .base import Method, RunContext, available_methods, get_method, register
from . import interpolation  # noqa: F401  (registers linear, bspline, sinc)

try:
    import torch  # noqa: F401
except ImportError:          # no torch yet: only the interpolation methods are offered
    HAS_TORCH = False
else:
    HAS_TORCH = True
    from . import selfsr  # noqa: F401  (registers selfsr)
    from . import tvsrn  # noqa: F401  (registers tvsrn)
    from . import clade  # noqa: F401  (registers clade)
    from . import ctguided  # noqa: F401  (registers ctguided)

__all__ = ["HAS_TORCH", "Method", "RunContext", "available_methods", "get_method", "register"]

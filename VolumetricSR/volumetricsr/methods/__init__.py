"""Super-resolution methods. Importing this package registers the built-in ones."""
from .base import Method, RunContext, available_methods, get_method, register
from . import interpolation  # noqa: F401  (registers linear, bspline, sinc)

__all__ = ["Method", "RunContext", "available_methods", "get_method", "register"]

"""VolumetricSR core: through-plane super-resolution of anisotropic CT and MRI volumes.

Plain Python (no Slicer imports): used by the Slicer modules, the command line and the tests.
"""
__version__ = "0.1.0"

from . import threads  # noqa: F401  (first: OpenMP's wait policy must be set before torch loads it)
from . import cpu_memory  # noqa: F401  (first: sets PyTorch's huge-page switch before torch allocates)
from .api import infer, super_resolve
from .errors import (AlreadyIsotropicError, Cancelled, InputError, ModelError, OutputError, TrainingError,
                     VolumetricSRError)
from .geometry import ThroughPlaneGrid, plan_grid, through_plane_axis
from .io import read_volume, write_volume
from .methods import Method, available_methods, get_method, register
from .progress import CancelToken
from .volume import Volume


__all__ = ["AlreadyIsotropicError", "CancelToken", "Cancelled", "InputError", "Method", "ModelError",
           "OutputError", "ThroughPlaneGrid", "TrainingError", "Volume", "VolumetricSRError", "available_methods",
           "get_method", "infer", "plan_grid", "read_volume", "register", "super_resolve",
           "through_plane_axis", "write_volume"]

"""VolumetricSR core: through-plane super-resolution of anisotropic CT and MRI volumes.

Plain Python (no Slicer imports): used by the Slicer modules, the command line and the tests.
"""
from volumetricsr.common import __version__  # noqa: F401

from volumetricsr.compute import threads  # noqa: F401  (first: OpenMP's wait policy must be set before torch loads it)
from volumetricsr.compute import cpu_memory  # noqa: F401  (first: sets PyTorch's huge-page switch before torch allocates)
from volumetricsr.app.api import infer, super_resolve, super_resolve_frames
from volumetricsr.common.errors import (AlreadyIsotropicError, Cancelled, InputError, ModelError, OutputError,
                                        TrainingError, VolumetricSRError)
from volumetricsr.data.geometry import ThroughPlaneGrid, plan_grid, through_plane_axis
from volumetricsr.data.io import read_frames, read_volume, write_frames, write_volume
from volumetricsr.methods import Method, available_methods, get_method, register
from volumetricsr.common.progress import CancelToken
from volumetricsr.data.volume import Volume


__all__ = ["AlreadyIsotropicError", "CancelToken", "Cancelled", "InputError", "Method", "ModelError",
           "OutputError", "ThroughPlaneGrid", "TrainingError", "Volume", "VolumetricSRError", "available_methods",
           "get_method", "infer", "plan_grid", "read_frames", "read_volume", "register", "super_resolve",
           "super_resolve_frames", "through_plane_axis", "write_frames", "write_volume"]

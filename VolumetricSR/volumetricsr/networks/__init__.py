"""Network architectures. Importing this package registers them with :mod:`volumetricsr.models`."""
from .rdn import RDN
from .row_upsampler import RowUpsampler
from .tvsrn import TVSRN, build_tvsrn

__all__ = ["RDN", "RowUpsampler", "TVSRN", "build_tvsrn"]

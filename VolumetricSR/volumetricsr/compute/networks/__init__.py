"""Network architectures. Importing this package registers every one in :data:`ARCHITECTURES`,
the names a model card's ``architecture`` may give."""
from volumetricsr.compute.networks.clade import Generator
from volumetricsr.compute.networks.rdn import RDN
from volumetricsr.compute.networks.registry import ARCHITECTURES, register_architecture
from volumetricsr.compute.networks.row_upsampler import RowUpsampler
from volumetricsr.compute.networks.tvsrn import TVSRN, build_tvsrn

__all__ = ["ARCHITECTURES", "Generator", "RDN", "RowUpsampler", "TVSRN", "build_tvsrn", "register_architecture"]

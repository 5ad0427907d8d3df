"""selfsr's data: a volume's intensities as its network sees them (:func:`network_scale`; the training
pairs themselves come from :class:`~volumetricsr.training.samplers.PatchSampler`)."""
from __future__ import annotations

import numpy as np

from volumetricsr.data.normalization import Normalization

#: The intensity scaling of selfsr's networks (on their model cards).
NORMALIZATION = {"kind": "percentile", "low": 0.5, "high": 99.5}
#: The network sees intensities up to this many percentile ranges beyond the range (no MR or CT tissue
#: lies there); beyond it (metal) the input's values are interpolated back
#: (:func:`~volumetricsr.methods.network.restore_clipped`).
HEADROOM = 1.0


def network_scale(array: np.ndarray) -> tuple[np.ndarray, float, float, tuple[float, float]]:
    """``array`` as the network sees it (float32): robust percentiles to [0, 1], clipped
    :data:`HEADROOM` ranges beyond; with those percentiles ``lo``, ``hi`` and the clipping window."""
    lo, hi = Normalization.from_dict(NORMALIZATION).range_of(array)
    window = lo - HEADROOM * (hi - lo), hi + HEADROOM * (hi - lo)     # what the network learns and returns
    return ((np.clip(array, *window) - lo) / (hi - lo)).astype(np.float32), lo, hi, window

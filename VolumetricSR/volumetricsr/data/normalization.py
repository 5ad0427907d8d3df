"""Intensity normalisation to [0, 1] and back, as a model card specifies it.

- ``{"kind": "window", "low": -1024, "high": 2048}``: a fixed window (CT, in HU; RPLHR-CT's).
- ``{"kind": "percentile", "low": 0.5, "high": 99.5}``: per-volume robust range (MRI, any modality).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from volumetricsr.common.errors import ModelError

#: The CT window (HU) and the robust percentiles used across the project (RPLHR-CT's window).
CT_WINDOW = (-1024.0, 2048.0)
ROBUST_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Normalization:
    kind: str = "window"
    low: float = -1024.0
    high: float = 2048.0

    @classmethod
    def from_dict(cls, spec: dict) -> "Normalization":
        try:
            norm = cls(str(spec["kind"]), float(spec["low"]), float(spec["high"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"Bad intensity normalisation {spec!r}: needs kind, low and high ({exc}).")
        if norm.kind not in ("window", "percentile") or norm.high <= norm.low:
            raise ModelError(f"Bad intensity normalisation {spec!r}: kind must be window or percentile, low < high.")
        return norm

    def range_of(self, array: np.ndarray) -> tuple[float, float]:
        """The intensity range that maps to [0, 1] for this volume."""
        if self.kind == "window":
            return self.low, self.high
        lo, hi = np.percentile(array, [self.low, self.high])
        return float(lo), float(max(hi, lo + 1e-6))

    @staticmethod
    def forward(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return np.clip((array - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)

    @staticmethod
    def inverse(array: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return (array * (hi - lo) + lo).astype(np.float32)


def for_modality(modality: str) -> Normalization:
    """CT: the HU window; anything else: the volume's robust percentiles."""
    return Normalization("window", *CT_WINDOW) if modality == "CT" else Normalization("percentile", *ROBUST_PERCENTILES)


#: Percentiles of a CT volume in HU: air (or the scanner's padding) at the low end, bone below 4000.
HU_LOW_PERCENTILE, HU_AIR_AT_MOST, HU_HIGH_PERCENTILE, HU_TOP_AT_MOST = 1.0, -500.0, 99.5, 4000.0


def looks_like_hu(array: np.ndarray) -> bool:
    """True when ``array`` has the intensity profile of a CT in Hounsfield units (air near -1000)."""
    sample = array.ravel()[::max(1, array.size // 1_000_000)]
    low, high = np.percentile(sample, [HU_LOW_PERCENTILE, HU_HIGH_PERCENTILE])
    return bool(low <= HU_AIR_AT_MOST and high <= HU_TOP_AT_MOST)


def guess_modality(array: np.ndarray, metadata: Optional[dict] = None) -> Optional[str]:
    """'CT', 'MR' or None (unknown): the DICOM modality (0008,0060) when stated, else CT for
    Hounsfield units, MR for non-negative intensities."""
    stated = str((metadata or {}).get("dicom", {}).get("0008|0060", "")).strip().upper()
    if stated in ("CT", "MR"):
        return stated
    if looks_like_hu(array):
        return "CT"
    sample = array.ravel()[::max(1, array.size // 1_000_000)]
    return "MR" if np.percentile(sample, 0.1) >= 0 else None

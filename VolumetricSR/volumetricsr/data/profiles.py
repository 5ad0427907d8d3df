"""Slice profiles: how much each thin slice contributes to a thick slice.

A thick slice of ``thickness`` mm averages the object over its slice profile: ``rect`` (ideal slab,
width = thickness), ``gaussian`` (FWHM = thickness) or ``triangle`` (FWHM = thickness, base twice
that). Weights are the profile integrated over each thin slice's extent, so they stay exact for
thicknesses that are not multiples of the thin spacing.
"""
from __future__ import annotations

import numpy as np

from volumetricsr.common.options import Number, OneOf, Option

PROFILES = ("gaussian", "rect", "triangle")
_SUBSAMPLES = 64
#: The profile every simulation assumes unless told: (shape, FWHM / slice spacing) = Gaussian, contiguous.
DEFAULT_PROFILE = ("gaussian", 1.0)
#: The rule for a thickness ratio (FWHM / slice spacing), as the API's thickness limit (10 spacings).
THICKNESS_RATIO = Number(0.0, 10.0)


#: ``--profile`` and ``--thickness-ratio`` of a training command that simulates thick slices.
PROFILE_OPTIONS = (
    Option("profile", OneOf(PROFILES), "slice profile of the simulated thick slices (as simulate-thick and infer "
           "--profile)", default=DEFAULT_PROFILE[0]),
    Option("thickness_ratio", THICKNESS_RATIO, "their FWHM as a multiple of the slice spacing (< 1: gaps, > 1: overlap)",
           default=DEFAULT_PROFILE[1], metavar="R"),
)


def thickness_of(profile: tuple, spacing: float) -> float:
    """The FWHM in mm of ``profile`` ``(shape, FWHM / spacing)`` for slices ``spacing`` mm apart."""
    return float(profile[1]) * spacing


def profile_density(profile: str, t: np.ndarray, thickness: float) -> np.ndarray:
    """Unnormalised profile value at offset ``t`` mm from the slice centre."""
    if profile == "rect":
        return (np.abs(t) <= thickness / 2).astype(float)
    if profile == "triangle":
        return np.clip(1 - np.abs(t) / thickness, 0, None)
    if profile == "gaussian":
        sigma = thickness / (2 * np.sqrt(2 * np.log(2)))
        return np.exp(-0.5 * (t / sigma) ** 2)
    raise ValueError(f"Unknown slice profile {profile!r}; use one of {', '.join(PROFILES)}.")


def slice_profile_weights(profile: str, thickness: float, spacing: float) -> np.ndarray:
    """Normalised weights over thin slices at offsets ``-r..r`` (odd length, centre = offset 0)."""
    if thickness <= 0 or spacing <= 0:
        raise ValueError("Slice thickness and spacing must be positive.")
    support = {"rect": 0.5, "triangle": 1.0, "gaussian": 1.5}[profile] * thickness
    radius = int(np.ceil(support / spacing + 0.5))
    offsets = np.arange(-radius, radius + 1)
    sub = (np.arange(_SUBSAMPLES) + 0.5) / _SUBSAMPLES - 0.5
    t = (offsets[:, None] + sub[None, :]) * spacing
    w = profile_density(profile, t, thickness).mean(axis=1)
    w = w / w.sum()
    keep = np.nonzero(w > 1e-8)[0]
    half = max(radius - keep[0], keep[-1] - radius)
    return w[radius - half:radius + half + 1] / w[radius - half:radius + half + 1].sum()

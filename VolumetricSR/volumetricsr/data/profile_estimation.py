"""The slice profile and thickness of a thick-slice volume, estimated from the volume itself.

The idea (ESPRESO's, here solved in closed form): the object looks about the same along every axis,
so once blurred by the slice profile ``h`` along an in-plane axis A it should look, along A, as the
acquired volume blurred by ``h`` along the other in-plane axis B looks through-plane: both are the
object blurred by ``h`` along the axis looked along and by the true profile across it. "Looks" is
the variogram ``D(t) = E[(x(p + t) - x(p))^2]`` at 1..:data:`LAGS` slice spacings. Both sides
follow from variograms of the acquired volume alone (for increments of a stationary field, with
``g`` the autocorrelation of ``h``: ``D_h(t) = sum_u g(u) [(D(t + u) + D(t - u)) / 2 - D(u)]``,
the through-plane side using the variogram at displacements that mix slices and axis B), so every
candidate costs a few dot products. Candidates: every shape of :data:`~.profiles.PROFILES` over FWHM
from a quarter to three times the slice spacing (gaps and overlaps). Only the curve's shape is
matched (a common scale is left free): real anatomy is not equally busy along every axis.

What is estimated is the blur of the through-plane axis relative to the in-plane axes, which is
what a self-supervised method must undo: on a volume resliced from thinner slices it includes the
thin slices' own profile. The confidence says how tightly the data pin the FWHM down:
``fwhm_range_mm`` spans every candidate (of any shape) whose misfit is within :data:`TOLERANCE` of
the best;
``high`` when that range lies within 15 % of the estimate, ``medium`` within 35 %, else ``low``.

Erring wide costs far more than erring narrow (measured, docs/selfsr-slice-profile-and-priors.md:
slices assumed twice as thick as they are put selfsr 1-1.6 dB below B-spline, half as thick costs
it little), and structures that run along the slice axis (a body outline, a spine, vessels) make
the through-plane axis look smoother than the slices alone make it, with a fit as close as a true
overlap's. So an estimate wider than the slice spacing is not used: the FWHM is the spacing, and
the shape is estimated again at that FWHM (with the width pinned, the shape is told far more
reliably than by the joint fit, which trades width for shape); ``capped_from_mm`` keeps what was
estimated. Overlap is reported, not used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from volumetricsr.data.profiles import PROFILES, slice_profile_weights

#: Through-plane lags (in slices) whose variograms are matched.
LAGS = 3
#: FWHM candidates, as multiples of the slice spacing (log-spaced, about 2 % apart).
RATIOS = np.exp(np.linspace(np.log(0.25), np.log(3.0), 126))
#: Candidates within this of the best misfit (plus half of it) count as fitting as well.
TOLERANCE = 0.003
#: (A, B) stack axes: blur along A and look along A, against blur along B and look through-plane.
PAIRS = ((2, 1), (1, 2))
#: Voxels each variogram is computed over (evenly thinned beyond that): about a second in all.
VOXELS = 1_000_000


@dataclass(frozen=True)
class ProfileEstimate:
    """An estimated slice profile: shape, FWHM (mm) and how tightly the data pin it down."""

    profile: str
    thickness: float                 # FWHM in mm (the width of a rect profile)
    spacing: float                   # the slice spacing it was estimated at
    confidence: str                  # high, medium or low
    fwhm_range_mm: tuple[float, float]
    misfit: float                    # RMS log-variogram mismatch of the best candidate
    shape_misfits: dict              # the best misfit of every shape considered
    capped_from_mm: Optional[float] = None   # the estimated FWHM when it was capped at the spacing

    def describe(self) -> str:
        lo, hi = self.fwhm_range_mm
        kind = "gap" if self.thickness < 0.95 * self.spacing else \
            "overlap" if self.thickness > 1.05 * self.spacing else "contiguous"
        capped = f"; {self.capped_from_mm:.2f} mm estimated, capped" if self.capped_from_mm else ""
        return (f"{self.profile} FWHM {self.thickness:.2f} mm every {self.spacing:.3g} mm ({kind}; "
                f"{lo:.2f}-{hi:.2f} mm fit as well; {self.confidence} confidence{capped})")

    def summary(self) -> dict:
        return {**asdict(self), "fwhm_range_mm": list(self.fwhm_range_mm)}


def robust_clip(stack: np.ndarray) -> np.ndarray:
    """``stack`` as float32 clipped to its 0.5-99.5 percentiles, a padding value (the minimum, when
    it fills more than 1 % of the volume, as outside a CT's field of view) left out of them."""
    values = stack.ravel()[::max(1, stack.size // 2_000_000)]
    floor = values.min()
    if np.mean(values == floor) > 0.01:
        values = values[values > floor]
    if values.size == 0:
        return np.zeros(stack.shape, np.float32)
    lo, hi = np.percentile(values, [0.5, 99.5])
    return np.clip(stack, lo, hi).astype(np.float32)


def thinned(x: np.ndarray, keep: int) -> np.ndarray:
    """``x`` (slices, rows, cols) with every n-th line of in-plane axis 3 - ``keep`` left, n such that
    about :data:`VOXELS` remain: full lines along ``keep`` and every slice."""
    other = 3 - keep
    step = max(1, int(np.ceil(x.size / VOXELS)))
    return np.take(x, np.arange(0, x.shape[other], min(step, x.shape[other])), axis=other)


def variogram(x: np.ndarray, axis: int, max_lag: int, across: int = 0) -> np.ndarray:
    """Mean squared increment of ``x`` along ``axis`` at lags ``0..max_lag``; with ``across`` > 0, the
    increment from slice ``k`` to slice ``k + across`` at those lags along ``axis`` (in-plane), and
    at the negative lags too (``-max_lag..max_lag``)."""
    n = x.shape[axis]
    lags = range(-max_lag, max_lag + 1) if across else range(max_lag + 1)
    top = x[across:] if across else x
    bottom = x[:x.shape[0] - across] if across else x
    out = []
    for m in lags:
        if abs(m) >= n:
            out.append(out[-1] if out else 0.0)
            continue
        a = np.take(top, np.arange(max(0, m), n + min(0, m)), axis=axis)
        b = np.take(bottom, np.arange(max(0, -m), n - max(0, m)), axis=axis)
        out.append(float(np.mean(np.square(a - b), dtype=np.float64)))
    return np.array(out)


def _autocorrelation(shape: str, fwhm: float, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    k = slice_profile_weights(shape, fwhm, spacing)
    g = np.correlate(k, k, mode="full")
    return g, np.arange(len(g)) - len(g) // 2


def _variograms(x: np.ndarray, in_plane_spacing: tuple[float, float], spacing: float, widest: float,
                shapes: tuple[str, ...]) -> list[tuple]:
    """For each pair of :data:`PAIRS`, what every candidate up to FWHM ``widest`` mm needs: the
    in-plane spacings along A and B, the slice-and-B variograms, the B and A variograms."""
    out = []
    for along, across in PAIRS:
        da, db = in_plane_spacing[along - 1], in_plane_spacing[across - 1]
        reach = max(len(slice_profile_weights(s, widest, min(da, db))) for s in shapes) + 1
        xb = thinned(x, across)
        mixed = np.stack([variogram(xb, across, reach, across=j) for j in range(1, LAGS + 1)])
        flat_a = variogram(thinned(x, along), along, int(np.ceil(LAGS * spacing / da)) + reach)
        out.append((da, db, reach, mixed, variogram(xb, across, reach), flat_a))
    return out


def _misfits(variograms: list[tuple], spacing: float, shapes: tuple[str, ...], ratios: np.ndarray) -> dict:
    """RMS log-variogram mismatch (a free common scale) of every shape at every FWHM ``ratios`` x ``spacing``."""
    misfit = {s: np.zeros(len(ratios)) for s in shapes}
    for da, db, reach, mixed, flat_b, flat_a in variograms:   # blur along A, look along A | along B, look through
        t = np.arange(1, LAGS + 1)[:, None] * spacing / da

        def at(lag):         # the in-plane variogram along A at (fractional) lags; it is even
            return np.interp(np.abs(lag), np.arange(len(flat_a)), flat_a)

        for shape in shapes:
            for i, r in enumerate(ratios):
                g, u = _autocorrelation(shape, r * spacing, db)
                through = (g * (0.5 * (mixed[:, reach + u] + mixed[:, reach - u]) - flat_b[np.abs(u)])).sum(1)
                g, u = _autocorrelation(shape, r * spacing, da)
                inplane = (g * (0.5 * (at(t + u) + at(t - u)) - at(u))).sum(1)
                e = np.log(np.maximum(through, 1e-12)) - np.log(np.maximum(inplane, 1e-12))
                misfit[shape][i] += np.mean((e - e.mean()) ** 2) / 2
    return {s: np.sqrt(m) for s, m in misfit.items()}


def best_shape(misfit: dict) -> str:
    return min(misfit, key=lambda s: misfit[s].min())


def estimate_profile(stack: np.ndarray, in_plane_spacing: tuple[float, float], spacing: float,
                     shapes: tuple[str, ...] = PROFILES, thickness: Optional[float] = None) -> ProfileEstimate:
    """The slice profile of ``stack`` (slices, rows, cols) whose slices lie ``spacing`` mm apart and
    whose rows and columns ``in_plane_spacing`` mm apart.

    ``shapes``: the shapes to consider (one, when the user stated it); ``thickness``: a stated FWHM,
    leaving only the shape to estimate.
    """
    n = stack.shape[0]
    if n < LAGS + 2:
        raise ValueError(f"{n} slices are too few to estimate a slice profile (need {LAGS + 2}).")
    ratios = RATIOS if thickness is None else np.array([thickness / spacing])
    variograms = _variograms(robust_clip(stack), in_plane_spacing, spacing, ratios.max() * spacing, shapes)
    misfit = _misfits(variograms, spacing, shapes, ratios)
    shape = best_shape(misfit)
    i = int(np.argmin(misfit[shape]))
    best, fwhm = float(misfit[shape][i]), float(ratios[i] * spacing)
    near = np.concatenate([ratios[m <= 1.5 * best + TOLERANCE] for m in misfit.values()])
    lo, hi = float(near.min() * spacing), float(near.max() * spacing)
    spread = max(fwhm - lo, hi - fwhm) / fwhm
    confidence = "high" if spread <= 0.15 else "medium" if spread <= 0.35 else "low"
    capped = round(fwhm, 3) if fwhm > spacing and thickness is None else None
    used = best_shape(_misfits(variograms, spacing, shapes, np.array([1.0]))) if capped else shape
    return ProfileEstimate(used, round(spacing if capped else fwhm, 3), float(spacing), confidence,
                           (round(lo, 3), round(hi, 3)), round(best, 4),
                           {s: round(float(m.min()), 4) for s, m in misfit.items()}, capped)

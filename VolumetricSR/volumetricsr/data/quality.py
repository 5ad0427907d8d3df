"""No-reference image quality: PIQE, edge sharpness and SNR (what CLADE's paper reports, useful for
any method where no thin reference exists).

- :func:`piqe` (Venkatanath et al. 2015) as MATLAB's ``piqe`` computes it, which the paper used:
  16x16 blocks of the mean-subtracted contrast-normalised image (7x7 Gaussian, sigma 7/6), blocks with
  variance above 0.1 are active; a block is distorted when a 6-pixel run of one of its edges is flat
  (std < 0.1) or by the centre/surround noise criterion; score in [0, 100], lower is better.
  Intensities: an image in [0, 1] becomes ``round(255 * I)`` (MATLAB's scaling for floating point
  data; ``pypiqe`` scales each image by its own maximum instead, which makes scores depend on the
  brightest pixel); slices are windowed to [0, 1] first (:func:`window_of`).
- :func:`edge_sharpness`: the maximum intensity gradient across a border, in mm^-1 of windowed
  intensity (a step from 0 to 1 blurred by a Gaussian of sigma s mm scores 1 / (s sqrt(2 pi))):
  intensity profiles along the border normal, Savitzky-Golay filtered (window 5, order 3) and
  differentiated, as in the paper. Borders come from a mask (its boundary) or, automatically, from
  the Otsu threshold of the image itself; the median over border points is reported.
- :func:`snr`: mean of a signal region over the standard deviation of a noise region, in the
  volume's own intensities (regions as masks, or :func:`auto_regions`: bright structures over the
  air outside the body, as the paper's bone / air ROIs in CT).

:func:`no_reference` computes them on the planes that contain the through-plane axis (for an axial
acquisition: sagittal and coronal), on evenly spaced planes of the central half of the volume.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage
from scipy.signal import savgol_filter

from volumetricsr.data.geometry import AxisLike, through_plane_axis
from volumetricsr.data.normalization import for_modality, looks_like_hu
from volumetricsr.data.volume import Volume

BLOCK = 16
ACTIVITY, IMPAIRED, SEGMENT = 0.1, 0.1, 6
BRIGHT = 0.05
NOISE_FLOOR = 1e-3


def _mscn(image: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients (7x7 Gaussian of sigma 7/6, edges replicated)."""
    x = np.arange(7) - 3.0
    taps = np.exp(-x ** 2 / (2 * (7 / 6) ** 2))
    taps /= taps.sum()

    def blur(a):
        return ndimage.correlate1d(ndimage.correlate1d(a, taps, 0, mode="nearest"), taps, 1, mode="nearest")

    mu = blur(image)
    sigma = np.sqrt(np.abs(blur(image * image) - mu * mu))
    return (image - mu) / (sigma + 1)


def piqe(image: np.ndarray) -> float:
    """PIQE score of a 2-D image with intensities in [0, 1] (0 best, 100 worst)."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"piqe needs a 2-D image, got shape {image.shape}.")
    pad = [(0, (-n) % BLOCK) for n in image.shape]
    image = np.round(255 * np.clip(np.pad(image, pad, mode="symmetric"), 0, 1))
    norm = _mscn(image)
    h, w = norm.shape
    blocks = norm.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).swapaxes(1, 2).reshape(-1, BLOCK, BLOCK)
    var = blocks.var(axis=(1, 2), ddof=1)
    active = blocks[var > ACTIVITY]
    var = var[var > ACTIVITY]
    if not len(active):
        return 100.0
    # noticeable distortion: a flat run of SEGMENT pixels on one of the four block edges
    edges = np.stack([active[:, 0, :], active[:, :, -1], active[:, -1, :], active[:, :, 0]], 1)
    runs = np.lib.stride_tricks.sliding_window_view(edges, SEGMENT, axis=2)
    impaired = (runs.std(axis=-1, ddof=1) < IMPAIRED).any(axis=(1, 2))
    # noise: the centre columns' spread against the rest. As MATLAB's piqe (and pypiqe), the centre is
    # columns 7 and 8 and the surround drops columns 7 and 9 (its second deletion indexes the reduced block).
    centre = active[:, :, 7:9].reshape(len(active), -1).std(axis=1, ddof=1)
    surround = np.delete(active, [7, 9], axis=2).reshape(len(active), -1).std(axis=1, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.nan_to_num(centre / surround, nan=0.0)
        sigma = np.sqrt(var)
        beta = np.abs(sigma - ratio) / np.maximum(sigma, ratio)
    noisy = sigma > 2 * beta
    distortion = np.sum(impaired * (1 - var) + noisy * var)
    return float((distortion + 1) / (1 + len(active)) * 100)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of ``values``."""
    hist, edges = np.histogram(values, bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    return float(centres[int(np.nanargmax(between[:-1]))])


def border_of(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` that touch the outside (4-connected)."""
    mask = mask.astype(bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=1)


def edge_sharpness(image: np.ndarray, spacing: tuple[float, float], border: Optional[np.ndarray] = None,
                   half_length: float = 4.0, max_points: int = 2000,
                   rng: Optional[np.random.Generator] = None) -> tuple[float, int]:
    """Median maximum gradient (mm^-1) across ``border`` of a 2-D image in [0, 1], and the point count.

    ``border``: boolean mask of border pixels (default: :func:`border_of` the Otsu foreground).
    At each border point (up to ``max_points``, drawn at random) the intensity is sampled along the
    gradient direction of the Gaussian-smoothed image, ``half_length`` mm either side, one sample per
    in-plane pixel spacing, then Savitzky-Golay filtered and differentiated.
    """
    image = np.asarray(image, dtype=np.float64)
    spacing = tuple(float(s) for s in spacing)
    if border is None:
        if image.max() - image.min() < 1e-6:
            return float("nan"), 0
        border = border_of(image > otsu(image))
    points = np.argwhere(border)
    if len(points) > max_points:
        points = points[(rng or np.random.default_rng(0)).choice(len(points), max_points, replace=False)]
    if not len(points):
        return float("nan"), 0
    smooth = ndimage.gaussian_filter(image, 1.0)
    g_r, g_c = (np.gradient(smooth, s, axis=a) for a, s in enumerate(spacing))
    normal = np.stack([g_r[tuple(points.T)], g_c[tuple(points.T)]], 1)
    length = np.linalg.norm(normal, axis=1)
    keep = length > 1e-9
    points, normal = points[keep], normal[keep] / length[keep, None]
    if not len(points):
        return float("nan"), 0
    step = min(spacing)
    offsets = np.arange(-half_length, half_length + step / 2, step)                 # mm along the normal
    coords = points[:, None, :] + offsets[None, :, None] * normal[:, None, :] / np.array(spacing)
    profiles = ndimage.map_coordinates(image, coords.transpose(2, 0, 1), order=3, mode="nearest")
    slope = savgol_filter(profiles, 5, 3, deriv=1, delta=step, axis=1)
    return float(np.median(np.abs(slope).max(axis=1))), int(len(points))


def auto_regions(array: np.ndarray, erosion: int = 2, through: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(signal, noise)`` masks as the paper draws them: signal in the bright structures (the
    brightest ``BRIGHT`` of the Otsu foreground: bone in CT), noise in the air outside the body (in
    each acquired slice, across array axis ``through``, the background connected to the slice's
    border, so not the lungs), eroded; the constant fill outside a scanner's field of view (the
    volume's minimum) left out."""
    floor = array.min()
    inside = array > floor
    threshold = otsu(array[inside] if inside.any() else array)
    foreground = array > threshold
    bright = np.percentile(array[foreground], 100 * (1 - BRIGHT)) if foreground.any() else threshold
    structure = ndimage.generate_binary_structure(array.ndim, 1)
    signal = ndimage.binary_erosion(array > bright, structure, 1)
    outside = np.zeros(array.shape, bool)
    for k in range(array.shape[through]):
        labels, _ = ndimage.label(~np.take(foreground, k, axis=through))
        edge = np.unique(np.concatenate([labels[[0, -1]].ravel(), labels[:, [0, -1]].ravel()]))
        index = [slice(None)] * array.ndim
        index[through] = k
        outside[tuple(index)] = np.isin(labels, edge[edge > 0])
    noise = ndimage.binary_erosion(outside, structure, erosion) & inside
    return signal, noise


def snr(array: np.ndarray, signal: np.ndarray, noise: np.ndarray) -> dict:
    """Mean over ``signal`` divided by the noise SD over ``noise`` (boolean masks); the SD is the
    robust one (1.4826 x the median absolute deviation), so that a table or a blanket in the air
    region does not count as noise, or the plain one where that is 0 (a background quantised to a
    few values); no SNR where the noise is below ``NOISE_FLOOR`` of the signal (a background the
    scanner or a resampling zeroed has no noise to measure)."""
    s, n = array[signal.astype(bool)], array[noise.astype(bool)].astype(np.float64)
    if s.size == 0 or n.size < 2:
        return {"snr": None, "signal": None, "noise": None, "note": "empty signal or noise region"}
    sd = float(1.4826 * np.median(np.abs(n - np.median(n)))) or float(n.std(ddof=1))
    out = {"snr": None, "signal": float(s.mean()), "noise": sd}
    if sd <= NOISE_FLOOR * abs(out["signal"]):
        return {**out, "note": "the noise region holds (almost) no noise: zeroed or masked background"}
    return {**out, "snr": out["signal"] / sd}


def window_of(array: np.ndarray) -> tuple[float, float]:
    """The intensity window mapped to [0, 1], as the networks scale: the CT window for HU data, else
    the robust percentiles (:func:`~volumetricsr.data.normalization.for_modality`)."""

    return for_modality("CT" if looks_like_hu(array) else "MR").range_of(array)


def plane_indices(size: int, count: int) -> np.ndarray:
    """Up to ``count`` evenly spaced indices in the central half of ``range(size)``."""
    lo, hi = size // 4, max(size // 4 + 1, (3 * size) // 4)
    return np.unique(np.linspace(lo, hi - 1, min(count, hi - lo)).round().astype(int))


def no_reference(volume: Volume, axis: AxisLike = None, window: Optional[tuple[float, float]] = None,
                 edges: Optional[np.ndarray] = None, regions: Optional[tuple[np.ndarray, np.ndarray]] = None,
                 planes: int = 32) -> dict:
    """PIQE and edge sharpness on the planes that contain the through-plane axis (each orientation
    separately: mean and SD over planes), and the volume's SNR.

    ``axis``: the acquisition's through-plane axis (an isotropic result cannot tell it: default K);
    ``edges``: a mask volume whose boundary gives the borders; ``regions``: ``(signal, noise)`` masks.
    """
    a = through_plane_axis(volume, axis)
    array = volume.array
    lo, hi = window or window_of(array)
    scaled = np.clip((array.astype(np.float32) - lo) / (hi - lo), 0, 1)
    spacing = volume.spacing[::-1]                      # per array axis (k, j, i)
    through = 2 - a
    out = {"axis": "IJK"[a], "window": [lo, hi], "orientations": {}}
    for fixed in (ax for ax in range(3) if ax != through):
        name = f"across {'IJK'[2 - fixed]}"
        in_plane = tuple(spacing[ax] for ax in range(3) if ax != fixed)
        scores, sharp, points = [], [], 0
        for index in plane_indices(array.shape[fixed], planes):
            image = np.take(scaled, index, axis=fixed)
            scores.append(piqe(image))
            border = None if edges is None else border_of(np.take(edges, index, axis=fixed) > 0)
            value, count = edge_sharpness(image, in_plane, border)
            if count:
                sharp.append(value)
                points += count
        out["orientations"][name] = {
            "planes": len(scores), "piqe": float(np.mean(scores)), "piqe_sd": float(np.std(scores)),
            "edge_sharpness": float(np.median(sharp)) if sharp else None, "edge_points": points}
    signal, noise = regions if regions is not None else auto_regions(array, through=through)
    out["snr"] = snr(array, signal, noise)
    return out

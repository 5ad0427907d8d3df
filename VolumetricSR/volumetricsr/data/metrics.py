"""PSNR and SSIM, with the RPLHR-CT evaluation protocol.

``rplhr`` (Yu et al., MICCAI 2022, and its public code): HU clipped to [-1024, 2048] and scaled to
[0, 1]; the first and last 5 thin slices are left out; PSNR from the 3-D mean squared error (peak
1); SSIM per slice (11x11 Gaussian, sigma 1.5, zero-padded, C1 = 0.01^2, C2 = 0.03^2), averaged.
``plain``: intensities scaled by the reference's range, every slice, same PSNR and SSIM.
Slices are those across the through-plane axis of the reference.
"""
from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import correlate1d

from volumetricsr.common.errors import InputError
from volumetricsr.data.geometry import AxisLike, through_plane_axis, to_stack
from volumetricsr.data.io import image_from_volume
from volumetricsr.data.volume import Volume

PROTOCOLS = ("rplhr", "plain")
RPLHR_WINDOW = (-1024.0, 2048.0)
RPLHR_SKIP = 5


def psnr(pred: np.ndarray, ref: np.ndarray, peak: float = 1.0) -> float:
    mse = float(np.mean((pred.astype(np.float64) - ref.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def _gaussian_taps(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size) - size // 2
    g = np.exp(-x ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _blur(t: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """The 11x11 Gaussian window as two separable passes over each slice, zero outside."""
    t = correlate1d(t, taps, axis=-1, mode="constant")
    return correlate1d(t, taps, axis=-2, mode="constant")


def ssim_per_slice(pred: np.ndarray, ref: np.ndarray, peak: float = 1.0, batch: int = 16) -> np.ndarray:
    """SSIM of each 2-D slice ``pred[s]`` against ``ref[s]`` (stacks ``(slices, rows, cols)``)."""
    taps = _gaussian_taps()
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    out = []
    for s0 in range(0, pred.shape[0], batch):
        a = np.asarray(pred[s0:s0 + batch], dtype=np.float64)
        b = np.asarray(ref[s0:s0 + batch], dtype=np.float64)
        mu_a, mu_b = _blur(a, taps), _blur(b, taps)
        var_a, var_b = _blur(a * a, taps) - mu_a ** 2, _blur(b * b, taps) - mu_b ** 2
        cov = _blur(a * b, taps) - mu_a * mu_b
        ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
        out.append(ssim_map.mean(axis=(1, 2)))
    return np.concatenate(out)


def on_grid(volume: Volume, like: Volume, interpolator: int = sitk.sitkLinear, outside: float = math.nan) -> np.ndarray:
    """``volume``'s intensities (float32) at the voxels of ``like``'s grid; ``outside`` where it has none."""
    image = sitk.Resample(image_from_volume(volume.with_array(volume.array.astype(np.float32))),
                          image_from_volume(like), sitk.Transform(), interpolator, outside, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(image)


def align(pred: Volume, ref: Volume, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``ref`` as stacks over the slices both cover, compared at the same physical points.

    Grids that differ only by whole slices are cropped; anything else is resampled (linear) onto
    the reference grid, keeping only slices that lie wholly inside ``pred``.
    """
    if pred.same_grid(ref):
        return to_stack(pred.array, axis), to_stack(ref.array, axis)
    p = to_stack(on_grid(pred, ref), axis)
    inside = np.isfinite(p).reshape(p.shape[0], -1).all(axis=1)
    if not inside.any():
        raise InputError("The prediction and the reference do not overlap in space; nothing to compare.")
    return p[inside], to_stack(ref.array, axis)[inside]


def evaluate(pred: Volume, ref: Volume, protocol: str = "rplhr", axis: AxisLike = None) -> dict:
    """PSNR (dB) and mean slice SSIM of ``pred`` against ``ref``."""
    if protocol not in PROTOCOLS:
        raise InputError(f"Unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}.")
    a = through_plane_axis(ref, axis)
    p, r = align(pred, ref, a)
    if protocol == "rplhr":
        lo, hi = RPLHR_WINDOW
        if p.shape[0] <= 2 * RPLHR_SKIP:
            raise InputError(f"Only {p.shape[0]} common slices; the RPLHR protocol leaves out {RPLHR_SKIP} at each end.")
        p, r = p[RPLHR_SKIP:-RPLHR_SKIP], r[RPLHR_SKIP:-RPLHR_SKIP]
    else:
        lo, hi = float(r.min()), float(r.max())
        hi = hi if hi > lo else lo + 1.0
    p = np.clip((p.astype(np.float32) - lo) / (hi - lo), 0, 1)
    r = np.clip((r.astype(np.float32) - lo) / (hi - lo), 0, 1)
    return {"protocol": protocol, "psnr": psnr(p, r), "ssim": float(ssim_per_slice(p, r).mean()),
            "slices": int(p.shape[0]), "axis": "IJK"[a]}


#: lpips' AlexNet: the torchvision ``features`` layers each of its five slices holds.
LPIPS_SLICES = (0, 2, 5, 8, 10, 12)


def lpips_scorer(weights: "str | None"):
    """LPIPS (Zhang et al. 2018; AlexNet, the ``lpips`` package and its own linear layers) as a
    function of two stacks of slices in the same intensity range. ``weights``: torchvision's AlexNet
    state dict (``alexnet-owt-7be5be79.pth``), read locally with ``weights_only``; nothing is
    downloaded. Raises :class:`InputError` saying what is missing."""
    from pathlib import Path

    if not weights:
        raise InputError("LPIPS needs AlexNet's pretrained weights: give torchvision's alexnet-owt-7be5be79.pth "
                         "(nothing is downloaded).")
    if not Path(weights).is_file():
        raise InputError(f"LPIPS weights {weights} do not exist.")
    try:
        import lpips
        import torch
    except ImportError:
        raise InputError("LPIPS needs the lpips package (pip install lpips; it brings torchvision).") from None
    net = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)     # the backbone comes from ``weights``
    features = torch.load(weights, map_location="cpu", weights_only=True)
    net.net.load_state_dict({f"slice{s}.{i}.{p}": features[f"features.{i}.{p}"]
                             for s, (a, b) in enumerate(zip(LPIPS_SLICES, LPIPS_SLICES[1:]), 1) for i in range(a, b)
                             for p in ("weight", "bias") if f"features.{i}.{p}" in features})

    def score(pred: np.ndarray, ref: np.ndarray) -> float:
        lo, hi = float(ref.min()), float(max(ref.max(), ref.min() + 1e-6))

        def rgb(a: np.ndarray):
            return torch.from_numpy(np.clip((a - lo) / (hi - lo), 0, 1) * 2 - 1).float()[None, None].repeat(1, 3, 1, 1)
        with torch.no_grad():
            return float(np.mean([float(net(rgb(p), rgb(r))) for p, r in zip(pred, ref)]))
    return score


def lpips_of(pred: Volume, ref: Volume, weights: str, axis: AxisLike = None) -> float:
    """Mean LPIPS over the slices across the through-plane axis (lower is more alike)."""
    score = lpips_scorer(weights)
    p, r = align(pred, ref, through_plane_axis(ref, axis))
    return score(p, r)

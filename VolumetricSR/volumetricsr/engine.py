"""Sliding-window, patch-stitched inference: one engine for every network method.

A predictor maps a batch of input windows ``(B, C, d, h, w)`` to output windows
``(B, C', d', h', w')``. An input window starting at voxel ``p`` lands in the output at ``p * scale``
(per axis), so windows whose output depth differs from their input depth work: TVSRN's 4 thick
slices in, ``(4-1)*5+1`` thin slices out, has ``scale=(5, 1, 1)``. The output size along an axis of
input size ``n`` is ``(n - window) * scale + out_window``.

Windows cover the volume on a regular grid (the last window of each axis is flush with the end);
overlapping outputs are blended with a uniform or Gaussian importance map. Because the window grid
is a Cartesian product and the map is separable, the sum of weights at every output voxel is the
outer product of three 1-D sums, so no weight volume is ever stored: memory is the input, the
output accumulator and one batch. Windows stream to the predictor's device; the accumulator lives
on the CPU unless ``accumulate_on`` names the device.
"""
from __future__ import annotations

import itertools
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .progress import CancelToken, ProgressCallback, report

Triple = tuple[int, int, int]
Predictor = Callable[[torch.Tensor], torch.Tensor]
BLENDS = ("gaussian", "uniform")


def _triple(value, name: str) -> Triple:
    t = tuple(value) if isinstance(value, Sequence) else (value,) * 3
    if len(t) != 3:
        raise ValueError(f"{name} needs 3 values (depth, rows, cols), got {value!r}.")
    return t


def window_starts(size: int, window: int, stride: int) -> list[int]:
    """Start of every window along one axis; the last one is flush with the end."""
    if size <= window:
        return [0]
    starts = list(range(0, size - window + 1, max(1, stride)))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def importance_1d(length: int, blend: str, sigma_scale: float = 0.125) -> torch.Tensor:
    """Blending weight along one axis of an output window (Gaussian: peak 1 at the centre)."""
    if blend == "uniform" or length == 1:
        return torch.ones(length)
    if blend != "gaussian":
        raise ValueError(f"Unknown blend {blend!r}; use one of {BLENDS}.")
    x = torch.arange(length, dtype=torch.float64) - (length - 1) / 2
    w = torch.exp(-0.5 * (x / (sigma_scale * length)) ** 2)
    return w.clamp_min(1e-3).float()


@torch.no_grad()
def sliding_window_inference(
    inputs: Union[torch.Tensor, np.ndarray],
    predictor: Predictor,
    window: Union[int, Sequence[int]],
    *,
    scale: Union[int, Sequence[int]] = 1,
    overlap: Union[float, Sequence[float]] = 0.25,
    stride: Optional[Sequence[int]] = None,
    blend: str = "gaussian",
    batch_size: int = 1,
    padding_mode: str = "replicate",
    accumulate_on: str = "cpu",
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> torch.Tensor:
    """Run ``predictor`` over ``inputs`` ``(C, D, H, W)`` window by window and stitch the outputs.

    Args:
        window: input window size (d, h, w); a volume smaller than the window is padded
            (``padding_mode``) at its far end and the output cropped back.
        scale: output voxels per input voxel along each axis (where an input window's output lands).
        overlap: fraction of the window shared by neighbours along each axis (ignored if ``stride``).
        stride: explicit window stride in input voxels per axis.
        blend: 'gaussian' (MONAI-style, sigma = window/8) or 'uniform' averaging where windows overlap.
        batch_size: windows per predictor call; when the device runs out of memory it is halved
            and the batch retried (the same windows, so the same result); at 1 the error is raised.
        accumulate_on: 'cpu' (default, for large outputs) or 'device' (the predictor's output device).
            A tensor input may already live on a GPU; windows are cut on the CPU and the
            predictor moves each batch to its device.
        progress, cancel: called / checked after every batch.

    Returns:
        float32 tensor ``(C', D', H', W')`` on the accumulation device.
    """
    x = torch.as_tensor(inputs)
    if x.ndim != 4:
        raise ValueError(f"inputs must be (channels, depth, rows, cols), got shape {tuple(x.shape)}.")
    if accumulate_on not in ("cpu", "device"):
        raise ValueError(f"accumulate_on must be 'cpu' or 'device', not {accumulate_on!r}.")
    window, scale = _triple(window, "window"), _triple(scale, "scale")
    size = tuple(x.shape[1:])
    if stride is None:
        ov = _triple(overlap, "overlap")
        if not all(0 <= o < 1 for o in ov):
            raise ValueError(f"overlap must be in [0, 1), got {overlap!r}.")
        stride = tuple(max(1, int(round(w * (1 - o)))) for w, o in zip(window, ov))
    stride = _triple(stride, "stride")
    pad = [max(0, w - n) for w, n in zip(window, size)]
    if any(pad):
        x = F.pad(x[None], (0, pad[2], 0, pad[1], 0, pad[0]), mode=padding_mode)[0]
    x = x.float().cpu().numpy()
    padded = tuple(x.shape[1:])
    starts = [window_starts(n, w, s) for n, w, s in zip(padded, window, stride)]
    grid = list(itertools.product(*starts))

    # Bookkeeping on the CPU uses NumPy: single-threaded memory-bound work that does not fight
    # the network's threads for cores; on a GPU accumulator the same lines run as torch ops.
    out = weights = None
    done = 0
    while done < len(grid):
        if cancel is not None:
            cancel.raise_if_cancelled()
        chunk = grid[done:done + batch_size]
        batch = np.stack([x[:, z:z + window[0], y:y + window[1], v:v + window[2]] for z, y, v in chunk])
        try:
            pred = predictor(torch.from_numpy(batch))
        except Exception as exc:
            if not is_out_of_memory(exc) or batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)     # the same windows in smaller batches: the same result
            free_device_memory()
            report(progress, done / len(grid), f"out of memory: batches of {batch_size} windows from now on")
            continue
        if out is None:
            out_window = tuple(pred.shape[2:])
            out_size = [(n - w) * s + o for n, w, s, o in zip(padded, window, scale, out_window)]
            maps = [importance_1d(o, blend) for o in out_window]
            weights = maps[0][:, None, None] * maps[1][None, :, None] * maps[2][None, None, :]
            norms = [_coverage(n, st, s, m) for n, st, s, m in zip(out_size, starts, scale, maps)]
            if any(bool((nrm == 0).any()) for nrm in norms):
                raise ValueError(f"Windows of output size {out_window} at stride {stride} x scale {scale} "
                                 "leave gaps in the output; use a smaller stride or more overlap.")
            if accumulate_on == "cpu":
                out = np.zeros((pred.shape[1], *out_size), dtype=np.float32)
                weights, norms = weights.numpy(), [n.numpy() for n in norms]
            else:
                out = torch.zeros((pred.shape[1], *out_size), dtype=torch.float32, device=pred.device)
                weights, norms = weights.to(pred.device), [n.to(pred.device) for n in norms]
        elif tuple(pred.shape[2:]) != out_window:
            raise RuntimeError(f"The predictor returned windows of {tuple(pred.shape[2:])}, earlier {out_window}.")
        pred = pred.float().cpu().numpy() if accumulate_on == "cpu" else pred.float()
        for p, (z, y, v) in zip(pred, chunk):
            oz, oy, ov_ = z * scale[0], y * scale[1], v * scale[2]
            out[:, oz:oz + out_window[0], oy:oy + out_window[1], ov_:ov_ + out_window[2]] += p * weights
        done += len(chunk)
        report(progress, done / len(grid), f"windows {done}/{len(grid)}")

    plane = norms[1][:, None] * norms[2][None, :]
    for z0 in range(0, out.shape[1], 16):
        out[:, z0:z0 + 16] /= norms[0][z0:z0 + 16, None, None] * plane
    crop = [(n - w) * s + o for n, w, s, o in zip(size, window, scale, out_window)]
    out = out[:, :crop[0], :crop[1], :crop[2]]
    return torch.from_numpy(out) if isinstance(out, np.ndarray) else out


def is_out_of_memory(exc: BaseException) -> bool:
    """A device (CUDA, MPS, ONNX Runtime's CUDA provider) that ran out of memory."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()       # MPS and ONNX Runtime raise their own types with these words
    return not isinstance(exc, MemoryError) and ("out of memory" in text or "failed to allocate memory" in text)


def free_device_memory() -> None:
    """Give cached GPU blocks back before a retry."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _coverage(out_size: int, starts: list[int], scale: int, weight: torch.Tensor) -> torch.Tensor:
    """Sum of the 1-D blending weights of every window along one axis."""
    total = torch.zeros(out_size, dtype=torch.float32)
    for s in starts:
        total[s * scale:s * scale + len(weight)] += weight
    return total


@torch.no_grad()
def patch_inference_2d(
    images: Union[torch.Tensor, np.ndarray],
    predictor: Predictor,
    patch: int,
    stride: int,
    *,
    batch_size: int = 1024,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> torch.Tensor:
    """A 2-D patch network over every image of ``images`` ``(N, H, W)``: ``patch`` x ``patch`` windows
    at ``stride``, overlaps averaged, vectorised for the ~10^6 small windows of a volume.

    Each image is padded (reflect, at its far edges) to the smallest size the regular window grid
    covers exactly, so that patches are cut by ``F.unfold`` and stitched by ``F.fold`` (no Python per
    window), then cropped back. The result equals :func:`sliding_window_inference` with window
    ``(1, patch, patch)``, stride ``(1, stride, stride)`` and uniform blending on the padded images.
    ``batch_size``: patches per predictor call (whole images are grouped up to about that many).
    """
    x = torch.as_tensor(images, dtype=torch.float32)
    if x.ndim != 3:
        raise ValueError(f"images must be (count, rows, cols), got shape {tuple(x.shape)}.")
    if not 0 < stride <= patch:
        raise ValueError(f"stride must be from 1 to the patch size {patch}, got {stride}.")
    n, h, w = x.shape
    hp, wp = (max(patch, size) + (-(max(patch, size) - patch)) % stride for size in (h, w))
    per_image = ((hp - patch) // stride + 1) * ((wp - patch) // stride + 1)
    group = max(1, batch_size // per_image)
    ones = torch.ones(1, patch * patch, per_image)
    coverage = F.fold(ones, (hp, wp), patch, stride=stride)[0, 0]
    out = torch.empty((n, h, w), dtype=torch.float32)
    for i in range(0, n, group):
        if cancel is not None:
            cancel.raise_if_cancelled()
        chunk = x[i:i + group, None]
        if (hp, wp) != (h, w):
            chunk = F.pad(chunk, (0, wp - w, 0, hp - h), mode="reflect" if min(h, w) > max(hp - h, wp - w)
                          else "replicate")
        cols = F.unfold(chunk, patch, stride=stride)                    # (g, patch^2, L)
        g = cols.shape[0]
        patches = cols.transpose(1, 2).reshape(g * per_image, 1, patch, patch)
        pred = torch.cat([predictor(patches[j:j + batch_size]).float().cpu()
                          for j in range(0, len(patches), batch_size)])
        summed = F.fold(pred.reshape(g, per_image, patch * patch).transpose(1, 2), (hp, wp), patch, stride=stride)
        out[i:i + g] = (summed[:, 0] / coverage)[:, :h, :w]
        report(progress, min(n, i + g) / n, f"images {min(n, i + g)}/{n}")
    return out

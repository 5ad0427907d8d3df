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

Small 2-D windows (one voxel thick along an axis, output = input size: CLADE's 32x32 patches, ~10^6
of them in a volume) take a vectorised path: each plane's windows are cut by ``F.unfold`` and
stitched by ``F.fold``, no Python per window, with the same windows and weights as the general path.
"""
from __future__ import annotations

import itertools
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from volumetricsr.common.progress import CancelToken, ProgressCallback, report
from volumetricsr.compute.choices import BLENDS

Triple = tuple[int, int, int]
Predictor = Callable[[torch.Tensor], torch.Tensor]
#: Windows per plane from which 2-D windows take the vectorised path.
VECTORISE_FROM = 64


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
    flat = [a for a in range(3) if window[a] == 1]
    if scale == (1, 1, 1) and len(flat) == 1 and accumulate_on == "cpu":
        a = flat[0]
        if np.prod([len(starts[b]) for b in range(3) if b != a]) >= VECTORISE_FROM:
            out = _plane_windows(x, predictor, window, starts, a, blend, batch_size, progress, cancel)
            return torch.from_numpy(out[:, :size[0], :size[1], :size[2]])
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


def _regular_runs(starts: list[int]) -> list[tuple[int, int, int]]:
    """``starts`` as runs ``(first, step, count)`` of constant step (the regular grid, then the flush one)."""
    step = starts[1] - starts[0] if len(starts) > 1 else 1
    regular = next((i for i in range(1, len(starts)) if starts[i] - starts[i - 1] != step), len(starts))
    runs = [(starts[0], step, regular)]
    return runs + [(v, 1, 1) for v in starts[regular:]]


def _plane_windows(x: np.ndarray, predictor: Predictor, window: Triple, starts: list[list[int]], axis: int,
                   blend: str, batch_size: int, progress, cancel) -> np.ndarray:
    """The vectorised path: 2-D windows (``window[axis] == 1``) over every plane across ``axis`` of ``x``
    ``(C, D, H, W)``, by unfold/fold; returns the blended output on the CPU."""
    others = [b for b in range(3) if b != axis]
    (ha, hb), (sa, sb) = (window[b] for b in others), (starts[b] for b in others)
    weight = importance_1d(ha, blend)[:, None] * importance_1d(hb, blend)[None, :]
    runs = [(ra, rb) for ra in _regular_runs(sa) for rb in _regular_runs(sb)]
    per_plane = len(sa) * len(sb)
    planes = np.moveaxis(x, axis + 1, 0)                             # (P, C, A, B), a view
    channels, size_a, size_b = planes.shape[1:]
    out_planes, group = None, max(1, batch_size // per_plane)
    for p0 in range(0, len(planes), group):
        if cancel is not None:
            cancel.raise_if_cancelled()
        chunk = torch.from_numpy(np.ascontiguousarray(planes[p0:p0 + group]))
        g = len(chunk)
        summed = None
        for (a0, da, na), (b0, db, nb) in runs:
            sub = chunk[:, :, a0:a0 + (na - 1) * da + ha, b0:b0 + (nb - 1) * db + hb]
            cols = F.unfold(sub, (ha, hb), stride=(da, db))                 # (g, C*ha*hb, na*nb)
            patches = cols.transpose(1, 2).reshape(g * na * nb, channels, 1, ha, hb).movedim(2, axis + 2)
            pred, batch_size = _predict_all(predictor, patches, batch_size, progress, p0 / len(planes))
            if pred.shape[2:] != patches.shape[2:]:
                raise RuntimeError(f"The predictor returned windows of {tuple(pred.shape[2:])} for "
                                   f"{tuple(patches.shape[2:])}; 2-D windows must keep their size.")
            pred = pred.movedim(axis + 2, 2).reshape(g, na * nb, -1, ha, hb) * weight
            if summed is None:
                summed = torch.zeros((g, pred.shape[2], size_a, size_b))
            folded = F.fold(pred.reshape(g, na * nb, -1).transpose(1, 2), sub.shape[2:], (ha, hb), stride=(da, db))
            summed[:, :, a0:a0 + sub.shape[2], b0:b0 + sub.shape[3]] += folded
        if out_planes is None:
            out_planes = np.empty((len(planes), summed.shape[1], size_a, size_b), dtype=np.float32)
        out_planes[p0:p0 + g] = summed.numpy()
        report(progress, min(len(planes), p0 + g) / len(planes), f"planes {min(len(planes), p0 + g)}/{len(planes)}")
    norms = [_coverage(n, st, 1, importance_1d(h, blend)) for n, st, h in ((size_a, sa, ha), (size_b, sb, hb))]
    coverage = (norms[0][:, None] * norms[1][None, :]).numpy()
    if (coverage == 0).any():
        raise ValueError(f"Windows {window} at these strides leave gaps in the output; use a smaller stride.")
    out_planes /= coverage
    return np.moveaxis(out_planes, 0, axis + 1)


def _predict_all(predictor: Predictor, windows: torch.Tensor, batch_size: int, progress,
                 done: float) -> tuple[torch.Tensor, int]:
    """``predictor`` over ``windows`` in batches, halving the batch when the device runs out of
    memory (the same windows, so the same result); returns the outputs and the batch size reached."""
    parts, i = [], 0
    while i < len(windows):
        try:
            parts.append(predictor(windows[i:i + batch_size]).float().cpu())
        except Exception as exc:
            if not is_out_of_memory(exc) or batch_size == 1:
                raise
            batch_size = max(1, batch_size // 2)
            free_device_memory()
            report(progress, done, f"out of memory: batches of {batch_size} windows from now on")
            continue
        i += len(parts[-1])
    return torch.cat(parts), batch_size

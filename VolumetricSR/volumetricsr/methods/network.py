"""Methods that run a trained network through the sliding-window engine."""
from __future__ import annotations

import io
from typing import Callable, Optional

import numpy as np
import torch

from volumetricsr.compute.cpu_memory import keep_freed_memory
from volumetricsr.compute.confidence import combine
from volumetricsr.compute.engine import free_device_memory, is_out_of_memory, sliding_window_inference
from volumetricsr.common.errors import InputError, ModelError
from volumetricsr.data.geometry import ThroughPlaneGrid
from volumetricsr.compute.models import ModelCard
from volumetricsr.data.normalization import Normalization, looks_like_hu
from volumetricsr.common.options import label
from volumetricsr.compute.export import export_onnx
from volumetricsr.compute.predictors import OnnxPredictor, TorchPredictor
from volumetricsr.common.progress import scaled
from volumetricsr.data.resampling import (apply_along_first_axis, bspline_weights, linear_weights, resample_axis,
                                         resample_in_plane)
from volumetricsr.methods.base import Method, RunContext
from volumetricsr.methods.options import BACKENDS, method_rules

#: Smallest in-plane window an out-of-memory retry goes down to before the CPU takes over.
MIN_WINDOW = 64

class NetworkMethod(Method):
    """A method whose network maps ``d`` thick slices to ``(d-1)*f+1`` thin ones (``f``: native factor).

    Subclasses set ``name`` etc. and may change the defaults below; the model card may override the
    window with ``"window": [d, h, w]``. When the requested factor differs from the native one, the
    network's output is resampled to the requested grid with a cubic B-spline.

    Intensities outside the card's normalisation window (metal, dense bone, contrast above a CT
    window; the brightest voxels of an MR volume beyond its percentile range) are not lost: what
    the window clipped off the input is interpolated linearly along the through-plane axis and added
    back to the network's output (:func:`restore_clipped`). Inside the window nothing changes.
    """

    needs_model = True
    uses_device = True
    option_rules = method_rules("model", "backend", "precision", "window", "overlap", "batch_size", "blend")
    window: tuple[int, int, int] = (4, 256, 256)
    overlap: tuple[float, float, float] = (0.5, 0.25, 0.25)

    def window_depth(self, card: ModelCard) -> Optional[int]:
        """Thick slices per input window that ``card``'s network needs (None: any depth)."""
        return int(card.extra["window"][0]) if card.extra.get("window") else None

    def check_options(self, options: dict) -> dict:
        options = super().check_options(options)
        if "window" in options:       # its depth may be the network's: read the card (JSON only, no weights)
            depth = self.window_depth(self.load_card(options.get("model")))
            if depth is not None and options["window"][0] != depth:
                rows, cols = options["window"][1:]
                raise InputError(f"{label('window')}: the {self.title} model takes {depth} slices per window, not "
                                 f"{options['window'][0]}; change only the in-plane size (e.g. {depth} {rows} {cols}).")
        return options

    def fitness(self, volume, grid: ThroughPlaneGrid, options: dict, force: bool = False) -> list[str]:
        """A CT model refuses an input that is not in HU (an MR volume, raw scanner values) unless
        ``force``; a slice spacing far from the model's training spacing gets a warning."""
        card = self.load_card(options.get("model"))
        if card.modality.upper() == "CT" and not force:
            modality = str(volume.metadata.get("dicom", {}).get("0008|0060", "")).strip().upper()
            if modality not in ("", "CT") or not looks_like_hu(volume.array):
                seen = f"its DICOM modality is {modality}" if modality not in ("", "CT") else \
                    "its intensities do not look like Hounsfield units (no air near -1000 HU)"
                raise InputError(f"Model {card.id} is a CT model, but {seen}. Use selfsr or an interpolation for "
                                 "MR and other images, or force (--force) if this really is a CT in HU.")
        note = card.spacing_warning(grid.spacing_in)
        return [note] if note else []

    def predictor(self, card: ModelCard, window, device: str, backend: str, precision: str):
        if backend not in BACKENDS:
            raise InputError(f"Unknown backend {backend!r}; use one of {', '.join(BACKENDS)}.")
        net = card.build()
        if backend == "torch":
            return TorchPredictor(net, device, precision)
        onnx_file = card.onnx_path()
        if onnx_file and list(card.extra.get("onnx_window", window)) == list(window):
            return OnnxPredictor(onnx_file, device)
        buffer = io.BytesIO()
        export_onnx(net, buffer, *self.onnx_example(card, net, window))
        return OnnxPredictor(buffer.getvalue(), device)

    def onnx_example(self, card: ModelCard, net: torch.nn.Module, window=None) -> tuple[tuple, tuple]:
        """An input window ``(1, 1, d, h, w)`` (``window``, else the card's, else the method's) and the
        axes the ONNX file leaves free: the batch, rows and columns."""
        window = tuple(window or card.extra.get("window") or self.window)
        return (1, 1, *window), (0, 3, 4)

    def upsample(self, stack: np.ndarray, grid: ThroughPlaneGrid, ctx: RunContext, *, model: Optional[str] = None,
                 backend: str = "torch", precision: str = "auto", window=None, overlap=None,
                 batch_size: int = 1, blend: str = "gaussian") -> np.ndarray:
        card = self.load_card(model)
        factor = int(round(card.native_factor))
        if factor < 1 or abs(card.native_factor - factor) > 1e-6:
            raise ModelError(f"Model {card.id}: native factor {card.native_factor} must be a whole number.")
        window = tuple(window or card.extra.get("window") or self.window)
        window = (window[0], min(window[1], stack.shape[1]), min(window[2], stack.shape[2]))
        norm = Normalization.from_dict(card.normalization)
        lo, hi = norm.range_of(stack)
        ctx.results["model"] = card.id
        x = norm.forward(stack, lo, hi)
        overlap = overlap or self.overlap
        engine = dict(scale=(factor, 1, 1), overlap=overlap, blend=blend, batch_size=batch_size)
        native_n = (grid.n_in - 1) * factor + 1

        def predictions():
            """The prediction; for the confidence map, then on the input mirrored left-right and with
            the windows shifted by half a stride (reflected margins, cropped off again)."""
            shift = [max(1, int(round(w * (1 - o)))) // 2 for w, o in zip(window, overlap)]
            pad, a = [(min(s, size - 1), 0) for s, size in zip(shift, x.shape)], ctx.mirror_axis
            variants = [(lambda: x, lambda y: y),           # (the input, the output back in the plain frame)
                        (lambda: np.flip(x, a).copy(), lambda y: np.flip(y, a)),
                        (lambda: np.pad(x, pad, mode="reflect"),
                         lambda y: y[pad[0][0] * factor:, pad[1][0]:, pad[2][0]:])]
            for n, (given, back) in enumerate(variants):
                span = (0.95 * n / 3, 0.95 * (n + 1) / 3) if ctx.spread is not None else (0.0, 0.95)
                y = self.run_network(card, torch.from_numpy(given())[None], window, ctx, backend, precision, span,
                                     **engine)
                yield np.ascontiguousarray(back(y[0].numpy()))

        def finish(y: np.ndarray) -> np.ndarray:
            out = norm.inverse(y, lo, hi)
            if out.shape[0] != native_n:
                raise ModelError(f"Model {card.id} returned {out.shape[0]} slices for {grid.n_in} thick ones; "
                                 f"expected {native_n} at factor {factor}. Card and network disagree.")
            out = restore_clipped(out, stack, lo, hi)
            if native_n != grid.n_out:
                ctx.report(0.96, f"resampling x{factor} output to the requested {grid.spacing_out:.3g} mm")
                positions = np.arange(grid.n_out) * (native_n - 1) / max(grid.n_out - 1, 1)
                out = apply_along_first_axis(bspline_weights(positions, native_n), out)
            return out

        return combine(predictions(), finish, ctx.spread, fuse=False)

    def run_network(self, card: ModelCard, x: torch.Tensor, window, ctx: RunContext, backend: str, precision: str,
                    span: tuple[float, float] = (0.0, 0.95), **engine) -> torch.Tensor:
        """The engine over ``x`` on ``ctx.device`` (progress over ``span``), with the out-of-memory
        fallback of :func:`with_memory_fallback` (smaller windows, then the CPU)."""
        def run(device: str, window) -> torch.Tensor:
            predictor = self.predictor(card, window, device, backend, precision)
            ctx.check()                   # building it may have taken long (ONNX export)
            ctx.report(span[0], f"{self.title}: model {card.id} on {device} ({backend}, "
                            f"{getattr(predictor, 'precision', 'fp32')})")
            with keep_freed_memory():     # across windows too (real 8 mm CT: 58 -> 55 s)
                return sliding_window_inference(x, predictor, window, progress=scaled(ctx.progress, *span),
                                                cancel=ctx.cancel, **engine)

        return with_memory_fallback(run, ctx, window, span[0])


def with_memory_fallback(run: Callable, ctx: RunContext, window: Optional[tuple] = None, at: float = 0.0):
    """``run(device, window)`` on ``ctx.device``. Out of device memory even one window at a time (the
    engine halves its batches first), it runs again with half the in-plane ``window`` (down to
    ``MIN_WINDOW``; a plane method has none to shrink), then on the CPU, saying so: every network
    method's fallback."""
    device = ctx.device
    while True:
        try:
            return run(device, window)
        except Exception as exc:
            if not is_out_of_memory(exc) or device == "cpu":
                raise
        free_device_memory()
        if window is not None and min(window[1:]) > MIN_WINDOW:
            window = (window[0], *(max(MIN_WINDOW, w // 2) for w in window[1:]))
            ctx.report(at, f"out of memory on {device}: windows of {window[1]}x{window[2]} from now on")
        else:
            unit = "one plane" if window is None else f"one {window[0]}x{window[1]}x{window[2]} window"
            ctx.warn(f"The GPU ({device}) ran out of memory even with {unit} at a time; running on the CPU "
                     "instead (slower, same result).")
            device = "cpu"


def restore_clipped(out: np.ndarray, stack: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The network's ``out`` (thin slices at thick positions ``t * (n_in-1)/(n_out-1)``) held to the
    window ``[lo, hi]`` it was trained to produce, plus the part of ``stack`` (thick slices) outside
    that window, linearly interpolated to the thin positions: at the acquired slices the input's own
    values come back (metal keeps its HU); linear weights are non-negative, so nothing rings."""
    excess = stack - np.clip(stack, lo, hi)
    out = np.clip(out, lo, hi, out=out)
    if not excess.any():
        return out
    n_in, n_out = stack.shape[0], out.shape[0]
    positions = np.arange(n_out) * (n_in - 1) / max(n_out - 1, 1)
    return out + apply_along_first_axis(linear_weights(positions, n_in), excess.astype(np.float32))


def plane_output(y: np.ndarray, scale: float, offset: float, source: np.ndarray, window: tuple[float, float],
                 grid: ThroughPlaneGrid, shape: tuple[int, int], ctx: RunContext) -> np.ndarray:
    """A plane network's ``y`` (network units, on the isotropic in-plane grid of ``source``) as
    intensities on the output grid: ``y * scale + offset`` (in place), what ``window`` clipped off
    ``source`` restored (:func:`restore_clipped`), resampled to ``grid.n_out`` slices of ``shape``."""
    y *= scale
    y += offset
    out = restore_clipped(y, source, *window)
    ctx.report(0.96, "resampling to the requested grid")
    return resample_in_plane(resample_axis(out, 0, grid.n_out), *shape).astype(np.float32)

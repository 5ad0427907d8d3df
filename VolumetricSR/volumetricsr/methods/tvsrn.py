"""TVSRN (RPLHR-CT, Yu et al. 2022): a trained transformer for x5 thick-to-thin chest CT.

Tiling: windows of 4 thick slices with depth stride 2 (``overlap=(0.5, 0, 0)``, as the public
reference runs it) and Gaussian blending, so the first and last thin slices of a window, where the
network sees only one thick slice beyond, weigh least; in-plane tiles of 256x256 without overlap
except that the last tile of a row/column is flush with the edge (the engine's last-window rule,
also used along depth). Held out this is +0.31 dB over the paper's stride 3 with uniform averaging,
for 1.3x the time (README, TVSRN); ``overlap=(0.25, 0, 0), blend='uniform'`` is the paper's tiling.
"""
from __future__ import annotations

import contextvars
import io
import os
import shutil
import warnings
from typing import Optional, Sequence

import numpy as np
import torch

from .. import networks  # noqa: F401  (registers the tvsrn architecture)
from ..engine import window_starts
from ..errors import ModelError
from ..geometry import ThroughPlaneGrid
from ..models import ModelCard
from ..options import OneOf
from ..predictors import OnnxPredictor
from .base import RunContext, register
from .network import NetworkMethod


def export_onnx(net: torch.nn.Module, path: "str | os.PathLike | io.BytesIO", window: Sequence[int],
                opset: int = 18) -> None:
    """Export ``net`` for input windows ``(batch, 1, *window)``: batch dynamic, window sizes fixed.

    The swin windows' token orders and masks depend on the in-plane size: they are planned first, so
    the trace holds them as constants of that size; the method exports again when it needs
    another size.
    """
    net = net.eval().cpu()
    example = torch.zeros((1, 1, *window))
    net.prepare(window[1], window[2])
    target = path if hasattr(path, "write") else str(path)
    # no_grad: tracing with autograd on keeps every activation (about 10 GB for a 4x256x256 window)
    with warnings.catch_warnings(), torch.no_grad():   # shape-dependent Python values: constants here
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)   # the TorchScript exporter: still fine
        torch.onnx.export(net, (example,), target, input_names=["thick"], output_names=["thin"],
                          dynamic_axes={"thick": {0: "batch"}, "thin": {0: "batch"}}, opset_version=opset,
                          dynamo=False)


_COMPILE = contextvars.ContextVar("tvsrn_compile", default=False)   # this run's choice, seen by predictor()


class CompiledOrEager:
    """Calls ``torch.compile(net)`` for inference; if compiling fails (no C++ compiler, unsupported
    platform) it warns once and runs ``net`` eagerly from then on.

    Compiled with inductor's ``freezing``: the weights become constants, so linear layers run as
    prepacked oneDNN matmuls fused with their GELU (bf16 window on 2 CPU cores 1.26 -> 1.13 s). The
    weights must therefore not change after the first call (a new network needs a new wrapper).
    """

    def __init__(self, net: torch.nn.Module):
        self.net, self.compiled = net, torch.compile(net, dynamic=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.compiled is not None:
            try:
                from torch._inductor import config

                self.net.prepare(x.shape[-2], x.shape[-1], x.device)   # window plans: constants, no graph breaks
                with config.patch(freezing=True):
                    return self.compiled(x)
            except Exception as exc:  # inductor raises many types (compiler missing, codegen, ...)
                warnings.warn(f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); running eagerly.")
                self.compiled = None
        return self.net(x)


def compile_pays_off(n_windows: int, device: str) -> bool:
    """``compile='auto'``: on 2 CPU cores compiling costs about 13 s more than an eager first window
    and saves about 0.13 s per bf16 window (1.26 -> 1.13 s), so it pays from about 100 windows
    (a 60x512x512 volume has 80); on a GPU it is assumed to pay from 50 (not measured here)."""
    if device.startswith("cuda"):
        return n_windows >= 50
    return device == "cpu" and n_windows >= 100 and any(shutil.which(c) for c in ("c++", "g++", "clang++", "cl"))


class TVSRNMethod(NetworkMethod):
    name = "tvsrn"
    title = "TVSRN"
    description = ("Transformer volumetric super-resolution (RPLHR-CT, MICCAI 2022): learned x5 "
                   "thick-to-thin CT; needs a trained model. Windows of 4 thick slices x 256x256.")
    modalities = ("CT",)
    native_factor = 5
    min_slices = 4
    window = (4, 256, 256)
    overlap = (0.5, 0.0, 0.0)
    option_rules = {**NetworkMethod.option_rules, "compile": OneOf((True, False, "auto"))}

    def window_depth(self, card: ModelCard) -> int:
        return int(card.architecture.get("args", {}).get("depth", 4))

    def load_card(self, model: Optional[str]) -> ModelCard:
        card = super().load_card(model)
        args = card.architecture.get("args", {})
        if card.architecture.get("name") != "tvsrn":
            raise ModelError(f"Model {card.id}: architecture {card.architecture.get('name')!r} is not tvsrn.")
        factor, depth = args.get("factor", 5), args.get("depth", 4)
        if factor != card.native_factor:
            raise ModelError(f"Model {card.id}: its network upsamples x{factor} but the card says native factor "
                             f"{card.native_factor:g}. Card and network disagree.")
        window = card.extra.get("window")
        if window and window[0] != depth:
            raise ModelError(f"Model {card.id}: window depth {window[0]} differs from the network's {depth} slices.")
        return card

    def predictor(self, card: ModelCard, window, device: str, backend: str, precision: str):
        if backend != "onnx":
            predictor = super().predictor(card, window, device, backend, precision)
            if _COMPILE.get():
                predictor.module = CompiledOrEager(predictor.module)
            return predictor
        if card.extra.get("onnx") and list(card.extra.get("onnx_window", [])) == list(window):
            return OnnxPredictor(card.onnx_path(), device)
        buffer = io.BytesIO()
        export_onnx(card.build(), buffer, window)
        return OnnxPredictor(buffer.getvalue(), device)

    def upsample(self, stack: np.ndarray, grid: ThroughPlaneGrid, ctx: RunContext, *, compile="auto",
                 **options) -> np.ndarray:
        """``compile``: True, False or 'auto' (:func:`compile_pays_off`) for the torch backend."""
        if compile == "auto":
            window = options.get("window") or self.window
            n = 1
            for size, w, o in zip(stack.shape, window, options.get("overlap") or self.overlap):
                w = min(w, size)
                n *= len(window_starts(size, w, max(1, int(round(w * (1 - o))))))
            compile = compile_pays_off(n, ctx.device)
        token = _COMPILE.set(bool(compile))
        try:
            return super().upsample(stack, grid, ctx, **options)
        finally:
            _COMPILE.reset(token)


TVSRN = register(TVSRNMethod())

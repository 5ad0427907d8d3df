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
import shutil
import warnings
from typing import Optional

import numpy as np
import torch

from volumetricsr.compute.engine import window_starts
from volumetricsr.common.errors import ModelError
from volumetricsr.data.geometry import ThroughPlaneGrid
from volumetricsr.compute.models import ModelCard
from volumetricsr.methods.base import RunContext, register
from volumetricsr.methods.network import NetworkMethod
from volumetricsr.methods.options import method_rules


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
    option_rules = {**NetworkMethod.option_rules, **method_rules("compile")}

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
        return super().predictor(card, window, device, backend, precision)

    def onnx_example(self, card: ModelCard, net: torch.nn.Module, window=None) -> tuple[tuple, tuple]:
        """Fixed window sizes: the swin windows' token orders and masks depend on the in-plane size,
        so they are planned first and the trace holds them as constants of that size (the method
        exports again when it needs another size); only the batch is free."""
        shape, _ = super().onnx_example(card, net, window)
        net.prepare(shape[3], shape[4])
        return shape, (0,)

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

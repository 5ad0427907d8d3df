"""Predictors: one call signature for a torch module and an ONNX Runtime session.

A predictor takes a CPU float32 batch ``(B, C, d, h, w)`` and returns a float tensor of output
windows. It owns the device: it moves each batch there and runs with the requested precision.
"""
from __future__ import annotations

import contextlib
import os
from typing import Optional

import numpy as np
import torch

from volumetricsr.compute.cpu_memory import keep_freed_memory
from volumetricsr.common.errors import InputError, ModelError
from volumetricsr.compute.choices import PRECISIONS



def native_bf16(device: str) -> bool:
    """True where bf16 runs natively: a CPU with AVX512-BF16 or AMX, or a GPU that supports it."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve_precision(precision: str, device: str) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; other values are checked."""
    if precision not in PRECISIONS:
        raise InputError(f"Unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}.")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


class TorchPredictor:
    """Runs a ``torch.nn.Module`` in inference mode on ``device`` (fp32, or bf16/fp16 autocast).

    ``precision='auto'``: bf16 autocast where the hardware has native bf16 (:func:`resolve_precision`).
    On the CPU each call keeps freed memory for reuse (:mod:`volumetricsr.compute.cpu_memory`) unless
    ``keep_freed_memory=False``.
    """

    def __init__(self, module: torch.nn.Module, device: str = "cpu", precision: str = "fp32",
                 keep_freed_memory: bool = True):
        precision = resolve_precision(precision, device)
        if precision == "fp16" and not device.startswith(("cuda", "mps")):
            raise InputError("fp16 needs a GPU; on the CPU use bf16 or fp32.")
        self.module = module.eval().to(device)
        self.device = torch.device(device)
        self.precision = precision
        self.keep_freed_memory = keep_freed_memory and self.device.type == "cpu"

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            batch = batch.pin_memory()
        memory = keep_freed_memory() if self.keep_freed_memory else contextlib.nullcontext()
        with memory, torch.inference_mode(), self._autocast():
            return self.module(batch.to(self.device, non_blocking=True)).float()


class PlanePredictor:
    """A 2-D network as an engine predictor: windows one voxel thick along array axis ``axis``
    (``(B, C, d, 1, w)`` for axis 1, ``(B, C, d, h, 1)`` for axis 2, ...) are images for the network."""

    def __init__(self, predictor, axis: int):
        self.predictor, self.dim = predictor, axis + 2

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        return self.predictor(batch.squeeze(self.dim)).unsqueeze(self.dim)


class OnnxPredictor:
    """Runs an ONNX model with ONNX Runtime (CUDA execution provider when asked for and present)."""

    def __init__(self, model: "str | os.PathLike | bytes", device: str = "cpu", threads: Optional[int] = None):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise InputError("ONNX Runtime has no CUDA provider here; install onnxruntime-gpu, "
                                 "or use --backend torch or --device cpu.")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(model if isinstance(model, bytes) else str(model),
                                                options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"ONNX Runtime could not load the model: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: batch.numpy().astype(np.float32, copy=False)})[0]
        return torch.from_numpy(out)

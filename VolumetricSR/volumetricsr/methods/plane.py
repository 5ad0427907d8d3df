"""The plane methods (selfsr, CLADE, CT-guided): a 2-D network over every plane that contains the
through-plane axis, in both orientations, fused.

:class:`PlaneMethod` holds what they share: the plane path through the engine (:meth:`~PlaneMethod.
predictions`), its out-of-memory fallback (:func:`~.network.with_memory_fallback`: on the CPU when
one plane at a time does not fit the GPU), and the way back from network units to intensities on the
output grid with what the network's window clipped restored (:meth:`~PlaneMethod.finish`); the card
loader and the fitness checks are every method's (:class:`~.base.Method`).
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch

from volumetricsr.compute.confidence import combine
from volumetricsr.compute.engine import sliding_window_inference
from volumetricsr.compute.predictors import PlanePredictor, TorchPredictor
from volumetricsr.common.errors import InputError
from volumetricsr.common.progress import scaled
from volumetricsr.data.geometry import ThroughPlaneGrid
from volumetricsr.methods.base import Method, RunContext
from volumetricsr.methods.network import plane_output, with_memory_fallback


class PlaneMethod(Method):
    """Base of the methods whose network maps a plane's ``d`` rows along the thick axis to
    ``(d-1)*f+1`` (``net.factor``; 1 for a network that works on an already resampled plane)."""

    uses_device = True
    #: Run the network in channels-last memory order (faster for wide convolutions on a CPU).
    channels_last = False

    def predictor(self, net: torch.nn.Module, device: str):
        """The callable that runs ``net`` on ``device`` (a test may swap in one that runs out of memory)."""
        return TorchPredictor(net, device)

    def onnx_example(self, card, net: torch.nn.Module, window=None) -> tuple[tuple, tuple]:
        """A plane ``(1, 1, rows, cols)``; the ONNX file takes any batch and plane size."""
        if window:
            raise InputError(f"{self.title}: its network takes whole planes of any size; leave out the window.")
        return (1, 1, 24, 32), (0, 2, 3)

    def predictions(self, net: torch.nn.Module, work: np.ndarray, ctx: RunContext, *,
                    span: tuple[float, float] = (0.0, 0.95), planes: int = 2, batch_size: Optional[int] = None,
                    patch: int = 0, stride: int = 0) -> Iterator[np.ndarray]:
        """``net`` over ``work`` ``(slices, rows, cols)``: planes across rows, then across columns
        (``planes``: how many of the two orientations), whole or in ``patch``-square windows at
        ``stride`` (overlaps averaged); one prediction per orientation, progress over ``span``. With
        one orientation and a confidence map asked for, a second prediction follows: the planes
        mirrored left to right."""
        if self.channels_last:
            net = net.to(memory_format=torch.channels_last)
        factor = getattr(net, "factor", 1)
        n, rows, cols = work.shape
        runs = [(o, False) for o in range(planes)] + ([(0, True)] if planes == 1 and ctx.spread is not None else [])
        for r, (o, mirrored) in enumerate(runs):
            axis = 1 + o
            window, step = ([patch] * 3, [stride] * 3) if stride else ([n, rows, cols], [1, 1, 1])
            window[axis], step[axis] = 1, 1
            volume = torch.from_numpy(work[:, :, ::-1].copy() if mirrored else work)[None]
            progress = scaled(ctx.progress, span[0] + (span[1] - span[0]) * r / len(runs),
                              span[0] + (span[1] - span[0]) * (r + 1) / len(runs))

            def run(device: str, _window) -> torch.Tensor:
                batch = batch_size or (1024 if stride else 64 if device != "cpu" else 8)
                return sliding_window_inference(volume, PlanePredictor(self.predictor(net, device), axis), window,
                                                stride=step, scale=(factor, 1, 1), blend="uniform",
                                                batch_size=batch, progress=progress, cancel=ctx.cancel)

            out = with_memory_fallback(run, ctx)[0].numpy()
            yield np.ascontiguousarray(out[:, :, ::-1]) if mirrored else out

    @staticmethod
    def finish(predictions: Iterator[np.ndarray], scale: float, offset: float, source: np.ndarray,
               window: tuple[float, float], grid: ThroughPlaneGrid, shape: tuple[int, int], ctx: RunContext,
               fuse: bool = True) -> np.ndarray:
        """The predictions (network units on ``source``'s isotropic in-plane grid) fused (``fuse``: as
        the result; else the first is the result, the rest feed only the confidence map), as
        intensities ``y * scale + offset`` on the output grid, what ``window`` clipped restored."""
        return combine(predictions, lambda y: plane_output(y, scale, offset, source, window, grid, shape, ctx),
                       ctx.spread, fuse=fuse)

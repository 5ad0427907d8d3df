"""CLADE (Pascale et al.): an unpaired CycleGAN between 2-D patches of a volume's low- and
high-resolution planes, learned from the volume itself or from several volumes of one protocol.

The thick volume is interpolated to isotropic voxels (cubic B-spline). Domain Y: 32x32 patches of the
acquired (high-resolution) slices; domain X: patches of the planes that contain the through-plane
axis (``planes``: one orientation, as the paper, or both). Generators ``G_X: X -> Y`` and
``G_Y: Y -> X`` use demodulated convolutions (``norm='instance'`` for the conventional CycleGAN);
losses: LSGAN adversarial, cycle, identity and the Sobel gradient-mapping loss on both cycles,
weighted (cycle, identity, gmap) = (1, 1, 10) for CT and (1, 1, 5) for MR; Adam 2e-4, beta1 0.5;
an image pool of 50 per discriminator. At inference ``G_X`` runs through the engine on every plane of
the interpolated volume that contains the through-plane axis, in overlapping patches at ``stride``
(paper: 6 for CT, 12 for MR) averaged, or on whole planes (``stride=0``: fully convolutional, no
seams, the cost of non-overlapping patches: the CPU default); the orientations are averaged.

Two uses, one task (:class:`~.task.CladeTask`) on the training core: per volume (the method, with a
budget), or ``volumetricsr train --method clade`` over several volumes, whose model
``infer --method clade --model ID`` applies without training.

Intensities: CT in the HU window [-1024, 2048], MR (anything not in HU) between its 0.5 and 99.5
percentiles, mapped to [-1, 1]; what lies outside comes back from the input (:func:`~.network.restore_clipped`).

Decisions the paper leaves open: the high-resolution domain holds only the acquired slices (the
interpolated ones between them are blends); the decoder upsamples by nearest neighbour and a
convolution (transposed convolutions checkerboard on 32x32 patches); the gradient-mapping loss is
the L1 distance of the Sobel gradients (x and y) of each cycled patch to its original's; the
generator is residual (:class:`~volumetricsr.compute.networks.clade.Generator`; ``residual=False``, or
``--plain-generator``, is the paper's plain mapping).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch

from volumetricsr.data.geometry import ThroughPlaneGrid
from volumetricsr.data.normalization import for_modality, looks_like_hu
from volumetricsr.common.options import Count, OneOf
from volumetricsr.common.progress import scaled
from volumetricsr.training.loop import Loop
from volumetricsr.methods.base import RunContext, register
from volumetricsr.methods.plane import PlaneMethod
from volumetricsr.methods.options import method_rules
from volumetricsr.methods.clade.data import PATCH, PlanePatches, Prepared, prepare
from volumetricsr.methods.clade.losses import loss_weights
from volumetricsr.methods.clade.task import CladeTask
from volumetricsr.training.tasks import Budget as TrainingBudget, default_budget

STRIDES = {"CT": 6, "MR": 12}


@dataclass(frozen=True)
class Budget(TrainingBudget):
    stride: Optional[int]        # None: the paper's for the modality; 0: whole planes
    planes: int                  # low-resolution orientations trained on and generated (the paper: 1)


BUDGETS = {
    "fast": Budget(iterations=300, batch_size=8, features=16, stride=0, planes=1),         # CPU default
    "balanced": Budget(iterations=2000, batch_size=16, features=32, stride=None, planes=2),
    "quality": Budget(iterations=10000, batch_size=32, features=64, stride=None, planes=2),  # GPU default
}


class Clade(PlaneMethod):
    name = "clade"
    title = "CLADE (unpaired CycleGAN, per volume)"
    description = ("Experimental: unpaired CycleGAN between patches of the volume's own low- and "
                   "high-resolution planes (Pascale et al.): weight-demodulated generators and a gradient-mapping "
                   "loss; no training data, CT or MR. Minutes on a CPU (budget fast), where it returns about the "
                   "B-spline interpolation (see the README's measurements): prefer selfsr.")
    modalities = ("CT", "MR")
    trains_per_volume = True
    uses_device = True
    experimental = True
    min_slices = 3
    option_rules = method_rules("budget", "iterations", "seed", "stride", "norm", "gmap", "planes", "residual",
                                "batch_size", "model", budget=OneOf(tuple(BUDGETS)), stride=Count(0, PATCH))
    saved_model_options = ("model",)
    channels_last = True          # 1.6x faster on whole planes on a CPU

    def upsample(self, stack: np.ndarray, grid: ThroughPlaneGrid, ctx: RunContext, *, budget: Optional[str] = None,
                 iterations: Optional[int] = None, seed: int = 0, stride: Optional[int] = None, norm: str = "demod",
                 gmap: bool = True, planes: Optional[int] = None, residual: bool = True,
                 batch_size: Optional[int] = None, model: Optional[str] = None) -> np.ndarray:
        b = BUDGETS[default_budget(budget, ctx.device)]
        n, rows, cols = stack.shape
        if model:
            card = self.load_card(model)
            modality, net = card.modality, card.build()
        else:
            modality = "CT" if looks_like_hu(stack) else "MR"
        stride = b.stride if stride is None else stride
        stride = STRIDES[modality] if stride is None else stride
        planes = b.planes if planes is None else planes
        data = prepare(stack, grid, for_modality(modality))
        ctx.report(0.0, f"CLADE: {modality}, {n} slices -> {len(data.iso)} isotropic; patches of {PATCH}x{PATCH}")
        if not model:
            net = self._train(data, modality, b, budget, ctx, iterations=iterations, seed=seed, batch_size=batch_size,
                              planes=planes, norm=norm, gmap=gmap, residual=residual)
        half = (data.hi - data.lo) / 2          # from [-1, 1] back to intensities
        parts = self.predictions(net.eval(), data.iso, ctx, span=(0.7 if not model else 0.02, 0.95), planes=planes,
                                 patch=PATCH, stride=stride)
        return self.finish(parts, half, data.lo + half, data.source, (data.lo, data.hi), grid, (rows, cols), ctx,
                           fuse=planes > 1)

    @staticmethod
    def _train(data: Prepared, modality: str, b: "Budget", budget, ctx: RunContext, *, iterations, seed, batch_size,
               planes, norm, gmap, residual) -> torch.nn.Module:
        """The per-volume CycleGAN on this volume's own patches; the low-to-high generator."""
        config = {"features": b.features, "blocks": 6, "norm": norm, "residual": residual, "lr": 2e-4,
                  "batch_size": batch_size or b.batch_size, "weights": loss_weights(modality, gmap), "seed": seed}
        iterations = b.iterations if iterations is None else iterations
        task = CladeTask(config, PlanePatches([data.slices], [data.iso], planes), ctx.device)
        start = time.perf_counter()
        loop = Loop(task, iterations, steps_per_epoch=max(1, min(50, iterations)), rng=np.random.default_rng(seed),
                    cancel=ctx.cancel)
        train_progress = scaled(ctx.progress, 0.02, 0.7)
        loop.on_event = lambda name, fields: (name == "epoch" and train_progress
                                              and train_progress(loop.step / iterations,
                                                                 f"training {loop.step}/{iterations}"))
        loop.run()
        ctx.check()
        ctx.results["training"] = {"budget": budget, "iterations": iterations, "modality": modality,
                                   "seconds": time.perf_counter() - start, "config": dict(config),
                                   "budget_settings": asdict(b),
                                   "loss_curve": [r["loss"] for r in loop.history[::max(1, len(loop.history) // 50)]]}
        return task.g_xy


CLADE = register(Clade())

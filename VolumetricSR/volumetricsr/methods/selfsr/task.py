"""selfsr's per-volume training: the network learns on the volume's own in-plane patches (:class:`SelfSRTask`,
:func:`train_network`) as much as its :class:`Budget` says. The priors' task is in :mod:`.priors`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from volumetricsr.compute.networks.row_upsampler import RowUpsampler
from volumetricsr.training.loop import Loop, autocast, needs_scaler, optimize
from volumetricsr.training.samplers import PatchSampler
from volumetricsr.training.tasks import Budget as TrainingBudget, OneNetworkTask
from volumetricsr.methods.base import RunContext


@dataclass(frozen=True)
class Budget(TrainingBudget):
    """How much the per-volume network learns: its size and its training iterations."""

    blocks: int
    expansion: int
    patch: int = 48          # patch width (high-resolution columns) and height on the fine grid
    lr: float = 1e-3         # peak learning rate of the one-cycle schedule


class SelfSRTask(OneNetworkTask):
    """Per-volume training on the loop core: Adam + one-cycle, L1, AMP on a GPU (a GradScaler for fp16)."""

    method = "selfsr"
    best_metric = None
    #: Feature-map values per layer of a training batch (batch x low-resolution rows x columns x
    #: features) up to which a step is too fine-grained to share between CPU threads: it then runs
    #: on one, as fast as on two or faster, leaving the other core to a run beside. Measured on 2
    #: cores (docs/performance.md): 61k values (6.5 mm MRI, x10) 23 s of training on one thread
    #: against 26-28 s on two; 123k (the built-in phantom, x5) 36.7 s against 35.0 s.
    SHARED_ABOVE = 90_000

    def __init__(self, net: RowUpsampler, sampler: PatchSampler, budget: Budget, iterations: int, device: str):
        super().__init__({"budget": asdict(budget), "iterations": iterations}, device)
        self.net, self.sampler, self.batch_size = net.to(device), sampler, budget.batch_size
        values = budget.batch_size * sampler.lr_rows * sampler.width * budget.features
        self.cpu_threads = 1 if values <= self.SHARED_ABOVE else None
        self.amp = torch.device(device).type == "cuda"
        self.opt = torch.optim.Adam(net.parameters(), lr=budget.lr)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=budget.lr, total_steps=max(iterations, 1),
                                                         pct_start=0.1)
        self.scaler = torch.amp.GradScaler("cuda", enabled=needs_scaler(device, self.amp))

    def extras(self):
        return {"scaler": self.scaler}

    def train_step(self, step: int, rng: np.random.Generator) -> dict[str, float]:
        low, high = self.sampler.batch(self.batch_size, rng)
        self.net.train()
        with autocast(self.device, self.amp):
            loss = F.l1_loss(self.net(low.to(self.device)).float(), high.to(self.device))
        optimize(loss, self.opt, scaler=self.scaler)
        self.sched.step()
        return {"loss": float(loss.detach())}


def train_network(net: RowUpsampler, sampler: PatchSampler, budget: Budget, iterations: int,
                  ctx: RunContext, progress, rng: np.random.Generator, every: int = 50) -> list[float]:
    """Train ``net`` through the loop core; returns the loss curve (the mean of every ``every`` iterations)."""
    loop = Loop(SelfSRTask(net, sampler, budget, iterations, ctx.device), iterations, steps_per_epoch=every,
                rng=rng, cancel=ctx.cancel)
    curve = []

    def on_event(name: str, fields: dict) -> None:
        if name == "epoch":
            curve.append(float(np.mean([r["loss"] for r in loop.history[-every:]])))
            ctx.check()
            if progress:
                progress(loop.step / iterations, f"training {loop.step}/{iterations}, L1 {curve[-1]:.4f}")

    loop.on_event = on_event
    loop.run()
    ctx.check()
    return curve

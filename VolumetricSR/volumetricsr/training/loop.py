"""The training loop core shared by every method: steps, epochs, validation, the best model per
stage, progress and cancel. It touches no files; :class:`~.trainer.Trainer` adds the work folder
(checkpoints, logs, signals) around it, and per-volume methods (selfsr) run it directly.

A run is a sequence of global steps ``0 .. total_steps-1``. Step ``s`` calls
``task.train_step(s, rng)``; after every ``steps_per_epoch`` steps (and the last) an epoch ends:
every ``val_every`` epochs (and at the end) the task validates, and a new best value of
``task.best_metric`` within the current ``task.stage(s)`` is recorded. Events go to ``on_event(name,
fields)``: ``step``, ``validate`` (starting), ``best``, ``epoch``, and ``stage_end`` after the
last step of a stage (multi-stage tasks). A loss that is not finite stops the run
(:class:`~volumetricsr.common.errors.TrainingError`) before the step counts, so no checkpoint holds it.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from volumetricsr.common.errors import Cancelled, TrainingError
from volumetricsr.common.progress import CancelToken
from volumetricsr.compute.threads import limited
from volumetricsr.training.distributed import LOCAL, Group, average_gradients

EventCallback = Callable[[str, dict], None]


class Loop:
    """The steps of one run. ``history`` holds the rows of the steps run since its owner last took
    them (:meth:`take_rows`; a per-volume run keeps them all). ``sync``: the ranks of a distributed
    run (:mod:`.distributed`), which agree on every step's losses and on stopping; rank 0 validates."""

    def __init__(self, task, total_steps: int, *, steps_per_epoch: int, val_every: int = 1,
                 rng: Optional[np.random.Generator] = None, cancel: Optional[CancelToken] = None,
                 on_event: Optional[EventCallback] = None, should_stop: Optional[Callable[[], bool]] = None,
                 sync: Group = LOCAL):
        self.task, self.total_steps = task, int(total_steps)
        self.steps_per_epoch, self.val_every = max(1, int(steps_per_epoch)), max(1, int(val_every))
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.cancel = cancel or CancelToken()
        self.on_event = on_event or (lambda name, fields: None)
        self.should_stop = should_stop or (lambda: False)
        self.sync = sync
        self.step, self.history, self.best = 0, [], {}   # best: {stage: {"metric", "value", "step"}}

    @property
    def epoch(self) -> int:
        return math.ceil(self.step / self.steps_per_epoch)

    def state(self) -> dict:
        return {"step": self.step, "best": self.best}

    def load_state(self, state: dict) -> None:
        self.step, self.best, self.history = state["step"], state["best"], []

    def take_rows(self) -> list[dict]:
        rows, self.history = self.history, []
        return rows

    def run(self) -> None:
        """Steps until ``total_steps`` or until cancelled (the token, or ``should_stop()``, on any rank),
        on a CPU with at most the task's ``cpu_threads``."""
        on_cpu = torch.device(getattr(self.task, "device", "cpu")).type == "cpu"
        with limited(getattr(self.task, "cpu_threads", None) if on_cpu else None):
            self._run()

    def _run(self) -> None:
        _, stop = self.sync.agree({}, self.cancel.cancelled)
        while self.step < self.total_steps and not stop:
            stage = self.task.stage(self.step)
            out = self.task.train_step(self.step, self.rng)
            out, stop = self.sync.agree(out, self.cancel.cancelled or self.should_stop())
            bad = next((k for k, v in out.items() if k.startswith("loss") and not math.isfinite(v)), None)
            if bad:
                raise TrainingError(f"{bad} became {out[bad]} at step {self.step + 1}"
                                    f"{f' (stage {stage})' if stage else ''}: the run diverged. The checkpoints "
                                    "from before it are kept; start again with a lower --lr or another --seed.")
            self.step += 1
            row = {"step": self.step, "epoch": self.epoch, **({"stage": stage} if stage else {}), **out}
            self.history.append(row)
            self.on_event("step", row)
            if stop:
                self.cancel.cancel()
                break
            if self.step % self.steps_per_epoch == 0 or self.step == self.total_steps:
                self.end_epoch(row, stage)
            if stage and self.step < self.total_steps and self.task.stage(self.step) != stage:
                self.on_event("stage_end", {"stage": stage, "step": self.step})

    def validate(self) -> dict[str, float]:
        """The task's validation on rank 0, shared with every rank; a cancel there stops them all."""
        metrics, cancelled = None, None
        if self.sync.is_main:
            try:
                metrics = self.task.validate(self.cancel)
            except Cancelled as exc:
                cancelled = exc
        metrics, stop = self.sync.share(metrics, cancelled is not None)
        if stop:
            self.cancel.cancel()
            raise cancelled or Cancelled("Stopped by another rank during validation.")
        return metrics

    def end_epoch(self, row: dict, stage: str) -> None:
        metrics = {}
        if self.epoch % self.val_every == 0 or self.step == self.total_steps:
            self.on_event("validate", {"epoch": self.epoch, "step": self.step})
            metrics = self.validate()
            row.update(metrics)
            name = self.task.best_metric
            value = metrics.get(name) if name else None
            best = self.best.get(stage)
            if value is not None and (best is None or value > best["value"]):
                self.best[stage] = {"metric": name, "value": value, "step": self.step}
                self.on_event("best", {"stage": stage, **self.best[stage]})
        best = self.best.get(stage, {})
        self.on_event("epoch", {"epoch": self.epoch, "step": self.step, **metrics, "best": best.get("value")})


def optimize(loss: torch.Tensor, *optimizers: torch.optim.Optimizer, grad_clip: float = 0.0,
             scaler: Optional[torch.amp.GradScaler] = None) -> None:
    """One optimisation step of ``loss`` for the parameters of ``optimizers``: zero, backward (through
    ``scaler`` for fp16), gradients averaged over the ranks of a distributed run, optional
    gradient-norm clipping, step."""
    parameters = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
    for opt in optimizers:
        opt.zero_grad(set_to_none=True)
    scaled = scaler is not None and scaler.is_enabled()
    (scaler.scale(loss) if scaled else loss).backward()
    average_gradients(parameters)
    if grad_clip:
        for opt in optimizers if scaled else ():
            scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    for opt in optimizers:
        scaler.step(opt) if scaled else opt.step()
    if scaled:
        scaler.update()


def autocast(device: str, enabled: bool = True):
    """Mixed precision for a training step: bf16 where the device has it natively (CUDA with bf16,
    a CPU asked for it), fp16 on older GPUs (then a GradScaler is needed: :func:`needs_scaler`)."""
    kind = torch.device(device).type
    if kind == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype, enabled=enabled)
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=enabled and kind == "cpu")


def needs_scaler(device: str, amp: bool) -> bool:
    return amp and torch.device(device).type == "cuda" and not torch.cuda.is_bf16_supported()

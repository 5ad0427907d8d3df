"""Training tasks: what one method needs trained. The loop core (:mod:`.loop`) runs the steps;
:class:`~.trainer.Trainer` adds the work folder; ``volumetricsr train`` builds the task from its
own command-line options, declared once in :attr:`Task.options` (their flags and checks are made
from the declarations).

A task owns its networks, optimizers and schedulers and any other state that must survive a resume
(:meth:`Task.extras`: GradScalers, image pools, EMA weights: objects with ``state_dict`` /
``load_state_dict``), draws its own training samples, takes one step at a given global step (a
GAN alternates its networks there; a staged method switches stages by the step, so a switch
survives a resume), validates, and describes the final model (weights + model-card fields).
"""
from __future__ import annotations

import argparse
import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from volumetricsr.common.errors import InputError
from volumetricsr.common.options import rules_of
from volumetricsr.common.registry import registrar
from volumetricsr.data.profiles import DEFAULT_PROFILE
from volumetricsr.common.progress import CancelToken

_TASKS: dict[str, Callable] = {}
#: Decorator: ``volumetricsr train --method name`` trains with this task class.
register_task = registrar(_TASKS)


def get_task(name: str) -> Callable:
    if name not in _TASKS:
        raise InputError(f"No trainer for method {name!r} (trainable: {', '.join(trainable())}).")
    return _TASKS[name]


def trainable() -> list[str]:
    return sorted(_TASKS)


class Task:
    """Base class. ``config`` is a plain dict (saved in checkpoints and model cards)."""

    method = ""
    best_metric: Optional[str] = "val_psnr"   # higher is better; None: no best, the last state is the result
    final_stage: Optional[str] = None         # the result is the best (or last) of this stage; None: any
    defaults: dict = {}
    options: tuple = ()         # this task's command-line options (volumetricsr.common.options.Option)
    option_rules: dict = {}     # their rules, made from ``options``
    required: tuple = ()        # the options a new run must be given (a resumed one has its own)
    cpu_threads: Optional[int] = None   # the most CPU threads its steps use (None: the process's)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "options" in vars(cls):
            cls.option_rules = rules_of(cls.options)

    def __init__(self, config: dict, device: str = "cpu"):
        self.config, self.device = config, device

    # -- command line (``volumetricsr train --method M``) ----------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """This method's own training options: a flag for each of :attr:`options`."""
        for option in cls.options:
            option.add_to(parser)

    @classmethod
    def check_required(cls, args: argparse.Namespace) -> None:
        for name in cls.required:
            if not getattr(args, name):
                raise InputError(f"--{name.replace('_', '-')} is needed (unless --resume).")

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> dict:
        """The defaults, updated with the value of each of :attr:`options`."""
        cls.check_required(args)
        return {**copy.deepcopy(cls.defaults), **{name: getattr(args, name) for name in cls.option_rules}}

    @classmethod
    def from_config(cls, config: dict, device: str, cache: Optional[Path] = None) -> "Task":
        """The task with its data (``cache``: a folder for prepared training data)."""
        return cls(config, device)

    def split(self) -> dict:
        """The data the run trains and validates on, exactly (compared on resume)."""
        return {}

    @classmethod
    def default_steps_per_epoch(cls, config: dict) -> int:
        return 100

    @classmethod
    def default_total_steps(cls, config: dict, epochs: int) -> int:
        """The run's length without ``--max-steps`` (a staged task's stages set it)."""
        return epochs * config["steps_per_epoch"]

    def card_training(self) -> dict:
        """Training settings for the model card."""
        return {}

    def card_metrics(self, row: dict) -> dict:
        """Model-card metrics from the history row of the chosen step."""
        return {k: round(v, 4) for k, v in row.items() if k.startswith("val_")}

    # -- training ------------------------------------------------------------------------------
    def stage(self, step: int) -> str:
        """Name of the stage global step ``step`` belongs to ('' for single-stage tasks)."""
        return ""

    def modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def schedulers(self) -> dict:
        return {}

    def extras(self) -> dict:
        return {}

    def train_step(self, step: int, rng: np.random.Generator) -> dict[str, float]:
        """Global step ``step``: draw a batch with ``rng``, take the optimisation step(s); losses, lr."""
        raise NotImplementedError

    def validate(self, cancel: Optional[CancelToken] = None) -> dict[str, float]:
        return {}

    def sample_image(self) -> Optional[np.ndarray]:
        """A 2-D picture of the model's current output in [0, 1], saved every epoch (None: none)."""
        return None

    def model_card(self) -> tuple[dict, dict]:
        """``(state_dict of the network to ship, card fields without id/weights/sha256)``."""
        raise NotImplementedError

    def _groups(self) -> dict:
        return {"modules": self.modules(), "optimizers": self.optimizers(), "schedulers": self.schedulers(),
                "extras": self.extras()}

    def state_dict(self) -> dict:
        return {g: {k: v.state_dict() for k, v in items.items()} for g, items in self._groups().items()}

    def load_state_dict(self, state: dict) -> None:
        for g, items in self._groups().items():
            for k, v in items.items():
                v.load_state_dict(state.get(g, {})[k])


def simulated_profile(config: dict) -> tuple:
    """``(shape, FWHM / slice spacing)`` with which a task simulates thick slices (``--profile``,
    ``--thickness-ratio``); older configs lack them and meant the default."""
    return config.get("profile", DEFAULT_PROFILE[0]), float(config.get("thickness_ratio", DEFAULT_PROFILE[1]))


class OneNetworkTask(Task):
    """A task with one network ``net``, one optimizer ``opt`` and one scheduler ``sched``."""

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"opt": self.opt}

    def schedulers(self):
        return {"sched": self.sched}


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up over ``warmup`` steps, then cosine decay to ``floor`` x the base rate at
    ``total_steps`` (and the floor beyond). The horizon is part of the saved state, so a resumed
    run continues the same curve."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup: int, floor: float = 0.01,
                 last_epoch: int = -1):
        self.total_steps, self.warmup, self.floor = int(total_steps), int(warmup), float(floor)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.total_steps - self.warmup))
        return self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * t))

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]


@dataclass(frozen=True)
class Budget:
    """How much a per-volume method trains: iterations, batch size and network width (a method's
    budget adds what else it sizes)."""

    iterations: int
    batch_size: int
    features: int


def default_budget(name: Optional[str], device: str) -> str:
    """The budget named, else the default: fast on a CPU, quality on a GPU."""
    return name or ("fast" if device == "cpu" else "quality")

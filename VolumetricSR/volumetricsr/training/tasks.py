"""Training tasks: what one method needs trained. The :class:`~.trainer.Trainer` owns the loop.

A task owns its networks, optimizers and schedulers, draws its own training samples, does one
optimisation step, validates, and describes the final model (weights + model-card fields). Methods
with several networks and optimizers (a CycleGAN) or several stages just return more of them; the
trainer checkpoints whatever :meth:`Task.modules`, :meth:`Task.optimizers` and
:meth:`Task.schedulers` return.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import sliding_window_inference
from ..errors import InputError
from ..metrics import evaluate
from ..normalization import Normalization
from ..progress import CancelToken
from ..volume import Volume
from . import data as tdata

_TASKS: dict[str, Callable] = {}


def register_task(name: str):
    def deco(cls):
        _TASKS[name] = cls
        return cls
    return deco


def get_task(name: str) -> Callable:
    if name not in _TASKS:
        raise InputError(f"No trainer for method {name!r} (trainable: {', '.join(sorted(_TASKS))}).")
    return _TASKS[name]


class Task:
    """Base class. ``config`` is a plain dict (saved in checkpoints and model cards)."""

    method = ""
    best_metric = "val_psnr"     # higher is better

    def __init__(self, config: dict, device: str = "cpu"):
        self.config, self.device = config, device

    def modules(self) -> dict[str, torch.nn.Module]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def schedulers(self) -> dict:
        return {}

    def train_step(self, rng: np.random.Generator) -> dict[str, float]:
        """Draw a batch with ``rng`` and take one optimisation step; returns losses and the lr."""
        raise NotImplementedError

    def validate(self, cancel: Optional[CancelToken] = None) -> dict[str, float]:
        return {}

    def model_card(self) -> tuple[dict, dict]:
        """``(state_dict of the network to ship, card fields without id/weights/sha256)``."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        groups = {"modules": self.modules(), "optimizers": self.optimizers(), "schedulers": self.schedulers()}
        return {g: {k: v.state_dict() for k, v in items.items()} for g, items in groups.items()}

    def load_state_dict(self, state: dict) -> None:
        groups = {"modules": self.modules(), "optimizers": self.optimizers(), "schedulers": self.schedulers()}
        for g, items in groups.items():
            for k, v in items.items():
                v.load_state_dict(state[g][k])


def warmup_cosine(total_steps: int, warmup: int, floor: float = 0.01) -> Callable[[int], float]:
    """LR multiplier: linear warm-up over ``warmup`` steps, then cosine decay to ``floor``."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    return factor


TVSRN_DEFAULTS = {
    "arch": {"factor": 5, "depth": 4, "channels": 8, "enc_layers": 4, "fims": 1, "tab_layers": 4,
             "dec_layers": 4, "heads": 8, "window": 8, "tab_window": [4, 8], "group": 8, "mlp_ratio": 4.0,
             "head_hidden": 16, "base": None},
    "lr": 3e-4, "weight_decay": 1e-4, "warmup": 100, "total_steps": 1000, "batch_size": 1, "crop": 256,
    "flip": True, "foreground": None, "fit_base": False, "val_crop": 0, "grad_clip": 1.0, "amp": False,
    "normalization": {"kind": "window", "low": -1024.0, "high": 2048.0},
}


@register_task("tvsrn")
class TVSRNTask(Task):
    """Supervised TVSRN: L1 between predicted and true thin slices of random 4-slice crops; AdamW;
    warm-up + cosine LR; optional bf16 autocast (``amp``); validation PSNR/SSIM (RPLHR protocol) on whole validation volumes (or their
    in-plane centre crops, ``val_crop``) run through the engine with the method's tiling."""

    method = "tvsrn"

    def __init__(self, config: dict, device: str = "cpu", dataset: Optional[tdata.Dataset] = None):
        from ..methods.tvsrn import TVSRNMethod
        from ..networks import TVSRN

        super().__init__(config, device)
        self.net = TVSRN(**config["arch"]).to(device)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, warmup_cosine(config["total_steps"], config["warmup"]))
        self.norm = Normalization.from_dict(config["normalization"])
        self.tiling = TVSRNMethod
        self.dataset = dataset
        self.train_pairs: list[tdata.Pair] = []
        self.val_pairs: list[tdata.Pair] = []
        if dataset is not None:
            factor = config["arch"]["factor"]
            self.train_pairs = [tdata.load_pair(c, factor, self.norm) for c in dataset.train]
            self.val_pairs = [tdata.centre_crop(tdata.load_pair(c, factor, self.norm), config["val_crop"])
                              for c in dataset.val]

        if config.get("fit_base") and self.train_pairs:
            self.fit_base(np.random.default_rng(config.get("seed", 0)))

    def fit_base(self, rng: np.random.Generator, samples: int = 200_000) -> None:
        """Start the network's linear base (``arch.base``) at the least-squares map from ``depth`` thick
        to ``D'`` thin values, fitted on pixels of random training windows (foreground ones if set)."""
        if self.net.base is None:
            raise InputError("fit_base needs a network with a linear base (arch base 'bspline' or 'linear').")
        depth, factor, thin = self.net.depth, self.net.factor, self.net.thin
        xs, ys = [], []
        for pair, n in zip(self.train_pairs, np.array_split(np.arange(samples), len(self.train_pairs))):
            level = self.config.get("foreground")
            pixels = tdata.foreground_pixels(pair, level) if level is not None else np.empty((0, 2), int)
            if not len(pixels):
                pixels = np.argwhere(np.ones(pair.thick.shape[1:], bool))
            yx = pixels[rng.integers(len(pixels), size=len(n))]
            k = rng.integers(0, pair.thick.shape[0] - depth + 1, size=len(n))
            xs.append(np.stack([pair.thick[k + d, yx[:, 0], yx[:, 1]] for d in range(depth)], 1))
            ys.append(np.stack([pair.thin[factor * k + t, yx[:, 0], yx[:, 1]] for t in range(thin)], 1))
        weights, *_ = np.linalg.lstsq(np.concatenate(xs), np.concatenate(ys), rcond=None)   # (depth, D')
        with torch.no_grad():
            self.net.base_weights.copy_(torch.from_numpy(weights.astype(np.float32)))

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"opt": self.opt}

    def schedulers(self):
        return {"sched": self.sched}

    def sample(self, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        depth, cfg = self.config["arch"]["depth"], self.config
        crops = [tdata.random_crop(self.train_pairs[int(rng.integers(len(self.train_pairs)))], rng, depth,
                                   cfg["crop"], cfg["flip"], cfg.get("foreground"))
                 for _ in range(cfg["batch_size"])]
        h = min(c[0].shape[1] for c in crops)    # cases may be smaller than the crop: a common size
        w = min(c[0].shape[2] for c in crops)
        thick = torch.from_numpy(np.stack([c[0][:, :h, :w] for c in crops]))[:, None]
        thin = torch.from_numpy(np.stack([c[1][:, :h, :w] for c in crops]))[:, None]
        return thick.to(self.device), thin.to(self.device)

    def train_step(self, rng: np.random.Generator) -> dict[str, float]:
        thick, thin = self.sample(rng)
        self.net.train()
        device_type = torch.device(self.device).type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bool(self.config.get("amp"))):
            loss = F.l1_loss(self.net(thick).float(), thin)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.config["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.config["grad_clip"])
        lr = self.opt.param_groups[0]["lr"]
        self.opt.step()
        self.sched.step()
        return {"loss": float(loss.detach()), "lr": lr}

    def predict(self, thick: np.ndarray, cancel: Optional[CancelToken] = None) -> np.ndarray:
        """Normalised thick stack -> normalised thin stack, with the tvsrn method's tiling."""
        window = self.tiling.window
        window = (self.config["arch"]["depth"], min(window[1], thick.shape[1]), min(window[2], thick.shape[2]))
        self.net.eval()

        def predictor(batch: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return self.net(batch.to(self.device)).float()

        out = sliding_window_inference(torch.from_numpy(thick)[None], predictor, window,
                                       scale=(self.config["arch"]["factor"], 1, 1), overlap=self.tiling.overlap,
                                       blend="uniform", cancel=cancel)
        return out[0].numpy()

    def validate(self, cancel: Optional[CancelToken] = None) -> dict[str, float]:
        if not self.val_pairs:
            return {}
        lo, hi = self.norm.low, self.norm.high   # window normalisation: back to HU for the RPLHR protocol
        scores = []
        for pair in self.val_pairs:
            pred = self.norm.inverse(self.predict(pair.thick, cancel), lo, hi)
            ref = self.norm.inverse(pair.thin, lo, hi)
            scores.append(evaluate(Volume(pred, (1, 1, 1)), Volume(ref, (1, 1, 1)), "rplhr", axis="K"))
        return {"val_psnr": float(np.mean([s["psnr"] for s in scores])),
                "val_ssim": float(np.mean([s["ssim"] for s in scores]))}

    def model_card(self) -> tuple[dict, dict]:
        arch = dict(self.config["arch"])
        depth = arch["depth"]
        info = self.dataset.describe() if self.dataset is not None else {}
        if info.get("pairs") in ("pseudo", "mixed"):
            info["note"] = ("pseudo-pairs: thick slices simulated from thin volumes by slice-profile averaging "
                            "(volumetricsr.simulate.simulate_thick, Gaussian profile, thickness = new spacing), "
                            "not real thick acquisitions")
        fields = {
            "method": "tvsrn", "architecture": {"name": "tvsrn", "args": arch},
            "native_factor": arch["factor"], "modality": "CT", "normalization": dict(self.config["normalization"]),
            "window": [depth, *self.tiling.window[1:]], "training_data": info,
        }
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items()}, fields

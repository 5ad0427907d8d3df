"""TVSRN's training task: supervised on thick/thin pairs (RPLHR-CT layout or a list of cases)."""
from __future__ import annotations
import argparse
import copy
import json
import warnings
from pathlib import Path
from typing import Optional
import numpy as np
import torch
import torch.nn.functional as F
from volumetricsr.compute.engine import sliding_window_inference
from volumetricsr.common.errors import InputError
from volumetricsr.data.metrics import evaluate
from volumetricsr.data.normalization import Normalization
from volumetricsr.common.options import BATCH, FRACTION, Count, Number, OneOf, Option, Several, text
from volumetricsr.compute.predictors import native_bf16
from volumetricsr.data.profiles import PROFILE_OPTIONS
from volumetricsr.common.progress import CancelToken
from volumetricsr.data.volume import Volume
from volumetricsr.training import pairs as tdata
from volumetricsr.training.loop import autocast, optimize
from volumetricsr.training.tasks import OneNetworkTask, WarmupCosine, register_task, simulated_profile
from volumetricsr.methods.options import ON_OFF


# The training default adds the learned linear image skip (``base``, started at the least-squares fit)
# to the paper's network: the ablation in the README (benchmarks/tvsrn_ablation.py, tvsrn_diagnose.py).
# The paper's network itself: --arch '{"base": null}' --no-fit-base.
TVSRN_DEFAULTS = {
    "arch": {"factor": 5, "depth": 4, "channels": 8, "enc_layers": 4, "fims": 1, "tab_layers": 4,
             "dec_layers": 4, "heads": 8, "window": 8, "tab_window": [4, 8], "group": 8, "mlp_ratio": 4.0,
             "head_hidden": 16, "base": "bspline", "init": "paper", "final_norm": False},
    "lr": 3e-4, "weight_decay": 1e-4, "warmup": 100, "total_steps": 1000, "batch_size": 1, "crop": 256,
    "flip": True, "foreground": None, "fit_base": True, "val_crop": 0, "grad_clip": 1.0, "amp": False,
    "loss_slices": None, "val_fraction": 0.2, "val_split": "case", "seed": 0,
    "normalization": {"kind": "window", "low": -1024.0, "high": 2048.0},
}


@register_task("tvsrn")
class TVSRNTask(OneNetworkTask):
    """Supervised TVSRN: L1 between predicted and true thin slices of random 4-slice crops; AdamW;
    warm-up + cosine LR; optional bf16 autocast (``amp``); validation PSNR/SSIM (RPLHR protocol) on
    whole validation volumes (or their in-plane centre crops, ``val_crop``) run through the engine
    with the method's tiling. ``loss_slices``: ``[a, b]`` restricts the loss to thin slices a..b-1
    of each window (the reference trains on the central 10 of 16); None: all of them."""

    method = "tvsrn"
    defaults = TVSRN_DEFAULTS
    required = ("data",)
    options = (
        Option("data", text, "RPLHR-CT folder (train/val with 1mm/ and 5mm/), a CSV/text list of thin[,thick[,split]] "
               "lines, or a folder of thin volumes (pseudo-pairs)"),
        Option("val_fraction", FRACTION, "cases (or slab) held out when no split is given",
               default=defaults["val_fraction"]),
        Option("val_split", OneOf(("case", "slab")), "hold out whole cases, or the last slab of every case",
               default=defaults["val_split"]),
        Option("val_crop", Count(0, 4096), "validate on the in-plane centre NxN (0: whole volumes)",
               default=defaults["val_crop"]),
        Option("batch_size", BATCH, "", default=defaults["batch_size"]),
        Option("crop", Count(8, 4096), "in-plane size of the random training crops", default=defaults["crop"]),
        Option("flip", ON_OFF, "no random left-right flips", default=defaults["flip"], flag="--no-flip", const=False),
        Option("foreground", FRACTION, "centre crops on pixels above this normalised intensity (e.g. 0.25 = -256 HU "
               "with the CT window): less training time spent on air", metavar="LEVEL"),
        Option("fit_base", ON_OFF, "start the network's linear base (arch 'base') at the least-squares thick-to-thin "
               "map of the training data (default: yes when the network has a base)", negatable=True),
        Option("loss_slices", Several(Count(0, 4096), 2), "train on thin slices A..B-1 of each window only (default: "
               "all)", metavar=("A", "B")),
        Option("lr", Number(0.0, 1.0), "", default=defaults["lr"]),
        Option("weight_decay", FRACTION, "", default=defaults["weight_decay"]),
        Option("warmup", Count(0, 10**7), "linear LR warm-up steps before the cosine decay", default=defaults["warmup"]),
        Option("factor", Count(2, 16), "thin slices per thick slice", default=defaults["arch"]["factor"]),
        Option("arch", text, "JSON of network arguments, e.g. '{\"base\": \"bspline\", \"init\": \"balanced\", "
               "\"final_norm\": true}'", default="{}"),
        Option("amp", ON_OFF, "bf16 autocast in training steps (faster on recent GPUs)", default=defaults["amp"]),
        *PROFILE_OPTIONS,
    )

    @classmethod
    def config_from_args(cls, args: argparse.Namespace) -> dict:
        cls.check_required(args)
        try:
            arch = json.loads(args.arch)
        except ValueError as exc:
            raise InputError(f"--arch is not JSON: {exc}")
        config = copy.deepcopy(cls.defaults)
        unknown = set(arch) - set(config["arch"])
        if unknown:
            raise InputError(f"Unknown network arguments {sorted(unknown)}; known: {sorted(config['arch'])}.")
        config["arch"].update(arch, factor=args.factor)
        config.update(lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup, batch_size=args.batch_size,
                      crop=args.crop, flip=args.flip, foreground=args.foreground,
                      fit_base=config["arch"]["base"] is not None if args.fit_base is None else args.fit_base,
                      val_crop=args.val_crop, data=str(args.data), val_fraction=args.val_fraction,
                      val_split=args.val_split, amp=args.amp, loss_slices=args.loss_slices,
                      profile=args.profile, thickness_ratio=args.thickness_ratio)
        return config

    @staticmethod
    def discover(config: dict) -> tdata.Dataset:
        return tdata.discover(config["data"], config["val_fraction"], config.get("val_split", "case"))

    @classmethod
    def from_config(cls, config: dict, device: str, cache: Optional[Path] = None) -> "TVSRNTask":
        return cls(config, device, cls.discover(config), cache)

    @classmethod
    def default_steps_per_epoch(cls, config: dict) -> int:
        return max(100, len(cls.discover(config).train))    # one random crop per training case per step, >= 100

    def __init__(self, config: dict, device: str = "cpu", dataset: Optional[tdata.Dataset] = None,
                 cache: Optional[Path] = None):
        from volumetricsr.methods.tvsrn.method import TVSRNMethod
        from volumetricsr.compute.networks import TVSRN

        super().__init__(config, device)
        with torch.random.fork_rng(devices=[]):      # the run's seed, without touching the process's RNG
            torch.manual_seed(config.get("seed", 0))
            self.net = TVSRN(**config["arch"]).to(device)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
        self.sched = WarmupCosine(self.opt, config["total_steps"], config["warmup"])
        self.norm = Normalization.from_dict(config["normalization"])
        self.amp = bool(config.get("amp"))
        if self.amp and torch.device(device).type == "cpu" and not native_bf16("cpu"):
            warnings.warn("--amp: this CPU has no native bf16 (AVX512-BF16/AMX), where bf16 is emulated and "
                          "many times slower; training in fp32.")
            self.amp = False
        self.tiling = TVSRNMethod
        self.dataset = dataset
        self.train_pairs: list = []
        self.val_pairs: list = []
        if dataset is not None:
            factor, made = config["arch"]["factor"], simulated_profile(config)
            self.train_pairs = [tdata.open_pair(c, factor, self.norm, cache, made) for c in dataset.train]
            self.val_pairs = [tdata.centre_crop(tdata.open_pair(c, factor, self.norm, cache, made), config["val_crop"])
                              for c in dataset.val]

        if config.get("fit_base") and self.train_pairs:
            self.fit_base(np.random.default_rng(config.get("seed", 0)))

    def split(self) -> dict:
        return self.dataset.split() if self.dataset is not None else {}

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

    def train_step(self, step: int, rng: np.random.Generator) -> dict[str, float]:
        thick, thin = self.sample(rng)
        self.net.train()
        keep = slice(*self.config["loss_slices"]) if self.config.get("loss_slices") else slice(None)
        with autocast(self.device, self.amp):
            loss = F.l1_loss(self.net(thick).float()[:, :, keep], thin[:, :, keep])
        lr = self.opt.param_groups[0]["lr"]
        optimize(loss, self.opt, grad_clip=self.config["grad_clip"])
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

        out = sliding_window_inference(torch.from_numpy(np.array(thick))[None], predictor, window,
                                       scale=(self.config["arch"]["factor"], 1, 1), overlap=self.tiling.overlap,
                                       blend="gaussian", cancel=cancel)
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
            shape, ratio = simulated_profile(self.config)
            info["note"] = ("pseudo-pairs: thick slices simulated from thin volumes by slice-profile averaging "
                            f"(volumetricsr.data.simulate.simulate_thick, {shape} profile, FWHM = {ratio:g} x the new "
                            "spacing), not real thick acquisitions")
        fields = {
            "method": "tvsrn", "architecture": {"name": "tvsrn", "args": arch},
            "native_factor": arch["factor"], "modality": "CT", "normalization": dict(self.config["normalization"]),
            "window": [depth, *self.tiling.window[1:]], "training_data": info,
        }
        if self.dataset is not None:
            spacings = [round(c.slice_spacing(arch["factor"]), 4) for c in self.dataset.train]
            fields["slice_spacing_mm"] = [min(spacings), max(spacings)]
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items()}, fields

    def card_training(self) -> dict:
        c = self.config
        return {"batch_size": c["batch_size"], "crop": c["crop"], "foreground": c.get("foreground"),
                "fit_base": c.get("fit_base", False), "loss_slices": c.get("loss_slices"),
                "optimizer": f"AdamW lr {c['lr']} wd {c['weight_decay']}",
                "schedule": f"warm-up {c['warmup']} + cosine over {c['total_steps']} steps", "loss": "L1"}

    def card_metrics(self, row: dict) -> dict:
        metrics = super().card_metrics(row)
        if metrics:
            metrics["protocol"] = "rplhr"
            metrics["evaluated_on"] = (f"validation cases, in-plane centre {self.config['val_crop']}^2"
                                       if self.config["val_crop"] else "whole validation volumes") + ", tvsrn tiling"
        return metrics

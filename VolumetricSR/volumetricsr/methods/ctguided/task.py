"""The CT-guided method's training task, :class:`CTGuidedTask`.

Training (``volumetricsr train --method ctguided --ct CTS --mri MRIS --out ID``), three stages of
T, T and 8T steps (Algorithm 1 of the paper); the stage is a function of the global step, so a run
resumes inside any stage:

1. ``ct``: the SRNet learns to undo D on the CTs: ``|y_H - F(D(y_H))|_1``. D is the project's slice
   degradation: blur along the rows with the slice profile (Gaussian, FWHM = the MR slice spacing)
   and keep every K-th row; the CTs are resampled to the spacing the MR network produces
   (MR slice spacing / K).
2. ``mri``: self-supervised on the MRIs' own thick planes: ``|F(x_L) - F(D(F(x_L)))|_1``, with
   ``F(x_L)`` as the target (the paper's "paired pseudo LR-HR MR images").
3. ``joint``: the discriminators step first (LSGAN), then the CITNet and the SRNet together on eq. 7:
   adversarial + 10 (self-reconstruction + cross-cycle) + 1 latent reconstruction + 1 perceptual.
   The perceptual features are VGG16's (relu3_3) from a local torchvision weights file
   (``--perceptual-weights``, checked by SHA256), or else the edge-pyramid substitute
   (:mod:`~volumetricsr.compute.perceptual`); the model card says which.

Images are 2-D: planes that contain the thick axis (MR) and planes of the isotropic CTs along every
axis, in patches. The result is the best state of the final stage by ``val_psnr``: the MRIs' own
in-plane slices degraded by D along one axis and restored by the SRNet (an unsupervised score
from the training MRIs themselves; it only chooses the checkpoint, it never trains). Each stage's
last state is kept in ``checkpoints/stage_ct.pt`` and ``stage_mri.pt`` for comparisons; a model is
written only from the final stage.

Decisions the paper leaves open: the SRNet adds its output to the linear interpolation of its input
(starts as interpolation); Adam 1e-3 with a cosine decay per pre-training stage (the paper's 1e-4
learns little in the few hundred steps a CPU affords), 1e-4 in the joint stage (the paper's) with
MUNIT's betas (0.5, 0.999) and weight decay 1e-4 for the CITNet; image patches are cut to sides
that are multiples of 4 before the CITNet; three switches (all off: the paper's
eq. 7) change the joint stage: ``consistency`` adds ``|D(F(x_L)) - x_L|_1`` (the acquired slices),
``translated_pairs`` adds ``|F(D(x'_H)) - x'_H|_1`` on the CITNet's CT-to-MR translations (CT
structure in MR contrast, as fixed targets), and ``fixed_targets`` detaches the SRNet's images where
they are the targets of the self- and cross-cycle reconstructions.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from volumetricsr.common.errors import InputError
from volumetricsr.common.options import BATCH, Count, Number, Option, text
from volumetricsr.data.normalization import for_modality
from volumetricsr.data.profiles import PROFILE_OPTIONS
from volumetricsr.training.loop import optimize
from volumetricsr.training.losses import lsgan
from volumetricsr.training.tasks import Task, register_task, simulated_profile
from volumetricsr.methods.ctguided.data import (CTPatches, LowResMR, ThickPlanePatches, UnpairedData, in_plane_pairs,
                                                mr_kernel, read_hr_ct, read_lr_mri)
from volumetricsr.methods.ctguided.losses import citnet_losses, crop4, degrade
from volumetricsr.methods.options import ON_OFF

STAGES = ("ct", "mri", "joint")
#: Stage lengths in units of T (Algorithm 1: T, T, 8T).
STAGE_UNITS = (1, 1, 8)

CTGUIDED_DEFAULTS = {
    "factor": 4, "sr": {"features": 32, "growth": 16, "blocks": 4, "layers": 4},
    "citnet": {"dim": 16, "res": 2, "attribute": 8, "mlp": 64}, "discriminator": {"dim": 16, "scales": 2},
    "stage_iterations": 100, "batch_size": 4, "patch": 64, "sr_lr": 1e-3, "lr": 1e-4,
    "weights": {"adv": 1.0, "recon": 10.0, "latent": 1.0, "percep": 1.0}, "consistency": 0.0,
    "translated_pairs": 0.0, "fixed_targets": False,
    "profile": "gaussian", "thickness_ratio": 1.0, "hr_spacing": None, "perceptual_weights": None,
    "perceptual_sha256": None,
    "val_patches": 64,
}


def hr_spacing(config: dict, mris: list[LowResMR]) -> float:
    """The spacing the SRNet produces (and the CTs are resampled to): ``hr_spacing``, or the first
    MRI's slice spacing / K."""
    return config.get("hr_spacing") or mris[0].spacing / config["factor"]


def _stage_bounds(t: int) -> list[int]:
    """Global steps where each stage ends."""
    return list(np.cumsum([u * t for u in STAGE_UNITS]))


@register_task("ctguided")
class CTGuidedTask(Task):
    """The three stages on the training core (see the module docstring): ``stage(step)`` names the
    stage, ``train_step`` takes that stage's step, ``validate`` scores the SRNet on the MRIs' own
    in-plane slices; the SRNet is the model."""

    method = "ctguided"
    best_metric = "val_psnr"
    final_stage = "joint"
    defaults = CTGUIDED_DEFAULTS
    options = (
        Option("data", text, "a folder with sub-folders ct/ and mri/ (instead of --ct and --mri; what the Slicer "
               "training module passes)", metavar="FOLDER"),
        Option("ct", text, "high-resolution CTs: a folder, one volume, or a list file"),
        Option("mri", text, "low-resolution MRIs (any thick axis): a folder, one volume, or a list file"),
        Option("factor", Count(2, 8), "K: rows the SRNet makes of each thick row", default=defaults["factor"]),
        Option("stage_iterations", Count(1, 10**7), "T: stages of T, T and 8T steps (the run: 10T steps; --epochs is "
               "not used)", default=defaults["stage_iterations"]),
        Option("perceptual_weights", text, "a local torchvision VGG16 state dict for the perceptual loss (default: the "
               "edge-pyramid substitute)", metavar="VGG16.pth"),
        Option("perceptual_sha256", text, "its SHA256 (default: the hash prefix in torchvision's file name)",
               metavar="HEX"),
        Option("perceptual_weight", Number(0.0, 1000.0, fraction=True), "lambda3 of eq. 7 (0: no perceptual loss, "
               "the ablation)", default=defaults["weights"]["percep"]),
        Option("hr_spacing", Number(0.0, 100.0, " mm"), "spacing the SRNet produces and the CTs are resampled to "
               "(default: the first MRI's slice spacing / K)", metavar="MM"),
        Option("batch_size", BATCH, "", default=defaults["batch_size"]),
        Option("patch", Count(32, 512), "high-resolution patch side", default=defaults["patch"]),
        *PROFILE_OPTIONS,
        Option("lr", Number(0.0, 1.0), "Adam rate of the joint stage (all networks)", default=defaults["lr"]),
        Option("sr_lr", Number(0.0, 1.0), "SRNet rate of stages 1 and 2 (cosine decay)", default=defaults["sr_lr"]),
        Option("consistency", Number(0.0, 1000.0, fraction=True), "weight of |D(F(x_L)) - x_L| in the joint stage "
               "(default 0: the paper's loss)", default=defaults["consistency"]),
        Option("translated_pairs", Number(0.0, 1000.0, fraction=True), "weight of |F(D(x')) - x'| in the joint stage, "
               "x' the CITNet's CT-to-MR translations (default 0: the paper's loss)",
               default=defaults["translated_pairs"]),
        Option("fixed_targets", ON_OFF, "the SRNet's images are fixed targets of the reconstruction losses (the SRNet "
               "learns only through them as inputs; default: the paper's joint gradient)",
               default=defaults["fixed_targets"]),
    )

    def __init__(self, config: dict, cts: list[np.ndarray], mris: list[LowResMR], device: str = "cpu",
                 data: Optional[UnpairedData] = None):
        from volumetricsr.compute.networks.munit import CITNet, MultiScaleDiscriminator
        from volumetricsr.compute.networks.rdn import RDN
        from volumetricsr.compute.perceptual import feature_extractor

        super().__init__(config, device)
        self.data, self.factor = data, int(config["factor"])
        self.bounds = _stage_bounds(int(config["stage_iterations"]))
        with torch.random.fork_rng(devices=[]):         # the run's seed, not the process's random state
            torch.manual_seed(config.get("seed", 0))
            self.sr = RDN(self.factor, **config["sr"]).to(device)
            self.cit = CITNet(**config["citnet"]).to(device)
            self.d_x, self.d_y = (MultiScaleDiscriminator(**config["discriminator"]).to(device) for _ in range(2))
        self.phi, self.perceptual = feature_extractor(config.get("perceptual_weights"),
                                                      config.get("perceptual_sha256"))
        self.phi.to(device)
        self.opt_sr = torch.optim.Adam(self.sr.parameters(), config["sr_lr"])
        gan = {"lr": config["lr"], "betas": (0.5, 0.999), "weight_decay": 1e-4}
        self.opt_gen = torch.optim.Adam(self.cit.parameters(), **gan)
        self.opt_dis = torch.optim.Adam([*self.d_x.parameters(), *self.d_y.parameters()], **gan)
        spacings = [m.spacing for m in mris]
        self.hr_spacing = hr_spacing(config, mris)
        shape, ratio = simulated_profile(config)
        self.kernel = torch.from_numpy(mr_kernel(shape, spacings[0], self.factor, ratio).astype(np.float32))
        patch = config["patch"]
        self.ct = CTPatches(cts, self.factor, self.kernel.numpy(), patch)
        self.mr = ThickPlanePatches([m.stack for m in mris], self.ct.samplers[0].lr_rows, patch)
        self.spacings, self.mri_names = spacings, [m.name for m in mris]
        val_rng = np.random.default_rng(config.get("seed", 0) + 1)
        self.val = [in_plane_pairs(m, self.factor, (shape, ratio), patch, -(-config["val_patches"] // len(mris)),
                                   val_rng) for m in mris]
        first = mris[0].stack
        self.sample_plane = np.ascontiguousarray(first[:, first.shape[1] // 2, :])

    # -- command line
    @classmethod
    def config_from_args(cls, args) -> dict:
        if args.data and not (args.ct or args.mri):
            args.ct, args.mri = (str(Path(args.data) / d) for d in ("ct", "mri"))
            if not all(Path(d).is_dir() for d in (args.ct, args.mri)):
                raise InputError(f"--data {args.data} needs sub-folders ct/ (high-resolution CTs) and mri/ "
                                 "(low-resolution MRIs); or give --ct and --mri.")
        if not args.ct or not args.mri:
            raise InputError("--ct and --mri are needed, or --data with ct/ and mri/ (unless --resume).")
        config = copy.deepcopy(cls.defaults)
        config.update(ct=str(args.ct), mri=str(args.mri), factor=args.factor, stage_iterations=args.stage_iterations,
                      perceptual_weights=args.perceptual_weights, perceptual_sha256=args.perceptual_sha256,
                      hr_spacing=args.hr_spacing, batch_size=args.batch_size, patch=args.patch, lr=args.lr,
                      sr_lr=args.sr_lr, consistency=args.consistency, translated_pairs=args.translated_pairs,
                      fixed_targets=args.fixed_targets, profile=args.profile, thickness_ratio=args.thickness_ratio)
        config["weights"]["percep"] = args.perceptual_weight
        if config["perceptual_weights"]:         # refused before any data is read
            from volumetricsr.compute.perceptual import load_vgg16

            load_vgg16(config["perceptual_weights"], config["perceptual_sha256"])
        return config

    @classmethod
    def from_config(cls, config: dict, device: str, cache: Optional[Path] = None) -> "CTGuidedTask":
        data = UnpairedData.discover(config["ct"], config["mri"])
        mris = [read_lr_mri(p) for p in data.mri]
        spacing = hr_spacing(config, mris)
        return cls(config, [read_hr_ct(p, spacing) for p in data.ct], mris, device, data)

    @classmethod
    def default_steps_per_epoch(cls, config: dict) -> int:
        """About a quarter of a stage, dividing T (an epoch never spans two stages)."""
        t = int(config["stage_iterations"])
        return next(d for d in range(max(1, t // 4), 0, -1) if t % d == 0)

    @classmethod
    def default_total_steps(cls, config: dict, epochs: int) -> int:
        return _stage_bounds(int(config["stage_iterations"]))[-1]

    def split(self) -> dict:
        return self.data.split() if self.data is not None else {}

    # -- state
    def stage(self, step: int) -> str:
        return STAGES[min(int(np.searchsorted(self.bounds, step, side="right")), len(STAGES) - 1)]

    def modules(self):
        return {"sr": self.sr, "cit": self.cit, "d_x": self.d_x, "d_y": self.d_y}

    def optimizers(self):
        return {"sr": self.opt_sr, "gen": self.opt_gen, "dis": self.opt_dis}

    def sr_rate(self, step: int) -> float:
        """The SRNet's rate: cosine from ``sr_lr`` to 1 % of it within stages 1 and 2, then ``lr``."""
        stage = self.stage(step)
        if stage == "joint":
            return self.config["lr"]
        t = self.config["stage_iterations"]
        progress = (step % t) / max(1, t - 1)
        return self.config["sr_lr"] * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))

    # -- steps
    def train_step(self, step: int, rng: np.random.Generator) -> dict[str, float]:
        for group in self.opt_sr.param_groups:
            group["lr"] = self.sr_rate(step)
        for m in self.modules().values():
            m.train()
        stage, bs = self.stage(step), self.config["batch_size"]
        if stage == "ct":
            low, high = (t.to(self.device) for t in self.ct.batch(bs, rng))
            loss = F.l1_loss(self.sr(low), high)
            optimize(loss, self.opt_sr)
            return {"loss": float(loss.detach()), "lr": self.sr_rate(step)}
        x_l = self.mr.batch(bs, rng).to(self.device)
        if stage == "mri":
            with torch.no_grad():
                target = self.sr(x_l)
            loss = F.l1_loss(self.sr(degrade(target, self.kernel, self.factor)), target)
            optimize(loss, self.opt_sr)
            return {"loss": float(loss.detach()), "lr": self.sr_rate(step)}
        return self._joint_step(x_l, rng)

    def _joint_step(self, x_l: torch.Tensor, rng: np.random.Generator) -> dict[str, float]:
        _, y_h = self.ct.batch(x_l.shape[0], rng)
        y_h = crop4(y_h.to(self.device))
        n = x_l.shape[0]
        a_x, a_y = self.cit.sample_attribute(n, rng, self.device), self.cit.sample_attribute(n, rng, self.device)
        w = self.config["weights"]
        # the discriminators first (Algorithm 1): the SRNet's MR images are the real MR domain
        with torch.no_grad():
            x_h = crop4(self.sr(x_l))
            x_fake = self.cit.gen_x(self.cit.content_y(y_h), a_x)
            y_fake = self.cit.gen_y(self.cit.content_x(x_h), a_y)
        loss_d = (lsgan(self.d_x(x_h), True) + lsgan(self.d_x(x_fake), False)
                  + lsgan(self.d_y(y_h), True) + lsgan(self.d_y(y_fake), False))
        optimize(loss_d, self.opt_dis)
        # then the CITNet and the SRNet on eq. 7
        for d in (self.d_x, self.d_y):
            d.requires_grad_(False)
        sr_out = self.sr(x_l)
        x_h = crop4(sr_out)
        losses, x_fake, y_fake = citnet_losses(self.cit, x_h, y_h, a_x, a_y, self.phi,
                                               x_h.detach() if self.config.get("fixed_targets") else x_h)
        adv = lsgan(self.d_x(x_fake), True) + lsgan(self.d_y(y_fake), True)
        loss = (w["adv"] * adv + w["recon"] * (losses["self"] + losses["cycle"]) + w["latent"] * losses["latent"]
                + w["percep"] * losses["percep"])
        if self.config.get("consistency"):
            losses["consistency"] = F.l1_loss(degrade(sr_out, self.kernel, self.factor), x_l)
            loss = loss + self.config["consistency"] * losses["consistency"]
        if self.config.get("translated_pairs"):      # CT content in MR contrast: sharp targets for the SRNet
            rows = (x_fake.shape[-2] - 1) // self.factor * self.factor + 1
            target = x_fake.detach()[..., :rows, :]
            losses["translated"] = F.l1_loss(self.sr(degrade(target, self.kernel, self.factor)), target)
            loss = loss + self.config["translated_pairs"] * losses["translated"]
        optimize(loss, self.opt_sr, self.opt_gen)
        for d in (self.d_x, self.d_y):
            d.requires_grad_(True)
        return {"loss": float(loss.detach()), "loss_d": float(loss_d.detach()), "loss_adv": float(adv.detach()),
                **{f"loss_{k}": float(v.detach()) for k, v in losses.items()}, "lr": self.config["lr"]}

    # -- validation and pictures
    def validate(self, cancel=None) -> dict[str, float]:
        """PSNR of the SRNet on the MRIs' own in-plane slices degraded by D (values in [-1, 1], peak 2)."""
        self.sr.eval()
        errors, l1 = [], []
        with torch.inference_mode():
            for low, high in self.val:
                for i in range(0, len(low), 16):
                    pred = self.sr(low[i:i + 16].to(self.device)).cpu()
                    errors.append(((pred - high[i:i + 16]) ** 2).flatten(1).mean(1))
                    l1.append((pred - high[i:i + 16]).abs().flatten(1).mean(1))
        mse = float(torch.cat(errors).mean())
        return {"val_psnr": 10 * math.log10(4.0 / max(mse, 1e-12)), "val_l1": float(torch.cat(l1).mean())}

    def sample_image(self) -> Optional[np.ndarray]:
        """A thick plane of the first MRI: linear interpolation | SRNet, in [0, 1]."""
        x = torch.from_numpy(self.sample_plane)[None, None].to(self.device)
        self.sr.eval()
        with torch.inference_mode():
            after = self.sr(x)
            before = F.interpolate(x, size=after.shape[-2:], mode="bilinear", align_corners=True)
        return (torch.cat([before, after], -1)[0, 0].clamp(-1, 1).cpu().numpy() + 1) / 2

    # -- the model
    def model_card(self) -> tuple[dict, dict]:
        c = self.config
        t = int(c["stage_iterations"])
        bounds = [0, *self.bounds]
        fields = {"method": "ctguided", "native_factor": self.factor, "modality": "MR",
                  "architecture": {"name": "rdn", "args": {"factor": self.factor, **c["sr"]}},
                  "normalization": asdict(for_modality("MR")),
                  "training_data": {**(self.data.describe() if self.data else {"mri": self.mri_names}),
                                    "hr_spacing_mm": round(self.hr_spacing, 4),
                                    "degradation": f"{simulated_profile(c)[0]} slice profile, FWHM = "
                                                   f"{simulated_profile(c)[1]:g} x the MR slice spacing, "
                                                   f"every {self.factor}th row"},
                  "slice_spacing_mm": [round(min(self.spacings), 4), round(max(self.spacings), 4)],
                  "perceptual": self.perceptual if c["weights"]["percep"] else {"kind": "none (lambda3 = 0)"},
                  "stages": {"T": t, **{s: [int(a), int(b)] for s, a, b in zip(STAGES, bounds, bounds[1:])}}}
        return {k: v.detach().cpu() for k, v in self.sr.state_dict().items()}, fields

    def card_training(self) -> dict:
        c = self.config
        return {"stage_iterations": c["stage_iterations"], "batch_size": c["batch_size"], "patch": c["patch"],
                "sr_lr": c["sr_lr"], "lr": c["lr"], "loss_weights": c["weights"], "consistency": c["consistency"],
                "translated_pairs": c.get("translated_pairs", 0.0), "fixed_targets": c.get("fixed_targets", False),
                "citnet": c["citnet"], "discriminator": c["discriminator"]}

    def card_metrics(self, row: dict) -> dict:
        metrics = super().card_metrics(row)
        if metrics:
            metrics["evaluated_on"] = ("the training MRIs' own in-plane slices degraded by D (no high-resolution "
                                       "MRI); see heldout for a held-out volume")
        return metrics

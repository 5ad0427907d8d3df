"""CLADE's training task (:class:`CladeTask`): the CycleGAN step on the training core, per volume (the
method, :mod:`.method`) or over several volumes of one protocol (``volumetricsr train --method clade``)."""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from volumetricsr.common.errors import InputError
from volumetricsr.common.options import BATCH, Count, Number, Option, text
from volumetricsr.compute.networks.clade import Generator, PatchDiscriminator
from volumetricsr.data.normalization import for_modality
from volumetricsr.data.profiles import PROFILE_OPTIONS
from volumetricsr.training.loop import optimize
from volumetricsr.training.losses import lsgan
from volumetricsr.training.tasks import Task, register_task, simulated_profile
from volumetricsr.methods.clade.data import PATCH, PlanePatches, read_for_training
from volumetricsr.methods.clade.losses import ImagePool, gmap_loss, loss_weights
from volumetricsr.methods.options import METHOD_OPTIONS, MODALITY

CLADE_DEFAULTS = {"features": 32, "blocks": 6, "norm": "demod", "residual": True, "lr": 2e-4, "batch_size": 16,
                  "gmap": True, "planes": 2, "modality": "auto", "patches_per_slice": 4, "simulate_spacing": None,
                  "val_fraction": 0.0}


@register_task("clade")
class CladeTask(Task):
    """The CycleGAN step on the training core: a generator step (both generators), then a
    discriminator step (both discriminators, on pooled fakes). Per volume (:class:`~.method.Clade`) or over
    several volumes of one protocol (``volumetricsr train --method clade``). There is no reference
    to validate against, so the last state is the result; every epoch writes a sample image (a
    low-resolution plane of the first volume, before | after)."""

    method = "clade"
    best_metric = None
    defaults = CLADE_DEFAULTS
    required = ("data",)
    options = (
        Option("data", text, "volumes of one protocol: a folder, one file, or a CSV/text list (a thin,thick line "
               "trains on the thick one)"),
        Option("simulate_spacing", Number(0.0, 100.0, " mm"), "make each volume thick at this slice spacing first "
               "(pseudo-thick, from thin volumes)", metavar="MM"),
        *PROFILE_OPTIONS,           # of --simulate-spacing's thick slices
        Option("modality", MODALITY, "intensity scaling: CT window [-1024, 2048] HU, MR percentiles 0.5-99.5 (auto: "
               "from HU)", default=defaults["modality"]),
        replace(METHOD_OPTIONS["planes"], help="low-resolution orientations to learn from (1 or 2)",
                default=defaults["planes"]),
        Option("patches_per_slice", Count(1, 1000), "random patches per acquired slice per epoch (sets the default "
               "steps per epoch)", default=defaults["patches_per_slice"]),
        Option("features", Count(4, 256), "", default=defaults["features"]),
        Option("blocks", Count(1, 32), "residual blocks of the generators", default=defaults["blocks"]),
        replace(METHOD_OPTIONS["norm"], help="instance: the conventional CycleGAN", default=defaults["norm"]),
        replace(METHOD_OPTIONS["gmap"], default=defaults["gmap"]),
        replace(METHOD_OPTIONS["residual"], default=defaults["residual"]),
        Option("batch_size", BATCH, "", default=defaults["batch_size"]),
        Option("lr", Number(0.0, 1.0), "", default=defaults["lr"]),
    )

    def __init__(self, config: dict, sampler: PlanePatches, device: str = "cpu", cases: Optional[list] = None,
                 sample_plane: Optional[np.ndarray] = None):
        super().__init__(config, device)
        self.sampler, self.cases, self.sample_plane = sampler, cases or [], sample_plane
        f, norm = config["features"], config["norm"]
        residual = config.get("residual", True)
        with torch.random.fork_rng(devices=[]):       # the run's seed, not the process's random state
            torch.manual_seed(config.get("seed", 0))
            self.g_xy, self.g_yx = (Generator(f, config["blocks"], norm, residual) for _ in range(2))
            self.d_x, self.d_y = (PatchDiscriminator(2 * f) for _ in range(2))
        for m in self.modules().values():       # channels-last convolutions: ~10 % faster on a CPU
            m.to(device, memory_format=torch.channels_last)
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam([*self.g_xy.parameters(), *self.g_yx.parameters()], config["lr"], betas=betas)
        self.opt_d = torch.optim.Adam([*self.d_x.parameters(), *self.d_y.parameters()], config["lr"], betas=betas)
        self.pool_x, self.pool_y = ImagePool(), ImagePool()

    @classmethod
    def from_config(cls, config: dict, device: str, cache: Optional[Path] = None) -> "CladeTask":
        cases = cls._cases(config)
        prepared, modalities = [], set()
        for case in cases:
            p, m = read_for_training(case.thick or case.thin, config.get("simulate_spacing"), config["modality"],
                                     simulated_profile(config))
            prepared.append(p)
            modalities.add(m)
        if len(modalities) > 1:
            raise InputError(f"The training volumes mix {' and '.join(sorted(modalities))}; train one modality "
                             "(or name it: --modality CT or MR).")
        config = dict(config, resolved_modality=modalities.pop(),
                      slice_spacing_mm=[min(p.spacing for p in prepared), max(p.spacing for p in prepared)])
        config["weights"] = loss_weights(config["resolved_modality"], config["gmap"])
        sampler = PlanePatches([p.slices for p in prepared], [p.iso for p in prepared], config["planes"])
        first = prepared[0].iso
        plane = np.ascontiguousarray(first[:, first.shape[1] // 2, :])
        return cls(config, sampler, device, cases, plane)

    @classmethod
    def default_steps_per_epoch(cls, config: dict) -> int:
        """An epoch: ``patches_per_slice`` patches of every acquired slice (the paper: 4)."""
        slices = 0
        for case in cls._cases(config):
            size, spacing = case.header()
            axis = int(np.argmax(spacing))
            made = config.get("simulate_spacing")          # pseudo-thick: fewer slices than the file has
            slices += int(size[axis] * spacing[axis] / made) if made else int(size[axis])
        return max(1, -(-slices * config["patches_per_slice"] // config["batch_size"]))

    @staticmethod
    def _cases(config: dict) -> list:
        from volumetricsr.training.pairs import discover

        dataset = discover(config["data"], config.get("val_fraction", 0.0), "case")
        return dataset.train + dataset.val

    def split(self) -> dict:
        return {"train": [str(c.thick or c.thin) for c in self.cases]}

    # -- state
    def modules(self):
        return {"g_xy": self.g_xy, "g_yx": self.g_yx, "d_x": self.d_x, "d_y": self.d_y}

    def optimizers(self):
        return {"g": self.opt_g, "d": self.opt_d}

    def extras(self):
        return {"pool_x": self.pool_x, "pool_y": self.pool_y}

    def train_step(self, step: int, rng: np.random.Generator) -> dict[str, float]:
        x, y = (t.to(self.device) for t in self.sampler.batch(self.config["batch_size"], rng))
        w_cyc, w_idt, w_gmap = self.config["weights"]
        for m in self.modules().values():
            m.train()
        for d in (self.d_x, self.d_y):
            d.requires_grad_(False)
        fake_y, fake_x = self.g_xy(x), self.g_yx(y)
        rec_x, rec_y = self.g_yx(fake_y), self.g_xy(fake_x)
        adv = lsgan(self.d_y(fake_y), True) + lsgan(self.d_x(fake_x), True)
        cyc = F.l1_loss(rec_x, x) + F.l1_loss(rec_y, y)
        idt = F.l1_loss(self.g_xy(y), y) + F.l1_loss(self.g_yx(x), x) if w_idt else torch.zeros((), device=x.device)
        gmap = gmap_loss(rec_x, x) + gmap_loss(rec_y, y) if w_gmap else torch.zeros((), device=x.device)
        loss_g = adv + w_cyc * cyc + w_idt * idt + w_gmap * gmap
        optimize(loss_g, self.opt_g)
        for d in (self.d_x, self.d_y):
            d.requires_grad_(True)
        old_y, old_x = self.pool_y.query(fake_y, rng), self.pool_x.query(fake_x, rng)
        loss_d = 0.5 * (lsgan(self.d_y(y), True) + lsgan(self.d_y(old_y), False)
                        + lsgan(self.d_x(x), True) + lsgan(self.d_x(old_x), False))
        optimize(loss_d, self.opt_d)
        return {"loss": float(loss_g.detach()), "loss_d": float(loss_d.detach()), "loss_adv": float(adv.detach()),
                "loss_cycle": float(cyc.detach()), "loss_gmap": float(gmap.detach())}

    def sample_image(self) -> Optional[np.ndarray]:
        """A low-resolution plane before | after the low-to-high generator, in [0, 1]."""
        if self.sample_plane is None:
            return None
        self.g_xy.eval()
        with torch.inference_mode():
            after = self.g_xy(torch.from_numpy(self.sample_plane)[None, None].to(self.device))[0, 0].cpu().numpy()
        return (np.concatenate([self.sample_plane, after], axis=1) + 1) / 2

    # -- the model
    def model_card(self) -> tuple[dict, dict]:
        c = self.config
        modality = c["resolved_modality"]
        fields = {"method": "clade", "native_factor": 1,
                  "architecture": {"name": "clade-generator",
                                   "args": {"features": c["features"], "blocks": c["blocks"], "norm": c["norm"],
                                            "residual": c.get("residual", True)}},
                  "modality": modality, "normalization": asdict(for_modality(modality)),
                  "training_data": {"volumes": [Path(x.thick or x.thin).name for x in self.cases],
                                    "simulated_spacing_mm": c.get("simulate_spacing"), "planes": c["planes"]},
                  "slice_spacing_mm": c["slice_spacing_mm"]}
        return {k: v.detach().cpu() for k, v in self.g_xy.state_dict().items()}, fields

    def card_training(self) -> dict:
        c = self.config
        return {"batch_size": c["batch_size"], "loss_weights": list(c["weights"]), "optimizer": f"Adam lr {c['lr']} betas (0.5, 0.999)",
                "patches": f"{PATCH}x{PATCH}", "image_pool": 50}

"""Per-modality priors for selfsr: its network pre-trained on the sharp planes of many volumes.

What thick-slice volumes of one modality have in common (edges, textures, how a slice profile
blurs them) need not be learnt again on every volume: a prior is selfsr's ``fast`` network trained
on in-plane pairs (blurred along one axis with a slice profile, every ``f``-th row kept) from the
planes sharp both ways (:func:`training_planes`: every plane of a thin volume, the in-plane ones of
a thick volume) of volumes of one modality at one factor, over a mix of profiles (Gaussian, box, gaps). selfsr
starts from the prior that matches the volume's modality and factor (:func:`.method.find_prior`) and fine-
tunes it on the volume itself; budget ``prior`` applies it with no per-volume training.

A prior is never used for a volume whose modality is unknown: the DICOM modality, else Hounsfield
units (air near -1000) for CT and non-negative intensities for MR; anything else gets no prior.

Trained with ``volumetricsr train --method selfsr --data THIN_VOLUMES --factor F --out ID``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from volumetricsr.common.errors import InputError
from volumetricsr.data.normalization import guess_modality
from volumetricsr.common.options import BATCH, Count, Option, text
from volumetricsr.data.profiles import slice_profile_weights
from volumetricsr.data.resampling import fine_in_plane
from volumetricsr.training.loop import optimize
from volumetricsr.training.tasks import OneNetworkTask, register_task
from volumetricsr.data.volume import Volume
from volumetricsr.compute.networks.row_upsampler import RowUpsampler
from volumetricsr.methods.options import MODALITY
from volumetricsr.methods.selfsr.data import NORMALIZATION, network_scale
from volumetricsr.methods.selfsr.method import BUDGETS
from volumetricsr.training.samplers import PatchSampler

#: The slice profiles a prior learns over: (shape, FWHM in slice spacings); contiguous, gaps, overlap.
PRIOR_PROFILES = (("gaussian", 1.0), ("rect", 1.0), ("gaussian", 0.5), ("rect", 0.6), ("gaussian", 1.3))
#: Planes whose two spacings differ by more than this are not sharp both ways: not used for training.
ISOTROPY = 1.2


def training_planes(volume: Volume) -> list[np.ndarray]:
    """Stacks of the planes of ``volume`` that are sharp both ways (isotropic in-plane after
    resampling to the finer spacing), in the network's intensity scale (as selfsr scales a volume)."""
    a = network_scale(volume.array)[0]
    spacing = volume.spacing[::-1]           # array axes (k, j, i)
    stacks = []
    for axis in range(3):
        plane = tuple(s for i, s in enumerate(spacing) if i != axis)
        if max(plane) / min(plane) <= ISOTROPY and spacing[axis] >= max(plane) / ISOTROPY:
            stack = np.moveaxis(a, axis, 0)
            stacks.append(np.ascontiguousarray(fine_in_plane(stack, plane)[0], np.float32))
    return stacks


class Mixture:
    """Batches drawn from several patch samplers (volumes x orientations x profiles) in turn at random."""

    def __init__(self, samplers: list):
        self.samplers = samplers

    def batch(self, size: int, rng: np.random.Generator):
        return self.samplers[int(rng.integers(len(self.samplers)))].batch(size, rng)


@register_task("selfsr")
class SelfSRPriorTask(OneNetworkTask):
    """A selfsr prior: the ``fast`` network on pairs from the sharp planes of volumes of one modality."""

    method = "selfsr"
    best_metric = None
    defaults = {"factor": 4, "modality": "auto", "lr": 1e-3, "batch_size": 16, "slice_step": 4}
    required = ("data",)
    options = (
        Option("data", text, "volumes of one modality (of a thick one, only its in-plane planes are used): "
                             "a folder, one file, or a CSV/text list"),
        Option("factor", Count(2, 16), "slices added per slice (the prior's factor)", default=defaults["factor"]),
        Option("modality", MODALITY, "", default=defaults["modality"]),
        Option("slice_step", Count(1, 64), "use every n-th plane (memory)", default=defaults["slice_step"]),
        Option("batch_size", BATCH, "", default=defaults["batch_size"]),
    )

    @classmethod
    def from_config(cls, config: dict, device: str, cache: Optional[Path] = None) -> "SelfSRPriorTask":
        from volumetricsr.data.io import read_volume
        from volumetricsr.training.pairs import discover
        cases = discover(config["data"], 0.0, "case")
        paths = [str(c.thin or c.thick) for c in cases.train + cases.val]
        f, patch = config["factor"], BUDGETS["fast"].patch
        samplers, modalities = [], set()
        for path in paths:
            volume = read_volume(path)
            stated = config["modality"] != "auto"
            modalities.add(config["modality"] if stated else guess_modality(volume.array, volume.metadata))
            for stack in training_planes(volume):
                stack = stack[::config["slice_step"]]
                for shape, ratio in PRIOR_PROFILES:
                    kernel = slice_profile_weights(shape, ratio * f, 1.0)
                    samplers.append(PatchSampler(stack, f, kernel, stack.shape[1], stack.shape[2], patch))
        if len(modalities) != 1 or None in modalities:
            raise InputError("The training volumes must be of one known modality (found "
                             f"{sorted(map(str, modalities))}); name it with --modality CT or MR.")
        config = dict(config, resolved_modality=modalities.pop(), volumes=[Path(p).name for p in paths])
        return cls(config, Mixture(samplers), device)

    def __init__(self, config: dict, sampler, device: str = "cpu"):
        super().__init__(config, device)
        b = BUDGETS["fast"]
        self.arch = {"factor": config["factor"], "features": b.features, "blocks": b.blocks, "expansion": b.expansion}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.get("seed", 0))
            self.net = RowUpsampler(**self.arch).to(device)
        self.sampler = sampler
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config["lr"])
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=config["lr"],
                                                         total_steps=max(config.get("total_steps", 1), 1),
                                                         pct_start=0.05)

    def split(self) -> dict:
        return {"train": self.config.get("volumes", [])}

    def train_step(self, step: int, rng: np.random.Generator) -> dict[str, float]:
        low, high = self.sampler.batch(self.config["batch_size"], rng)
        self.net.train()
        loss = F.l1_loss(self.net(low.to(self.device)), high.to(self.device))
        optimize(loss, self.opt)
        self.sched.step()
        return {"loss": float(loss.detach())}

    def model_card(self) -> tuple[dict, dict]:
        c = self.config
        fields = {"method": "selfsr", "prior": True, "architecture": {"name": "row-upsampler", "args": self.arch},
                  "native_factor": c["factor"], "modality": c["resolved_modality"], "normalization": NORMALIZATION,
                  "training_data": {"volumes": c.get("volumes", []),
                                    "planes": f"every {c['slice_step']}th plane of every orientation sharp both ways",
                                    "profiles": [list(p) for p in PRIOR_PROFILES]}}
        return {k: v.detach().cpu() for k, v in self.net.state_dict().items()}, fields

    def card_training(self) -> dict:
        c = self.config
        return {"batch_size": c["batch_size"], "optimizer": f"Adam lr {c['lr']}, one-cycle", "loss": "L1"}

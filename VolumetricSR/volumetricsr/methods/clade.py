"""CLADE (Pascale et al.): an unpaired CycleGAN between 2-D patches of a volume's low- and
high-resolution planes, learned from the volume itself.

The thick volume is interpolated to isotropic voxels (cubic B-spline). Domain Y: 32x32 patches of the
acquired (high-resolution) slices; domain X: patches of the planes that contain the through-plane
axis, both orientations (the paper uses one; ``planes=1`` does too). Generators ``G_X: X -> Y`` and
``G_Y: Y -> X`` use demodulated convolutions (``norm='instance'`` for the conventional CycleGAN);
losses: LSGAN adversarial, cycle, identity and the Sobel gradient-mapping loss on both cycles,
weighted (cycle, identity, gmap) = (1, 1, 10) for CT and (1, 1, 5) for MR; Adam 2e-4, beta1 0.5;
an image pool of 50 per discriminator. At inference ``G_X`` runs on every plane of the interpolated
volume that contains the through-plane axis, in overlapping patches at ``stride`` (paper: 6 for CT,
12 for MR) averaged, or on whole planes (``stride=0``: fully convolutional, no seams, the cost of
non-overlapping patches: the CPU default); both orientations are averaged.

Intensities: CT in the HU window [-1024, 2048], MR (anything not in HU) between its 0.5 and 99.5
percentiles, mapped to [-1, 1]; what lies outside comes back from the input (:func:`restore_clipped`).

Decisions the paper leaves open: the high-resolution domain holds only the acquired slices (the
interpolated ones between them are blends); the decoder upsamples by nearest neighbour and a
convolution (transposed convolutions checkerboard on 32x32 patches); the gradient-mapping loss is
the L1 distance of the Sobel gradients (x and y) of each cycled patch to its original's.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import patch_inference_2d
from ..geometry import ThroughPlaneGrid
from ..networks.clade import NORMS, Generator, PatchDiscriminator
from ..options import BATCH, Count, OneOf
from ..progress import scaled
from ..resampling import fine_in_plane, resample_axis, resample_in_plane
from ..training.loop import Loop, optimize
from ..training.tasks import Task
from .base import Method, RunContext, register
from .network import looks_like_hu, restore_clipped

PATCH = 32
CT_WINDOW = (-1024.0, 2048.0)
MR_PERCENTILES = (0.5, 99.5)
#: (cycle, identity, gradient map) loss weights by modality (the paper's).
LOSS_WEIGHTS = {"CT": (1.0, 1.0, 10.0), "MR": (1.0, 1.0, 5.0)}
STRIDES = {"CT": 6, "MR": 12}


@dataclass(frozen=True)
class Budget:
    iterations: int
    batch_size: int
    features: int
    stride: Optional[int]        # None: the paper's for the modality; 0: whole planes


BUDGETS = {
    "fast": Budget(iterations=400, batch_size=8, features=16, stride=0),          # CPU default
    "balanced": Budget(iterations=2000, batch_size=16, features=32, stride=None),
    "quality": Budget(iterations=10000, batch_size=32, features=64, stride=None),  # GPU default
}


# ----------------------------------------------------------------------------- losses

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradients ``(B, 2, H, W)`` (along columns, along rows) of images ``(B, 1, H, W)``."""
    kernels = torch.stack([_SOBEL, _SOBEL.t()])[:, None].to(x)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)


def gmap_loss(cycled: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Gradient-mapping loss: mean |Sobel(cycled) - Sobel(original)| over both directions."""
    return F.l1_loss(sobel(cycled), sobel(original))


def lsgan(scores: torch.Tensor, real: bool) -> torch.Tensor:
    return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))


class ImagePool:
    """The last ``size`` generated images; a discriminator sees, half of the time, an older one
    (Shrivastava et al., as CycleGAN): it keeps the discriminator from chasing the generator."""

    def __init__(self, size: int = 50):
        self.size, self.images = size, []

    def query(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        out = []
        for image in batch.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif rng.random() < 0.5:
                k = int(rng.integers(self.size))
                out.append(self.images[k].clone())
                self.images[k] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)

    def state_dict(self) -> dict:
        return {"size": self.size, "images": torch.stack(self.images) if self.images else torch.empty(0)}

    def load_state_dict(self, state: dict) -> None:
        self.size, self.images = int(state["size"]), list(state["images"].unbind(0)) if len(state["images"]) else []


# ----------------------------------------------------------------------------- data

class PlanePatches:
    """Unpaired random patches: ``hr`` images (the acquired slices) and ``lr`` images (planes that
    contain the through-plane axis), each a list of 2-D arrays in [-1, 1]."""

    def __init__(self, hr: list[np.ndarray], lr: list[np.ndarray], patch: int = PATCH):
        self.patch = patch
        self.hr = [a for a in hr if min(a.shape) >= patch]
        self.lr = [a for a in lr if min(a.shape) >= patch]
        if not self.hr or not self.lr:
            from ..errors import InputError

            raise InputError(f"CLADE needs planes of at least {patch}x{patch} voxels in both orientations.")

    def _draw(self, images: list[np.ndarray], count: int, rng: np.random.Generator) -> torch.Tensor:
        out = []
        for _ in range(count):
            a = images[int(rng.integers(len(images)))]
            r, c = (int(rng.integers(n - self.patch + 1)) for n in a.shape)
            p = a[r:r + self.patch, c:c + self.patch]
            out.append(np.ascontiguousarray(p[:, ::-1] if rng.random() < 0.5 else p))
        return torch.from_numpy(np.stack(out))[:, None]

    def batch(self, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: ``size`` low-resolution and ``size`` high-resolution patches, drawn independently."""
        return self._draw(self.lr, size, rng), self._draw(self.hr, size, rng)


# ----------------------------------------------------------------------------- training

class CladeTask(Task):
    """The CycleGAN step on the training core: a generator step (both generators), then a
    discriminator step (both discriminators, on pooled fakes)."""

    method = "clade"
    best_metric = None

    def __init__(self, config: dict, sampler: PlanePatches, device: str = "cpu"):
        super().__init__(config, device)
        self.sampler = sampler
        f, norm = config["features"], config["norm"]
        residual = config.get("residual", True)
        self.g_xy, self.g_yx = (Generator(f, config["blocks"], norm, residual).to(device) for _ in range(2))
        self.d_x, self.d_y = (PatchDiscriminator(2 * f).to(device) for _ in range(2))
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam([*self.g_xy.parameters(), *self.g_yx.parameters()], config["lr"], betas=betas)
        self.opt_d = torch.optim.Adam([*self.d_x.parameters(), *self.d_y.parameters()], config["lr"], betas=betas)
        self.pool_x, self.pool_y = ImagePool(), ImagePool()

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
        optimize(loss_g, self.opt_g, [*self.g_xy.parameters(), *self.g_yx.parameters()])
        for d in (self.d_x, self.d_y):
            d.requires_grad_(True)
        old_y, old_x = self.pool_y.query(fake_y, rng), self.pool_x.query(fake_x, rng)
        loss_d = 0.5 * (lsgan(self.d_y(y), True) + lsgan(self.d_y(old_y), False)
                        + lsgan(self.d_x(x), True) + lsgan(self.d_x(old_x), False))
        optimize(loss_d, self.opt_d, [*self.d_x.parameters(), *self.d_y.parameters()])
        return {"loss": float(loss_g.detach()), "loss_d": float(loss_d.detach()), "loss_adv": float(adv.detach()),
                "loss_cycle": float(cyc.detach()), "loss_gmap": float(gmap.detach())}


# ----------------------------------------------------------------------------- the method

def lr_planes(volume: np.ndarray, orientation: int) -> np.ndarray:
    """The planes of ``(Z, R, C)`` that contain the through-plane axis: ``(C, Z, R)`` (0) or ``(R, Z, C)`` (1)."""
    return np.ascontiguousarray(np.moveaxis(volume, 2 - orientation, 0))


def from_lr_planes(stack: np.ndarray, orientation: int) -> np.ndarray:
    return np.moveaxis(stack, 0, 2 - orientation)


def whole_planes(net: torch.nn.Module, images: torch.Tensor, device: str, cancel=None, progress=None,
                 group: int = 8) -> torch.Tensor:
    """The generator fully convolutionally over whole images ``(N, H, W)`` (padded to multiples of 4)."""
    n, h, w = images.shape
    ph, pw = (-h) % 4, (-w) % 4
    out = torch.empty_like(images)
    for i in range(0, n, group):
        if cancel is not None:
            cancel.raise_if_cancelled()
        chunk = F.pad(images[i:i + group, None], (0, pw, 0, ph), mode="replicate").to(device)
        out[i:i + group] = net(chunk)[:, 0, :h, :w].float().cpu()
        if progress:
            progress(min(n, i + group) / n, f"planes {min(n, i + group)}/{n}")
    return out


class Clade(Method):
    name = "clade"
    title = "CLADE (unpaired CycleGAN, per volume)"
    description = ("Experimental, not yet evaluated: unpaired CycleGAN between patches of the volume's own "
                   "low- and high-resolution planes (Pascale et al.): weight-demodulated generators and a "
                   "gradient-mapping loss; no training data, CT or MR. Minutes on a CPU (budget fast).")
    modalities = ("CT", "MR")
    trains_per_volume = True
    uses_device = True
    experimental = True
    min_slices = 3
    option_rules = {"budget": OneOf(tuple(BUDGETS)), "iterations": Count(1, 1_000_000), "seed": Count(0, 2**32 - 1),
                    "stride": Count(0, PATCH), "norm": OneOf(NORMS), "gmap": OneOf((True, False)),
                    "planes": Count(1, 2), "batch_size": BATCH}

    def upsample(self, stack: np.ndarray, grid: ThroughPlaneGrid, ctx: RunContext, *, budget: Optional[str] = None,
                 iterations: Optional[int] = None, seed: int = 0, stride: Optional[int] = None, norm: str = "demod",
                 gmap: bool = True, planes: int = 2, batch_size: Optional[int] = None) -> np.ndarray:
        b = BUDGETS[budget or ("fast" if ctx.device == "cpu" else "quality")]
        modality = "CT" if looks_like_hu(stack) else "MR"
        lo, hi = CT_WINDOW if modality == "CT" else tuple(float(v) for v in np.percentile(stack, MR_PERCENTILES))
        hi = max(hi, lo + 1e-6)
        stride = b.stride if stride is None else stride
        stride = STRIDES[modality] if stride is None else stride
        rng = np.random.default_rng(seed)

        n, rows, cols = stack.shape
        source, fine = fine_in_plane(stack, grid.in_plane_spacing)
        n_iso = round((n - 1) * grid.spacing_in / fine) + 1
        scaled_ = (np.clip(source, lo, hi) - lo) / (hi - lo) * 2 - 1
        iso = resample_axis(scaled_.astype(np.float32), 0, n_iso).astype(np.float32)     # cubic B-spline

        ctx.report(0.0, f"CLADE: {modality}, {n} slices -> {n_iso} isotropic; patches of {PATCH}x{PATCH}")
        lr = [img for o in range(planes) for img in lr_planes(iso, o)]
        sampler = PlanePatches(list(scaled_.astype(np.float32)), lr)
        ctx.check()
        w = LOSS_WEIGHTS[modality]
        config = {"features": b.features, "blocks": 6, "norm": norm, "lr": 2e-4, "batch_size": batch_size or b.batch_size,
                  "weights": (w[0], w[1], w[2] if gmap else 0.0)}
        iterations = b.iterations if iterations is None else iterations
        with torch.random.fork_rng(devices=[]):       # the run's seed, not the process's random state
            torch.manual_seed(seed)
            task = CladeTask(config, sampler, ctx.device)
        start = time.perf_counter()
        loop = Loop(task, iterations, steps_per_epoch=max(1, min(50, iterations)), rng=rng, cancel=ctx.cancel)
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
        del sampler

        net = task.g_xy.eval()
        fused = None
        for o in range(planes):
            images = torch.from_numpy(lr_planes(iso, o))
            part_progress = scaled(ctx.progress, 0.7 + 0.25 * o / planes, 0.7 + 0.25 * (o + 1) / planes)
            with torch.inference_mode():
                if stride == 0:
                    out = whole_planes(net, images, ctx.device, ctx.cancel, part_progress)
                else:
                    out = patch_inference_2d(images, lambda p: net(p.to(ctx.device)), PATCH, stride,
                                             progress=part_progress, cancel=ctx.cancel)
            part = from_lr_planes(out.numpy(), o)
            fused = np.ascontiguousarray(part) if fused is None else np.add(fused, part, out=fused)
        fused += planes                   # the mean of the orientations, from [-1, 1] back to intensities
        fused *= (hi - lo) / (2 * planes)
        fused += lo
        out = restore_clipped(fused, source, lo, hi)
        ctx.report(0.96, "resampling to the requested grid")
        out = resample_axis(out, 0, grid.n_out)
        return resample_in_plane(out, rows, cols).astype(np.float32)


CLADE = register(Clade())

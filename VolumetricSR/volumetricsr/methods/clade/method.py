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

Two uses, one task (:class:`CladeTask`) on the training core: per volume (the method, with a
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

import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from volumetricsr.common.errors import InputError
from volumetricsr.data.geometry import ThroughPlaneGrid, samples_over, through_plane_axis
from volumetricsr.compute.networks.clade import NORMS, Generator, PatchDiscriminator
from volumetricsr.data.normalization import Normalization, for_modality, looks_like_hu
from volumetricsr.common.options import BATCH, Count, Number, OneOf
from volumetricsr.common.progress import scaled
from volumetricsr.data.resampling import fine_in_plane, resample_axis
from volumetricsr.training.pairs import plane_patch
from volumetricsr.training.loop import Loop, optimize
from volumetricsr.data.profiles import DEFAULT_PROFILE, THICKNESS_RATIO, add_profile_arguments, thickness_of
from volumetricsr.training.tasks import Task, register_task, simulated_profile
from volumetricsr.methods.base import RunContext, register
from volumetricsr.methods.plane import PlaneMethod
from volumetricsr.methods.options import method_rules

PATCH = 32
#: (cycle, identity, gradient map) loss weights by modality (the paper's).
LOSS_WEIGHTS = {"CT": (1.0, 1.0, 10.0), "MR": (1.0, 1.0, 5.0)}
STRIDES = {"CT": 6, "MR": 12}


@dataclass(frozen=True)
class Budget:
    iterations: int
    batch_size: int
    features: int
    stride: Optional[int]        # None: the paper's for the modality; 0: whole planes
    planes: int                  # low-resolution orientations trained on and generated (the paper: 1)


BUDGETS = {
    "fast": Budget(iterations=300, batch_size=8, features=16, stride=0, planes=1),         # CPU default
    "balanced": Budget(iterations=2000, batch_size=16, features=32, stride=None, planes=2),
    "quality": Budget(iterations=10000, batch_size=32, features=64, stride=None, planes=2),  # GPU default
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

def loss_weights(modality: str, gmap: bool = True) -> tuple[float, float, float]:
    """(cycle, identity, gradient map) for the modality; no gradient-mapping term without ``gmap``."""
    cycle, identity, gradient = LOSS_WEIGHTS[modality]
    return cycle, identity, gradient if gmap else 0.0


@dataclass
class Prepared:
    """A thick stack on CLADE's working grid: ``iso`` (slices interpolated to the finest in-plane
    spacing, cubic B-spline) and ``slices`` (the acquired ones), both in [-1, 1]; ``source``: the
    input on the fine in-plane grid, for restoring what the window clips."""

    iso: np.ndarray
    slices: np.ndarray
    source: np.ndarray
    lo: float
    hi: float
    spacing: float          # the acquired slice spacing, mm


def prepare(stack: np.ndarray, grid: ThroughPlaneGrid, norm: Normalization) -> Prepared:
    source, fine = fine_in_plane(stack, grid.in_plane_spacing)
    lo, hi = norm.range_of(source)
    slices = norm.forward(source, lo, hi) * 2 - 1
    n_iso = samples_over(stack.shape[0], grid.spacing_in, fine)
    iso = resample_axis(slices, 0, n_iso).astype(np.float32)
    return Prepared(iso, slices, source, lo, hi, grid.spacing_in)


class PlanePatches:
    """Unpaired random patches: high-resolution ones from the acquired slices of ``slices`` stacks,
    low-resolution ones from the planes of ``iso`` volumes that contain the through-plane axis (the
    first ``planes`` orientations), all in [-1, 1]; cut from the 3-D arrays, no plane copies."""

    def __init__(self, slices: list[np.ndarray], iso: list[np.ndarray], planes: int = 2, patch: int = PATCH):
        self.patch, self.planes = patch, planes
        self.hr = [a for a in slices if min(a.shape[1:]) >= patch]
        self.lr = [a for a in iso if min(a.shape) >= patch]
        if not self.hr or not self.lr:
            raise InputError(f"CLADE needs planes of at least {patch}x{patch} voxels in both orientations.")

    def batch(self, size: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)``: ``size`` low-resolution and ``size`` high-resolution patches, drawn independently."""
        size2 = (self.patch, self.patch)
        x = [plane_patch(self.lr[int(rng.integers(len(self.lr)))], 1 + int(rng.integers(self.planes)), size2, rng)
             for _ in range(size)]
        y = [plane_patch(self.hr[int(rng.integers(len(self.hr)))], 0, size2, rng) for _ in range(size)]
        return torch.from_numpy(np.stack(x))[:, None], torch.from_numpy(np.stack(y))[:, None]


def read_for_training(path: Path, simulate_spacing: Optional[float], modality: str,
                      profile: tuple = DEFAULT_PROFILE) -> tuple[Prepared, str]:
    """One training volume on CLADE's grid; ``simulate_spacing``: made thick first (pseudo-thick), with
    ``profile`` ``(shape, FWHM / spacing)``."""
    from volumetricsr.data.geometry import plan_grid, to_stack
    from volumetricsr.data.io import read_volume
    from volumetricsr.data.simulate import simulate_thick

    volume = read_volume(path)
    if simulate_spacing:
        axis = through_plane_axis(volume)
        factor = max(2, round(simulate_spacing / volume.spacing[axis]))
        spacing = factor * volume.spacing[axis]
        volume = simulate_thick(volume, factor, thickness_of(profile, spacing), profile[0], axis=axis)
    grid = plan_grid(volume)
    stack = np.ascontiguousarray(to_stack(volume.array, grid.axis), dtype=np.float32)
    modality = modality if modality != "auto" else ("CT" if looks_like_hu(stack) else "MR")
    return prepare(stack, grid, for_modality(modality)), modality


# ----------------------------------------------------------------------------- training

CLADE_DEFAULTS = {"features": 32, "blocks": 6, "norm": "demod", "residual": True, "lr": 2e-4, "batch_size": 16,
                  "gmap": True, "planes": 2, "modality": "auto", "patches_per_slice": 4, "simulate_spacing": None,
                  "val_fraction": 0.0}


@register_task("clade")
class CladeTask(Task):
    """The CycleGAN step on the training core: a generator step (both generators), then a
    discriminator step (both discriminators, on pooled fakes). Per volume (:class:`Clade`) or over
    several volumes of one protocol (``volumetricsr train --method clade``). There is no reference
    to validate against, so the last state is the result; every epoch writes a sample image (a
    low-resolution plane of the first volume, before | after)."""

    method = "clade"
    best_metric = None
    defaults = CLADE_DEFAULTS
    option_rules = {"features": Count(4, 256), "blocks": Count(1, 32), "batch_size": BATCH, "lr": Number(0.0, 1.0),
                    "planes": Count(1, 2), "patches_per_slice": Count(1, 1000),
                    "simulate_spacing": Number(0.0, 100.0, " mm"), "thickness_ratio": THICKNESS_RATIO}

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

    # -- command line
    @classmethod
    def add_arguments(cls, p) -> None:
        d = cls.defaults
        p.add_argument("--data", help="volumes of one protocol: a folder, one file, or a CSV/text list (a "
                                      "thin,thick line trains on the thick one)")
        p.add_argument("--simulate-spacing", type=float, metavar="MM",
                       help="make each volume thick at this slice spacing first (pseudo-thick, from thin volumes)")
        add_profile_arguments(p)           # of --simulate-spacing's thick slices
        p.add_argument("--modality", choices=["auto", "CT", "MR"], default=d["modality"],
                       help="intensity scaling: CT window [-1024, 2048] HU, MR percentiles 0.5-99.5 (auto: from HU)")
        p.add_argument("--planes", type=int, default=d["planes"], help="low-resolution orientations to learn from (1 or 2)")
        p.add_argument("--patches-per-slice", type=int, default=d["patches_per_slice"],
                       help="random patches per acquired slice per epoch (sets the default steps per epoch)")
        p.add_argument("--features", type=int, default=d["features"])
        p.add_argument("--blocks", type=int, default=d["blocks"], help="residual blocks of the generators")
        p.add_argument("--norm", choices=NORMS, default=d["norm"], help="instance: the conventional CycleGAN")
        p.add_argument("--no-gmap", action="store_true", help="without the gradient-mapping loss (ablation)")
        p.add_argument("--plain-generator", action="store_true",
                       help="the paper's generator mapping, not a residual on its input")
        p.add_argument("--batch-size", type=int, default=d["batch_size"])
        p.add_argument("--lr", type=float, default=d["lr"])

    @classmethod
    def config_from_args(cls, args) -> dict:
        if not args.data:
            raise InputError("--data is needed (unless --resume).")
        config = copy.deepcopy(cls.defaults)
        config.update(data=str(args.data), simulate_spacing=args.simulate_spacing, modality=args.modality,
                      profile=args.profile, thickness_ratio=args.thickness_ratio,
                      planes=args.planes, patches_per_slice=args.patches_per_slice, features=args.features,
                      blocks=args.blocks, norm=args.norm, gmap=not args.no_gmap, residual=not args.plain_generator,
                      batch_size=args.batch_size, lr=args.lr)
        return config

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


# ----------------------------------------------------------------------------- the method

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
        b = BUDGETS[budget or ("fast" if ctx.device == "cpu" else "quality")]
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

"""Self-supervised per-volume super-resolution (SMORE/ECLARE family): no training data, any modality.

The in-plane slices of the volume are high resolution. Degraded along one in-plane axis the way the
scanner degrades the through-plane axis (blur with the slice profile, keep every ``f``-th row), they
give low/high-resolution training pairs taken from the volume itself. A small 2-D network learns
that mapping and is then applied to the planes that contain the through-plane axis, in both
orthogonal orientations, through the core engine; the two results are averaged.

The network works on the low-resolution grid and emits ``f = ceil(thick / in-plane)`` rows per
row, so the in-plane training images are first resampled to the spacing ``thick / f``; its output
is resampled to the requested grid at the end (cubic B-spline). Anisotropic in-plane spacing is
made isotropic (finest spacing) for the duration of the run and restored afterwards.

The training is in :mod:`.task`, the intensity scaling in :mod:`.data`, the per-modality priors a
run may start from in :mod:`.priors`.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from volumetricsr.common.errors import InputError
from volumetricsr.data.geometry import ThroughPlaneGrid, samples_over
from volumetricsr.compute.models import ModelCard, list_models, user_models_dir
from volumetricsr.compute.networks.row_upsampler import RowUpsampler
from volumetricsr.common.options import OneOf, label
from volumetricsr.data.profiles import slice_profile_weights
from volumetricsr.common.progress import scaled
from volumetricsr.data.resampling import fine_in_plane
from volumetricsr.training.samplers import PatchSampler
from volumetricsr.methods.base import RunContext, register
from volumetricsr.methods.plane import PlaneMethod
from volumetricsr.methods.options import method_rules
from volumetricsr.methods.selfsr.data import NORMALIZATION, network_scale
from volumetricsr.methods.selfsr.task import Budget, train_network
from volumetricsr.training.tasks import default_budget

#: fast learns at 3e-3: at 1e-3 its 1200 iterations end short of convergence (development MRI made 4x
#: thick, two profiles, against 1e-3: from scratch 3e-3 +0.31/+0.29 dB, 5e-3 +0.37/+0.44, 1e-2 -1.4 dB
#: (unstable); from a prior 3e-3 +0.08/+0.07). 3e-3 keeps a margin below the unstable rates.
BUDGETS = {
    "fast": Budget(iterations=1200, batch_size=16, features=16, blocks=4, expansion=2, lr=3e-3),  # CPU default
    "balanced": Budget(iterations=4000, batch_size=16, features=24, blocks=6, expansion=3),
    "quality": Budget(iterations=20000, batch_size=32, features=32, blocks=8, expansion=4, patch=64),  # GPU default
    "prior": Budget(iterations=0, batch_size=16, features=16, blocks=4, expansion=2),   # the prior alone: seconds
}
#: The budgets whose network is the priors' (:mod:`.priors`): budget prior applies one alone,
#: budget fast starts from one when one fits (``prior``: auto, an id, or none).
PRIOR_BUDGETS = ("fast", "prior")


def find_prior(modality: Optional[str], factor: int) -> Optional[ModelCard]:
    """The prior (:mod:`.priors`) for ``modality`` ('CT', 'MR'; None: unknown, so none) at ``factor``."""
    if modality is None:
        return None
    return next((card for card in list_models("selfsr") if card.extra.get("prior") and card.modality == modality
                 and int(card.native_factor) == factor), None)


class SelfSupervised(PlaneMethod):
    name = "selfsr"
    title = "Self-supervised (per volume)"
    description = ("Learns the through-plane resolution from the volume's own in-plane slices (SMORE/ECLARE "
                   "family): no training data, any modality; the slice profile is estimated from the volume "
                   "unless stated. Trains for about a minute on a CPU (budget fast, from a shipped prior when "
                   "one fits the modality and factor), longer on a GPU (budget quality); budget prior: the prior "
                   "alone, seconds.")
    modalities = ("CT", "MR", "any")
    trains_per_volume = True
    uses_device = True
    min_slices = 3
    option_rules = method_rules("budget", "iterations", "seed", "thickness", "profile", "model", "warm_start",
                                "save_model", "batch_size", "prior", budget=OneOf(tuple(BUDGETS)))
    saved_model_options = ("model", "warm_start")
    #: A slice thicker than this many slice spacings is taken for a typing error.
    max_thickness_ratio = 10.0

    def upsample(self, stack: np.ndarray, grid: ThroughPlaneGrid, ctx: RunContext, *, budget: Optional[str] = None,
                 iterations: Optional[int] = None, seed: int = 0, thickness: Optional[float] = None,
                 profile: str = "gaussian", model: Optional[str] = None, warm_start: Optional[str] = None,
                 save_model: Optional[str] = None, batch_size: Optional[int] = None,
                 prior: Optional[str] = None) -> np.ndarray:
        budget_name = default_budget(budget, ctx.device)
        if thickness is not None and thickness > self.max_thickness_ratio * grid.spacing_in:
            raise InputError(f"{label('thickness')} {thickness:g} mm is more than {self.max_thickness_ratio:g} times "
                             f"the slice spacing {grid.spacing_in:g} mm; give the slices' thickness in mm.")
        b = BUDGETS[budget_name]
        iterations = b.iterations if iterations is None else int(iterations)
        rng = np.random.default_rng(seed)

        # isotropic in-plane grid at the finest in-plane spacing
        thick = grid.spacing_in
        n, rows, cols = stack.shape
        work, fine = fine_in_plane(stack, grid.in_plane_spacing)
        iso_rows, iso_cols = work.shape[1:]
        factor = max(2, math.ceil(thick / fine - 1e-6))
        lr_spacing = thick / factor                 # spacing the network produces
        thickness = thick if thickness is None else float(thickness)
        kernel = slice_profile_weights(profile, thickness, lr_spacing)

        source = work
        work, lo, hi, window = network_scale(work)

        wants = budget_name == "prior" or prior != "none" and (budget_name in PRIOR_BUDGETS or prior is not None)
        if model is None and warm_start is None and wants:
            if budget_name not in PRIOR_BUDGETS:
                raise InputError(f"A prior has the network of budget fast; budget {budget_name} trains its own "
                                 "(leave out prior, or use budget fast or prior).")
            warm_start = self._prior(prior or "auto", ctx, factor, budget_name)
        with torch.random.fork_rng(devices=[]):       # the run's seed, not the process's random state
            torch.manual_seed(seed)
            net = self._network(model, warm_start, factor, b)
        trained = model is None and iterations > 0
        if trained:
            ctx.report(0.0, f"preparing x{factor} training pairs from {n} in-plane slices")
            fine_rows, fine_cols = (samples_over(m, fine, lr_spacing) for m in (iso_rows, iso_cols))
            sampler = PatchSampler(work, factor, kernel, fine_rows, fine_cols, b.patch)
            ctx.check()
            start = time.perf_counter()
            curve = train_network(net, sampler, b, iterations, ctx, scaled(ctx.progress, 0.02, 0.75), rng)
            ctx.results["training"] = {"budget": budget_name, "iterations": iterations, "factor": factor,
                                       "seconds": time.perf_counter() - start, "loss_curve": curve}
            if save_model:
                self._save(net, save_model, factor, b, thickness, profile, thick, iterations, budget_name)
            del sampler                    # its resampled, blurred and weighted copies: free before inference
        net.eval()

        span = (0.75, 0.95) if trained else (0.0, 0.95)

        # metal beyond the window: the input's
        return self.finish(self.predictions(net, work, ctx, span=span, batch_size=batch_size), hi - lo, lo, source,
                           window, grid, (rows, cols), ctx)

    def _prior(self, prior: str, ctx: RunContext, factor: int, budget_name: str) -> Optional[str]:
        """The prior to start from (a card path), reported in ``results['prior']``; ``prior``: auto (the
        one for the volume's modality and factor, if any) or a saved model; ``none`` (handled by the
        caller): from scratch."""
        card = None if prior == "none" else find_prior(ctx.modality, factor) if prior == "auto" else \
            self.load_card(prior)
        ctx.results["prior"] = card.id if card else None
        if card is None and budget_name == "prior":
            why = "it was turned off (prior none)" if prior == "none" else \
                f"none fits this volume ({ctx.modality or 'unknown modality'}, x{factor})"
            raise InputError(f"Budget prior needs a prior, and {why}; use budget fast.")
        return str(card.path) if card else None

    def _network(self, model, warm_start, factor: int, b: Budget) -> RowUpsampler:
        source = model or warm_start
        if source is None:
            return RowUpsampler(factor, b.features, b.blocks, b.expansion)
        card = self.load_card(source)
        if int(card.native_factor) != factor:
            raise InputError(f"Saved model {card.id} adds x{card.native_factor:g} slices; this volume needs "
                             f"x{factor}. Train a new one (leave out --model/--warm-start).")
        return card.build()

    @staticmethod
    def _save(net, target: str, factor: int, b: Budget, thickness: float, profile: str, thick: float,
              iterations: int, budget_name: str) -> ModelCard:
        """Save the per-volume network as a model: ``target`` is an id (user models folder) or a .json path."""
        from volumetricsr.compute.export import write_model

        path = Path(target)
        folder, model_id = (path.parent, path.stem) if path.suffix == ".json" else (user_models_dir(), target)
        folder.mkdir(parents=True, exist_ok=True)
        fields = {"method": "selfsr",
                  "architecture": {"name": "row-upsampler", "args": {"factor": factor, "features": b.features,
                                                                     "blocks": b.blocks, "expansion": b.expansion}},
                  "native_factor": factor, "modality": "any", "normalization": NORMALIZATION,
                  "training_data": f"self-supervised on one volume: {thick:g} mm slices, {profile} profile "
                                   f"{thickness:g} mm, budget {budget_name} ({iterations} iterations)"}
        return write_model(folder, model_id, net.state_dict(), fields, slice_spacing_mm=thick,
                           slice_thickness_mm=thickness, profile=profile, budget=asdict(b))


SELFSR = register(SelfSupervised())

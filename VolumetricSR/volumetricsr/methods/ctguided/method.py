"""CT-guided unsupervised MRI super-resolution (Wang et al., MICCAI 2023): a super-resolution
network (SRNet, an RDN: :mod:`~volumetricsr.compute.networks.rdn`) trained with unpaired high-resolution
CTs and low-resolution MRIs, jointly with a MUNIT-style cross-modality translation network
(CITNet: :mod:`~volumetricsr.compute.networks.munit`). No high-resolution MRI is needed.

It is trained in three stages (:mod:`.task`: the task, :mod:`.losses`: D and the CITNet's losses,
:mod:`.data`: the unpaired volumes and their patches); its model is the SRNet.

Inference runs the SRNet alone, on every plane that contains the thick axis in both orientations
(the plane path of every plane method, :meth:`~..plane.PlaneMethod.predictions`), then resamples to the requested
spacing (cubic B-spline) when it is not the native one.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from volumetricsr.common.errors import InputError
from volumetricsr.data.geometry import ThroughPlaneGrid
from volumetricsr.data.normalization import Normalization, looks_like_hu
from volumetricsr.data.resampling import fine_in_plane
from volumetricsr.methods.base import RunContext, register
from volumetricsr.methods.plane import PlaneMethod
from volumetricsr.methods.options import method_rules


class CTGuided(PlaneMethod):
    name = "ctguided"
    title = "CT-guided MRI SR"
    description = ("Unsupervised MRI super-resolution learned from unpaired high-resolution CTs and "
                   "low-resolution MRIs (Wang et al., MICCAI 2023): an RDN applied to the planes that contain "
                   "the thick axis; needs a trained model (volumetricsr train --method ctguided).")
    modalities = ("MR",)
    needs_model = True
    uses_device = True
    experimental = True
    native_factor = 4          # the paper's K and the shipped model's; a model's own card decides
    min_slices = 2
    option_rules = method_rules("model", "batch_size")
    saved_model_options = ("model",)

    def fitness(self, volume, grid: ThroughPlaneGrid, options: dict, force: bool = False) -> list[str]:
        """An MR model: a CT in HU is refused unless ``force``; another slice spacing gets a warning."""
        card = self.load_card(options.get("model"))
        if not force and looks_like_hu(volume.array):
            raise InputError(f"Model {card.id} super-resolves MRI, but this volume looks like a CT in Hounsfield "
                             "units. Use selfsr or tvsrn for CT, or force (--force) if it really is an MRI.")
        note = card.spacing_warning(grid.spacing_in)
        return [note] if note else []

    def upsample(self, stack: np.ndarray, grid: ThroughPlaneGrid, ctx: RunContext, *, model: Optional[str] = None,
                 batch_size: Optional[int] = None) -> np.ndarray:
        card = self.load_card(model)
        net = card.build()
        ctx.results["model"] = card.id
        n, rows, cols = stack.shape
        work, _ = fine_in_plane(stack, grid.in_plane_spacing)
        norm = Normalization.from_dict(card.normalization)
        lo, hi = norm.range_of(work)
        ctx.report(0.0, f"{self.title}: model {card.id}, x{net.factor} on {ctx.device}")
        half = (hi - lo) / 2                  # from [-1, 1] back to intensities
        return self.finish(self.predictions(net, norm.forward(work, lo, hi) * 2 - 1, ctx, batch_size=batch_size),
                           half, lo + half, work, (lo, hi), grid, (rows, cols), ctx)


CTGUIDED = register(CTGuided())

"""Losses more than one method trains with."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def lsgan(scores: "torch.Tensor | list[torch.Tensor]", real: bool) -> torch.Tensor:
    """The least-squares GAN loss: the mean squared distance of a discriminator's scores from 1 (``real``)
    or 0; summed over the outputs of a multi-scale discriminator (a list)."""
    if isinstance(scores, torch.Tensor):
        return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))
    return sum(lsgan(s, real) for s in scores)

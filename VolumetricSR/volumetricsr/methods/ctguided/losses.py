"""The CT-guided method's degradation D and losses: eq. 1-4 of the paper for the CITNet (the adversarial
loss: :func:`~volumetricsr.training.losses.lsgan`)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def degrade(hr: torch.Tensor, kernel: torch.Tensor, factor: int) -> torch.Tensor:
    """D: blur images ``(B, 1, (n-1)*factor+1, w)`` along rows with ``kernel`` (mirrored ends),
    keep every ``factor``-th row: ``(B, 1, n, w)``."""
    pad = len(kernel) // 2
    mode = "reflect" if pad < hr.shape[-2] else "replicate"
    blurred = F.conv2d(F.pad(hr, (0, 0, pad, pad), mode=mode), kernel.to(hr).view(1, 1, -1, 1))
    return blurred[:, :, ::factor]


def crop4(x: torch.Tensor) -> torch.Tensor:
    """Rows and columns cut to multiples of 4 (the CITNet downsamples twice)."""
    return x[..., :x.shape[-2] // 4 * 4, :x.shape[-1] // 4 * 4]


def citnet_losses(cit, x_h: torch.Tensor, y_h: torch.Tensor, a_x_prior: torch.Tensor, a_y_prior: torch.Tensor,
                  phi, x_target: Optional[torch.Tensor] = None) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Eq. 1-4 of the paper for MR images ``x_h`` (the SRNet's) and CT images ``y_h``:
    ``({self, cycle, latent, percep}, x'_H (CT made MR), y~'_H (MR made CT))``. ``x_target``: what the MR
    reconstructions are compared with (default ``x_h``; ``x_h.detach()`` keeps the SRNet out of it)."""
    from volumetricsr.compute.perceptual import perceptual_loss

    x_target = x_h if x_target is None else x_target
    c_x, a_x = cit.content_x(x_h), cit.attribute_x(x_h)
    c_y, a_y = cit.content_y(y_h), cit.attribute_y(y_h)
    x_fake = cit.gen_x(c_y, a_x_prior)                   # x'_H
    y_fake = cit.gen_y(c_x, a_y_prior)                   # y~'_H
    c_y_hat, a_x_hat = cit.content_x(x_fake), cit.attribute_x(x_fake)
    c_x_hat, a_y_hat = cit.content_y(y_fake), cit.attribute_y(y_fake)
    losses = {
        "self": F.l1_loss(cit.gen_x(c_x, a_x), x_target) + F.l1_loss(cit.gen_y(c_y, a_y), y_h),
        "cycle": F.l1_loss(cit.gen_x(c_x_hat, a_x), x_target) + F.l1_loss(cit.gen_y(c_y_hat, a_y), y_h),
        "latent": (F.l1_loss(c_x_hat, c_x) + F.l1_loss(c_y_hat, c_y) + F.l1_loss(a_x_hat, a_x_prior)
                   + F.l1_loss(a_y_hat, a_y_prior)),
        "percep": perceptual_loss(phi, y_fake, x_h) + perceptual_loss(phi, x_fake, y_h),
    }
    return losses, x_fake, y_fake

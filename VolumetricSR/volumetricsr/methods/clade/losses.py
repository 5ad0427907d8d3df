"""CLADE's losses: the Sobel gradient-mapping loss, the loss weights by modality, and the image pool
each discriminator draws its fakes from (the adversarial loss: :func:`~volumetricsr.training.losses.lsgan`)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

#: (cycle, identity, gradient map) loss weights by modality (the paper's).
LOSS_WEIGHTS = {"CT": (1.0, 1.0, 10.0), "MR": (1.0, 1.0, 5.0)}


def loss_weights(modality: str, gmap: bool = True) -> tuple[float, float, float]:
    """(cycle, identity, gradient map) for the modality; no gradient-mapping term without ``gmap``."""
    cycle, identity, gradient = LOSS_WEIGHTS[modality]
    return cycle, identity, gradient if gmap else 0.0


_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradients ``(B, 2, H, W)`` (along columns, along rows) of images ``(B, 1, H, W)``."""
    kernels = torch.stack([_SOBEL, _SOBEL.t()])[:, None].to(x)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernels)


def gmap_loss(cycled: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Gradient-mapping loss: mean |Sobel(cycled) - Sobel(original)| over both directions."""
    return F.l1_loss(sobel(cycled), sobel(original))


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

"""A light 2-D network that adds rows: the self-supervised method's super-resolution network.

The input is an image that is low resolution along its rows (axis -2) and high resolution along
its columns. Wide-activation residual blocks (as in WDSR) work on the low-resolution grid; the
tail emits ``factor`` values per input row, which a row shuffle turns into ``factor`` output rows,
added to the linear interpolation of the input (global residual). Row ``k`` of the input sits at
output row ``factor*k``; ``n`` rows give ``(n-1)*factor+1`` (the project's slice convention).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from volumetricsr.compute.networks.registry import register_architecture


def linear_rows(x: torch.Tensor, factor: int) -> torch.Tensor:
    """``x`` (..., n, w) linearly interpolated to ``(n-1)*factor+1`` rows, row ``k`` at row ``factor*k``:
    the base that the through-plane networks add their output to."""
    n, w = x.shape[-2:]
    return F.interpolate(x, size=((n - 1) * factor + 1, w), mode="bilinear", align_corners=True)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, padding_mode="replicate")


class WideBlock(nn.Module):
    """conv -> ReLU -> conv with a wide middle, plus the input."""

    def __init__(self, features: int, expansion: int):
        super().__init__()
        self.body = nn.Sequential(_conv(features, features * expansion), nn.ReLU(inplace=True),
                                  _conv(features * expansion, features))

    def forward(self, x):
        return x + self.body(x)


@register_architecture("row-upsampler")
class RowUpsampler(nn.Module):
    def __init__(self, factor: int, features: int = 16, blocks: int = 4, expansion: int = 2):
        super().__init__()
        self.factor = factor
        self.head = _conv(1, features)
        self.body = nn.Sequential(*(WideBlock(features, expansion) for _ in range(blocks)))
        self.tail = _conv(features, factor)
        nn.init.zeros_(self.tail.weight)       # starts as linear interpolation
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = linear_rows(x, self.factor)
        residual = self.tail(self.body(self.head(x)))
        return base + rearrange(residual, "b f n w -> b 1 (n f) w")[:, :, :base.shape[-2]]

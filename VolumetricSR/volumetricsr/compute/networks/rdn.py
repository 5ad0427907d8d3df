"""The residual dense network (RDN, Zhang et al. 2018) as a 2-D through-plane upsampler: the
CT-guided method's SRNet.

Shallow features (two 3x3 convolutions), ``blocks`` residual dense blocks (each: ``layers``
densely connected 3x3 convolutions of ``growth`` channels, a 1x1 local feature fusion and a local
residual), global feature fusion (1x1 over the concatenated block outputs, then 3x3) with a global
residual to the first shallow features, and sub-pixel upsampling along rows: a 3x3 convolution to
``factor`` x ``features`` channels, a row shuffle and a 3x3 convolution to one channel.

As :class:`~.row_upsampler.RowUpsampler` it works on images that are low resolution along their
rows (axis -2), adds the network's output to the linear interpolation of its input (its last
convolution starts at zero, so an untrained network interpolates), and follows the project's slice
convention: row ``k`` of the input sits at output row ``factor*k``; ``n`` rows give ``(n-1)*factor+1``.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from volumetricsr.compute.networks.registry import register_architecture
from volumetricsr.compute.networks.row_upsampler import linear_rows


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2, padding_mode="replicate" if k > 1 else "zeros")


class DenseBlock(nn.Module):
    """``layers`` convolutions, each fed every earlier output; a 1x1 fusion back to ``features``; plus the input."""

    def __init__(self, features: int, growth: int, layers: int):
        super().__init__()
        self.convs = nn.ModuleList(nn.Sequential(_conv(features + i * growth, growth), nn.ReLU(inplace=True))
                                   for i in range(layers))
        self.fuse = _conv(features + layers * growth, features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for conv in self.convs:
            outs.append(conv(torch.cat(outs, 1)))
        return x + self.fuse(torch.cat(outs, 1))


@register_architecture("rdn")
class RDN(nn.Module):
    def __init__(self, factor: int, features: int = 32, growth: int = 16, blocks: int = 4, layers: int = 4):
        super().__init__()
        self.factor = int(factor)
        self.shallow1, self.shallow2 = _conv(1, features), _conv(features, features)
        self.blocks = nn.ModuleList(DenseBlock(features, growth, layers) for _ in range(blocks))
        self.global_fuse = nn.Sequential(_conv(blocks * features, features, 1), _conv(features, features))
        self.up = _conv(features, features * self.factor)
        self.out = _conv(features, 1)
        nn.init.zeros_(self.out.weight)       # starts as linear interpolation
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = linear_rows(x, self.factor)
        f1 = self.shallow1(x)
        h = self.shallow2(f1)
        outs = []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        h = self.global_fuse(torch.cat(outs, 1)) + f1
        h = rearrange(self.up(h), "b (c f) n w -> b c (n f) w", f=self.factor)[:, :, :base.shape[-2]]
        return base + self.out(h)

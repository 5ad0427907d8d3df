"""The CT-guided method's cross-modality translation network (CITNet), after MUNIT (Huang et al.
2018): per domain a content encoder, an attribute (style) encoder and a generator, and one
multi-scale discriminator per domain. 2-D, one channel, images in [-1, 1] whose sides are
multiples of 4 (two downsamplings).

- Content encoder: 7x7 convolution, two stride-2 4x4 convolutions, ``res`` residual blocks, all
  with instance normalisation and ReLU: a content map of ``4 * dim`` channels at 1/4 size.
- Attribute encoder: 7x7 convolution and four stride-2 4x4 convolutions (channels capped at
  ``4 * dim``), ReLU, no normalisation (it would remove the style), global average pooling and a
  1x1 convolution to ``attribute`` values (the paper: 8; prior N(0, I)).
- Generator: ``res`` residual blocks with adaptive instance normalisation whose scales and shifts
  an MLP (``mlp`` hidden units) computes from the attribute code, two x2 nearest upsamplings each
  followed by a 5x5 convolution with layer normalisation and ReLU, a 7x7 convolution and tanh.
- Discriminator: ``scales`` copies of a 4-layer stride-2 convolutional network (leaky ReLU), each
  on the image average-pooled once more than the last (scales whose image is smaller than 16 pixels
  are left out); LSGAN scores.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, k: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2 if stride == 1 else 1, padding_mode="reflect")


class AdaptiveInstanceNorm(nn.Module):
    """Instance normalisation whose per-channel scale and shift come with each call."""

    def forward(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x) * (1 + scale[..., None, None]) + shift[..., None, None]


class ResBlock(nn.Module):
    def __init__(self, dim: int, adaptive: bool = False):
        super().__init__()
        self.adaptive = adaptive
        self.conv1, self.conv2 = _conv(dim, dim, 3), _conv(dim, dim, 3)
        self.norm1, self.norm2 = (AdaptiveInstanceNorm() if adaptive else nn.InstanceNorm2d(dim) for _ in range(2))

    def forward(self, x: torch.Tensor, style: tuple = ()) -> torch.Tensor:
        n1 = self.norm1(self.conv1(x), *style[:2]) if self.adaptive else self.norm1(self.conv1(x))
        h = F.relu(n1)
        n2 = self.norm2(self.conv2(h), *style[2:]) if self.adaptive else self.norm2(self.conv2(h))
        return x + n2


class ContentEncoder(nn.Module):
    def __init__(self, dim: int = 64, res: int = 4):
        super().__init__()
        layers = [_conv(1, dim, 7), nn.InstanceNorm2d(dim), nn.ReLU(inplace=True)]
        for i in range(2):
            layers += [_conv(dim * 2 ** i, dim * 2 ** (i + 1), 4, 2), nn.InstanceNorm2d(dim * 2 ** (i + 1)),
                       nn.ReLU(inplace=True)]
        self.down = nn.Sequential(*layers)
        self.res = nn.Sequential(*(ResBlock(4 * dim) for _ in range(res)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res(self.down(x))


class AttributeEncoder(nn.Module):
    def __init__(self, dim: int = 64, attribute: int = 8):
        super().__init__()
        layers, c = [_conv(1, dim, 7), nn.ReLU(inplace=True)], dim
        for _ in range(4):
            layers += [_conv(c, min(2 * c, 4 * dim), 4, 2), nn.ReLU(inplace=True)]
            c = min(2 * c, 4 * dim)
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, attribute, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)


class Generator(nn.Module):
    """Content map + attribute code -> image."""

    def __init__(self, dim: int = 64, res: int = 4, attribute: int = 8, mlp: int = 256):
        super().__init__()
        c = 4 * dim
        self.res = nn.ModuleList(ResBlock(c, adaptive=True) for _ in range(res))
        self.mlp = nn.Sequential(nn.Linear(attribute, mlp), nn.ReLU(inplace=True), nn.Linear(mlp, mlp),
                                 nn.ReLU(inplace=True), nn.Linear(mlp, res * 4 * c))
        up = []
        for i in range(2):
            up += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(c // 2 ** i, c // 2 ** (i + 1), 5),
                   nn.GroupNorm(1, c // 2 ** (i + 1)), nn.ReLU(inplace=True)]    # GroupNorm(1): layer norm
        self.up = nn.Sequential(*up, _conv(dim, 1, 7), nn.Tanh())

    def forward(self, content: torch.Tensor, attribute: torch.Tensor) -> torch.Tensor:
        params = self.mlp(attribute).chunk(4 * len(self.res), dim=1)
        h = content
        for i, block in enumerate(self.res):
            h = block(h, params[4 * i:4 * i + 4])
        return self.up(h)


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, dim: int = 64, scales: int = 3, layers: int = 4):
        super().__init__()

        def one() -> nn.Sequential:
            parts, c = [nn.Conv2d(1, dim, 4, 2, 1, padding_mode="reflect"), nn.LeakyReLU(0.2, inplace=True)], dim
            for _ in range(layers - 1):
                parts += [nn.Conv2d(c, 2 * c, 4, 2, 1, padding_mode="reflect"), nn.LeakyReLU(0.2, inplace=True)]
                c *= 2
            return nn.Sequential(*parts, nn.Conv2d(c, 1, 1))

        self.nets = nn.ModuleList(one() for _ in range(scales))
        self.smallest = 2 ** layers

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for net in self.nets:
            if min(x.shape[-2:]) < self.smallest:      # too small for this scale and the coarser ones
                break
            outs.append(net(x))
            x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)
        return outs


class CITNet(nn.Module):
    """Both domains' encoders and generators (``x``: MR, ``y``: CT)."""

    def __init__(self, dim: int = 64, res: int = 4, attribute: int = 8, mlp: int = 256):
        super().__init__()
        self.attribute = attribute
        self.content_x, self.content_y = ContentEncoder(dim, res), ContentEncoder(dim, res)
        self.attribute_x, self.attribute_y = AttributeEncoder(dim, attribute), AttributeEncoder(dim, attribute)
        self.gen_x, self.gen_y = Generator(dim, res, attribute, mlp), Generator(dim, res, attribute, mlp)

    def sample_attribute(self, n: int, rng, device="cpu") -> torch.Tensor:
        """``n`` attribute codes from the prior N(0, I), drawn with the numpy generator ``rng``."""
        return torch.from_numpy(rng.standard_normal((n, self.attribute)).astype("float32")).to(device)

"""CLADE's networks (Pascale et al.): a CycleGAN generator whose convolutions demodulate their weights
instead of normalising activations, and the PatchGAN discriminator (with instance normalisation).

Generator: 7x7 convolution, two stride-2 3x3 convolutions (encoder), ``blocks`` residual blocks, two
x2 upsamplings each followed by a 3x3 convolution (decoder; nearest upsampling + convolution rather
than transposed convolutions, which checkerboard on 32x32 patches), a 7x7 convolution and tanh. It
maps images in [-1, 1] to images in [-1, 1]. ``norm='instance'`` gives the conventional CycleGAN
generator of the paper's ablation.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from volumetricsr.compute.networks.registry import register_architecture
from volumetricsr.compute.choices import NORMS



class DemodConv2d(nn.Conv2d):
    """A convolution with demodulated weights: ``w / sqrt(sum w^2 + eps)`` per output channel (over
    input channels and kernel positions), so every output channel's kernel has unit norm."""

    eps = 1e-8

    def demodulated(self) -> torch.Tensor:
        w = self.weight
        return w * torch.rsqrt(w.pow(2).sum(dim=(1, 2, 3), keepdim=True) + self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding_mode != "zeros":
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            return F.conv2d(x, self.demodulated(), self.bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, self.demodulated(), self.bias, self.stride, self.padding, self.dilation, self.groups)


def _conv(cin: int, cout: int, k: int, norm: str, stride: int = 1) -> list[nn.Module]:
    """A convolution (reflect padding) + its normalisation + ReLU."""
    if norm == "demod":
        return [DemodConv2d(cin, cout, k, stride, k // 2, padding_mode="reflect"), nn.ReLU(inplace=True)]
    return [nn.Conv2d(cin, cout, k, stride, k // 2, padding_mode="reflect"), nn.InstanceNorm2d(cout),
            nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    def __init__(self, features: int, norm: str):
        super().__init__()
        layers = _conv(features, features, 3, norm) + _conv(features, features, 3, norm)
        self.body = nn.Sequential(*layers[:-1])       # no ReLU after the second convolution

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@register_architecture("clade-generator")
class Generator(nn.Module):
    """``residual=True`` (the default here): the output is ``x + gain * net(x)``, clamped to [-1, 1],
    with ``gain`` learnt from ``GAIN_INIT``, so an untrained generator is close to the identity (for
    SR: the interpolated input) and training adds what the other domain has. (From exactly 0 nothing
    would learn: the body's gradient is scaled by the gain, and the gain's gradient is noise until
    the body is useful.) False is the paper's plain mapping."""

    GAIN_INIT = 0.1

    def __init__(self, features: int = 32, blocks: int = 6, norm: str = "demod", residual: bool = True):
        super().__init__()
        self.residual = residual
        self.gain = nn.Parameter(torch.tensor(self.GAIN_INIT)) if residual else None
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        f = features
        layers = _conv(1, f, 7, norm) + _conv(f, 2 * f, 3, norm, 2) + _conv(2 * f, 4 * f, 3, norm, 2)
        layers += [ResidualBlock(4 * f, norm) for _ in range(blocks)]
        layers += [nn.Upsample(scale_factor=2)] + _conv(4 * f, 2 * f, 3, norm)
        layers += [nn.Upsample(scale_factor=2)] + _conv(2 * f, f, 3, norm)
        out = DemodConv2d if norm == "demod" else nn.Conv2d
        layers += [out(f, 1, 7, 1, 3, padding_mode="reflect"), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, 1, H, W) in [-1, 1], any size (padded to multiples of 4 inside, edges replicated)."""
        h, w = x.shape[-2:]
        y = self.net(F.pad(x, (0, (-w) % 4, 0, (-h) % 4), mode="replicate"))[..., :h, :w]
        return (x + self.gain * y).clamp(-1, 1) if self.residual else y


class PatchDiscriminator(nn.Module):
    """PatchGAN: stride-2 4x4 convolutions with instance normalisation and LeakyReLU(0.2), then a
    one-channel map of real/fake scores (LSGAN)."""

    def __init__(self, features: int = 64, layers: int = 3):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(1, features, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        f = features
        for n in range(1, layers + 1):
            g = features * min(2 ** n, 8)
            seq += [nn.Conv2d(f, g, 4, 2 if n < layers else 1, 1), nn.InstanceNorm2d(g), nn.LeakyReLU(0.2, inplace=True)]
            f = g
        seq.append(nn.Conv2d(f, 1, 4, 1, 1))
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

"""TVSRN: the transformer volumetric super-resolution network of RPLHR-CT (Yu et al., MICCAI 2022).

``D`` thick slices ``(B, 1, D, H, W)`` in [0, 1] -> ``D' = (D-1)*factor + 1`` thin slices
``(B, 1, D', H, W)``; thick slice ``k`` sits at thin slice ``factor*k``. Following the paper:

- Linear embedding (patch 1x1): each pixel's ``D`` thick values -> ``C*D`` features (C per slice).
- Encoder: ``N`` swin layers on the in-plane map with ``C*D`` channels (window 8x8), stage residual.
- Learned mask token (one ``C``-vector, an ``nn.Parameter``) fills the ``D' - D`` missing slices;
  a fixed sin/cos code of the thin-slice position is added to every slice (as the reference).
- Decoder: ``M`` feature interaction modules (FIM). Each: a through-plane attention block (TAB:
  the SAME swin stage run on the sagittal and on the coronal view, depth being one window axis:
  windows (4 slices x 8 pixels), ``group`` neighbouring columns/rows stacked as channels;
  ``z + sag + cor``), then ``dec_layers`` in-plane swin layers on ``C*D'`` channels, stage residual.
  A long residual adds the decoder's input to its output.
- Linear projection per thin voxel: ``C`` features -> ``head_hidden`` (LeakyReLU) -> 1 intensity,
  slice by slice (the reference's head mixes channels of different slices; this one does not).

Options beyond the paper (each ablated in the README, TVSRN training):

- ``base="bspline"`` (or ``"linear"``) adds a learned linear map of the ``D``
thick slices to the ``D'`` thin ones (a ``D x D'`` matrix shared by all pixels, starting as that
interpolation) to the head's output, so the transformer learns only the residual; the head's last
layer starts at zero, so an untrained network is exactly the interpolation. The matrix learns, for
example, to undo the slice-profile blur of the thick slices. The paper's network is ``base=None``
(the default). A short training run (a CPU, hundreds of steps instead of the paper's GPU
schedule) gets far sooner to something useful with a base, started at the least-squares map of the
training data (``volumetricsr train --fit-base``). The base is the image-level skip the paper's
  network lacks.
- ``init="balanced"``: the embedding starts with weights of std ``EMBED_STD`` instead of Swin's 0.02,
  so the image features start at about the scale of the position code (paper init: about 0.02 RMS
  beside the code's 0.7, and the untrained network outputs nearly one constant per slice position).
- ``final_norm=True``: a LayerNorm on each thin voxel's ``C`` features before the head (the stage
  residuals grow the stream; the paper has no final norm).

In-plane sizes that are not multiples of ``lcm(window, group)`` are padded inside (replicate) and
cropped back, so any ``H, W`` works.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from volumetricsr.compute.networks.registry import register_architecture
from volumetricsr.data.resampling import bspline_weights, linear_weights
from volumetricsr.compute.networks.swin import SwinStage, init_weights


BASES = {None: None, "linear": linear_weights, "bspline": bspline_weights}
INITS = ("paper", "balanced")
EMBED_STD = 1.0   # init="balanced": embedding weight std (a [0, 1] CT pixel -> features of about 0.5 RMS)


def sincos_positions(length: int, dim: int) -> torch.Tensor:
    """``(length, dim)`` sin/cos code of positions 0..length-1 (Vaswani et al.)."""
    if dim % 2:
        raise ValueError(f"The position code needs an even channel count, got {dim}.")
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return pe.float()


class ThroughPlaneAttention(nn.Module):
    """TAB: one swin stage, shared by the sagittal and the coronal view; ``z + sag(z) + cor(z)``."""

    def __init__(self, channels: int, group: int, depth: int, heads: int, window, mlp_ratio: float):
        super().__init__()
        self.group = group
        self.stage = SwinStage(channels * group, depth, heads, window, mlp_ratio, residual=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` ``(B, H, W, D', C)`` with H, W multiples of ``group``."""
        b, h, w, d, c = z.shape
        g = self.group
        # sagittal: for each group of g columns, a (D' x H) image with g*C channels
        sag = z.reshape(b, h, w // g, g, d, c).permute(0, 2, 4, 1, 3, 5).reshape(b * (w // g), d, h, g * c)
        sag = self.stage(sag).reshape(b, w // g, d, h, g, c).permute(0, 3, 1, 4, 2, 5).reshape(b, h, w, d, c)
        # coronal: for each group of g rows, a (D' x W) image with g*C channels
        cor = z.reshape(b, h // g, g, w, d, c).permute(0, 1, 4, 3, 2, 5).reshape(b * (h // g), d, w, g * c)
        cor = self.stage(cor).reshape(b, h // g, d, w, g, c).permute(0, 1, 4, 3, 2, 5).reshape(b, h, w, d, c)
        return z + sag + cor


class FeatureInteraction(nn.Module):
    """FIM: a TAB, then an in-plane swin stage on all thin slices' features."""

    def __init__(self, channels: int, thin: int, group: int, tab_layers: int, dec_layers: int, heads: int,
                 window, tab_window, mlp_ratio: float):
        super().__init__()
        self.tab = ThroughPlaneAttention(channels, group, tab_layers, heads, tab_window, mlp_ratio)
        self.inplane = SwinStage(channels * thin, dec_layers, heads, window, mlp_ratio)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, h, w, d, c = z.shape
        z = self.tab(z)
        return self.inplane(z.reshape(b, h, w, d * c)).reshape(b, h, w, d, c)


class TVSRN(nn.Module):
    """See the module docstring. Defaults are the paper's: C=8, N=4, M=1, windows 8x8 and 4 in depth."""

    def __init__(self, factor: int = 5, depth: int = 4, channels: int = 8, enc_layers: int = 4, fims: int = 1,
                 tab_layers: int = 4, dec_layers: int = 4, heads: int = 8, window: int = 8,
                 tab_window=(4, 8), group: int = 8, mlp_ratio: float = 4.0, head_hidden: int = 16,
                 base: str | None = None, init: str = "paper", final_norm: bool = False):
        super().__init__()
        if factor < 1 or depth < 2:
            raise ValueError(f"TVSRN needs factor >= 1 and depth >= 2 thick slices (got {factor}, {depth}).")
        if base not in BASES:
            raise ValueError(f"TVSRN base must be one of {sorted(BASES, key=str)}, not {base!r}.")
        if init not in INITS:
            raise ValueError(f"TVSRN init must be one of {INITS}, not {init!r}.")
        self.factor, self.depth, self.channels = factor, depth, channels
        self.thin = (depth - 1) * factor + 1
        self.multiple = math.lcm(window, group)
        self.embed = nn.Linear(depth, depth * channels)
        self.encoder = SwinStage(depth * channels, enc_layers, heads, window, mlp_ratio)
        self.mask_token = nn.Parameter(torch.zeros(channels))
        self.register_buffer("positions", sincos_positions(self.thin, channels), persistent=False)
        self.decoder = nn.ModuleList(
            FeatureInteraction(channels, self.thin, group, tab_layers, dec_layers, heads, window, tab_window, mlp_ratio)
            for _ in range(fims))
        self.final_norm = nn.LayerNorm(channels) if final_norm else nn.Identity()
        self.head = (nn.Sequential(nn.Linear(channels, head_hidden), nn.LeakyReLU(0.01), nn.Linear(head_hidden, 1))
                     if head_hidden else nn.Linear(channels, 1))
        self.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        if init == "balanced":
            nn.init.trunc_normal_(self.embed.weight, std=EMBED_STD, a=-2 * EMBED_STD, b=2 * EMBED_STD)
        self.base = base
        if base is not None:
            positions = np.arange(self.thin) / factor
            self.base_weights = nn.Parameter(torch.from_numpy(BASES[base](positions, depth).T).float())  # (D, D')
            nn.init.zeros_(self.head[-1].weight if head_hidden else self.head.weight)

    def insert_mask_tokens(self, visible: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, D, C)`` encoded thick slices -> ``(B, H, W, D', C)`` with mask tokens between."""
        b, h, w, d, c = visible.shape
        f = self.factor
        if f == 1:
            return visible
        masks = self.mask_token.to(visible.dtype).expand(b, h, w, d - 1, f - 1, c)
        body = torch.cat([visible[:, :, :, :-1, None], masks], dim=4).reshape(b, h, w, (d - 1) * f, c)
        return torch.cat([body, visible[:, :, :, -1:]], dim=3)

    def padded(self, h: int, w: int) -> tuple[int, int]:
        m = self.multiple
        return math.ceil(h / m) * m, math.ceil(w / m) * m

    def prepare(self, h: int, w: int, device="cpu") -> None:
        """Plan every swin stage's windows for ``h x w`` inputs now, so that tracing (ONNX) or
        ``torch.compile`` sees only cached constants."""
        hp, wp = self.padded(h, w)
        self.encoder.prepare(hp, wp, device)
        for fim in self.decoder:
            fim.tab.stage.prepare(self.thin, hp, device)
            fim.tab.stage.prepare(self.thin, wp, device)
            fim.inplane.prepare(hp, wp, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, D, H, W)`` -> ``(B, 1, D', H, W)``."""
        if x.ndim != 5 or x.shape[1] != 1 or x.shape[2] != self.depth:
            raise ValueError(f"TVSRN expects (batch, 1, {self.depth}, rows, cols), got {tuple(x.shape)}.")
        b, _, d, h, w = x.shape
        hp, wp = self.padded(int(h), int(w))
        if (hp, wp) != (h, w):
            x = F.pad(x[:, 0], (0, wp - w, 0, hp - h), mode="replicate")[:, None]
        thick = x[:, 0].permute(0, 2, 3, 1)                                 # (B, H, W, D)
        feats = self.embed(thick)                                           # (B, H, W, D*C)
        feats = self.encoder(feats).reshape(b, hp, wp, d, self.channels)
        z0 = self.insert_mask_tokens(feats) + self.positions.to(feats.dtype)
        z = z0
        for fim in self.decoder:
            z = fim(z)
        with torch.autocast(x.device.type, enabled=False):   # output in fp32: bf16 would quantise it (~6 HU steps)
            y = self.head(self.final_norm((z + z0).float()))[..., 0]                         # (B, H, W, D')
            if self.base is not None:
                y = y + thick.float() @ self.base_weights
        return y.permute(0, 3, 1, 2)[:, None, :, :h, :w]


@register_architecture("tvsrn")
def build_tvsrn(**args) -> TVSRN:
    """Architecture factory used by model cards: ``{"name": "tvsrn", "args": {...}}``."""
    return TVSRN(**args)

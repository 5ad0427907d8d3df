"""Swin transformer layers (Liu et al., 2021) on channels-last 2-D feature maps ``(B, H, W, C)``.

Patch size 1 (one token per pixel), no patch merging: the building block of TVSRN. Attention runs
through ``torch.nn.functional.scaled_dot_product_attention`` with the relative position bias (and,
for shifted windows or padded maps, the region mask) folded into one additive mask; windows that
need a region mask are attended apart from the others, so no window is computed twice. On the CPU
attention runs in fp32 even under bf16 autocast: PyTorch's CPU flash kernel is faster in fp32 for
these tiny heads (4-16 channels; README, TVSRN speed).

Maps whose sides are not multiples of the window are zero-padded inside :class:`SwinStage`; padded
tokens get a region of their own in the mask, so real tokens never attend to them. A side that
fits in one window is not shifted (as in Swin).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Pair = tuple[int, int]
MASKED = -1e4   # additive mask value: exp underflows to 0, and it stays finite in bf16/fp16


def _pair(value) -> Pair:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def init_weights(module: nn.Module) -> None:
    """Swin initialisation: truncated normal (std 0.02) linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def relative_position_index(window: Pair) -> torch.Tensor:
    """``(N, N)`` index into the ``(2wh-1)(2ww-1)`` bias table for every token pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]
    return (rel[0] + window[0] - 1) * (2 * window[1] - 1) + rel[1] + window[1] - 1


def region_labels(size: Pair, valid: Pair, window: Pair, shift: Pair) -> torch.Tensor:
    """``(H, W)`` region id of every position of the shifted map; attention stays within a region.

    The cyclic shift wraps the map's far edge next to its near edge (Swin's three strips per axis);
    padding (beyond ``valid``, wherever the shift moved it) is a region of its own.
    """
    labels = torch.zeros(size, dtype=torch.long)
    for axis in range(2):
        n, v, w, s = size[axis], valid[axis], window[axis], shift[axis]
        lab = torch.zeros(n, dtype=torch.long)
        if s:
            lab[n - w:n - s] = 1
            lab[n - s:] = 2
        lab = lab * 2 + ((torch.arange(n) + s) % n >= v).long()   # shifted position -> padded?
        labels = labels * 8 + (lab[:, None] if axis == 0 else lab[None, :])
    return labels


def partition(x: torch.Tensor, window: Pair) -> torch.Tensor:
    """``(B, H, W, C)`` -> ``(B * nW, wh * ww, C)`` windows (row-major over the window grid)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // window[0], window[0], w // window[1], window[1], c)
    return x.transpose(2, 3).reshape(-1, window[0] * window[1], c)


def window_order(size: Pair, valid: Pair, window: Pair, shift: Pair):
    """Token order for one layer's windows: ``(order, n_plain, mask)``.

    ``order[p]`` is the row-major index (in the unshifted map) of the token at position ``p``;
    windows are contiguous runs of ``wh*ww`` tokens. The ``n_plain`` windows that need no mask
    come first; ``mask`` ``(n_masked, N, N)`` (additive) belongs to the others (None if none).
    Reordering tokens with one gather replaces Swin's roll + partition + merge + roll.
    """
    h, w = size
    rows = (torch.arange(h) + shift[0]) % h          # shifted position -> unshifted row
    cols = (torch.arange(w) + shift[1]) % w
    index = (rows[:, None] * w + cols[None, :])[None, :, :, None]
    labels = region_labels(size, valid, window, shift)[None, :, :, None]
    index, labels = partition(index, window)[..., 0], partition(labels, window)[..., 0]   # (nW, N)
    masked = (labels != labels[:, :1]).any(dim=1)
    first = torch.cat([torch.nonzero(~masked)[:, 0], torch.nonzero(masked)[:, 0]])
    lab = labels[masked]
    mask = (lab[:, :, None] != lab[:, None, :]).float() * MASKED if bool(masked.any()) else None
    return index[first].reshape(-1), int((~masked).sum()), mask


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: Pair):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads.")
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window[0] - 1) * (2 * window[1] - 1), heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("bias_index", relative_position_index(window), persistent=False)

    def position_bias(self) -> torch.Tensor:
        n = self.window[0] * self.window[1]
        return self.bias_table[self.bias_index.reshape(-1)].reshape(n, n, self.heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, n_plain: int, mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` ``(B, L, C)``, tokens in window order (see :func:`window_order`) -> same shape."""
        b, length, c = x.shape
        n = self.window[0] * self.window[1]
        nw, hd = length // n, c // self.heads
        qkv = self.qkv(x)
        if qkv.device.type == "cpu":   # fp32 attention on the CPU: faster here (module docstring)
            qkv = qkv.float()
        q, k, v = qkv.reshape(b, nw, n, 3, self.heads, hd).permute(3, 0, 1, 4, 2, 5).unbind(0)
        bias = self.position_bias()[None]                                           # (1, heads, N, N)
        parts = [(slice(0, n_plain), bias)]
        if mask is not None:   # windows across a shift seam or padding: their own region mask
            parts.append((slice(n_plain, nw), bias + mask[:, None]))               # (n_masked, heads, N, N)
        out = torch.cat([attend(q[:, s], k[:, s], v[:, s], m) for s, m in parts if s.stop > s.start], dim=1)
        return self.proj(out.reshape(b, length, c))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention in windows, in the dtype of ``q, k, v`` ``(B, nW, heads, N, hd)``; the additive
    ``mask`` is ``(1, heads, N, N)`` or one per window ``(nW, heads, N, N)``. -> ``(B, nW, N, heads, hd)``."""
    b, nw, heads, n, hd = q.shape
    if mask.shape[0] > 1:      # one mask per window, the same for every batch element (a view if B = 1)
        mask = mask[None].expand(b, -1, -1, -1, -1).reshape(b * nw, heads, n, n)
    with torch.autocast(q.device.type, enabled=False):
        out = F.scaled_dot_product_attention(q.reshape(b * nw, heads, n, hd), k.reshape(b * nw, heads, n, hd),
                                             v.reshape(b * nw, heads, n, hd), attn_mask=mask.to(q.dtype))
    return out.reshape(b, nw, heads, n, hd).transpose(2, 3)


class SwinLayer(nn.Module):
    """One swin transformer layer (STL): pre-norm window attention and MLP, both residual."""

    def __init__(self, dim: int, heads: int, window: Pair, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, n_plain: int, mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` ``(B, L, C)`` in this layer's window order."""
        x = x + self.attn(self.norm1(x), n_plain, mask)
        return x + self.mlp(self.norm2(x))


class SwinStage(nn.Module):
    """``depth`` swin layers, every second one shifted by half a window; padding handled here.

    Tokens stay in window order through the stage: one gather per layer moves them from the
    previous layer's windows to the next one's. ``residual=True`` adds the stage's input to its
    output (SwinIR's residual swin block).
    """

    def __init__(self, dim: int, depth: int, heads: int, window, mlp_ratio: float = 4.0, residual: bool = True):
        super().__init__()
        self.window = _pair(window)
        self.residual = residual
        self.layers = nn.ModuleList(SwinLayer(dim, heads, self.window, mlp_ratio) for _ in range(depth))
        self._plans: dict = {}

    def _plan(self, size: Pair, valid: Pair, device) -> tuple[list, torch.Tensor]:
        """Per layer (gather index from the previous layer's order, n_plain, mask); final gather."""
        key = (size, valid, str(device))
        if key not in self._plans:
            with torch.inference_mode(False):   # plain tensors: usable later by autograd (training, tracing)
                self._plans[key] = self._make_plan(size, valid, device)
        return self._plans[key]

    def _make_plan(self, size: Pair, valid: Pair, device) -> tuple[list, torch.Tensor]:
        half = tuple(wi // 2 if n > wi else 0 for n, wi in zip(size, self.window))
        steps, pos = [], torch.arange(size[0] * size[1])
        for i in range(len(self.layers)):
            order, n_plain, mask = window_order(size, valid, self.window, half if i % 2 else (0, 0))
            steps.append((pos[order].to(device), n_plain, None if mask is None else mask.to(device)))
            pos = torch.argsort(order)
        return steps, pos.to(device)

    def padded(self, h: int, w: int) -> Pair:
        return math.ceil(h / self.window[0]) * self.window[0], math.ceil(w / self.window[1]) * self.window[1]

    def prepare(self, h: int, w: int, device) -> None:
        """Compute the window plan for ``h x w`` maps now (before tracing or compiling the network)."""
        self._plan(self.padded(h, w), (h, w), device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> same shape."""
        if not len(self.layers):
            return x
        b, c = x.shape[0], x.shape[3]
        h, w = int(x.shape[1]), int(x.shape[2])    # plain ints (also while tracing for ONNX): plan cache key
        hp, wp = self.padded(h, w)
        y = F.pad(x, (0, 0, 0, wp - w, 0, hp - h)) if (hp, wp) != (h, w) else x
        steps, final = self._plan((hp, wp), (h, w), x.device)
        t = y.reshape(b, hp * wp, c)
        for layer, (gather, n_plain, mask) in zip(self.layers, steps):
            t = layer(t.index_select(1, gather), n_plain, mask)
        y = t.index_select(1, final).reshape(b, hp, wp, c)
        if (hp, wp) != (h, w):
            y = y[:, :h, :w]
        return x + y if self.residual else y

"""Feature extractors for perceptual losses: VGG16 from a local weights file, or a substitute that
needs no download.

- :class:`VGG16Features`: torchvision's VGG16 ``features`` layers through relu3_3 (the layers
  Johnson et al.'s perceptual loss uses), with torchvision's layer indices, so the ``features.*``
  tensors of a torchvision state dict (``vgg16-397923af.pth``) load as they are. The file is
  checked against its SHA256 (given, or the hex prefix torchvision puts in its file names) and
  read with ``torch.load(weights_only=True)``. Grey images in [-1, 1] are repeated to RGB and given
  ImageNet's normalisation.
- :class:`EdgePyramid` (the substitute): Sobel gradient magnitudes at three scales (1, 1/2, 1/4).
  Pretrained weights cannot be downloaded here, and a randomly initialised VGG's features mean
  whatever its seed makes them mean; the perceptual term of the CT-guided method compares an MR
  image with its CT translation, so what it must measure is shared structure, whatever the
  contrast: edge strength is that, independent of the edge's polarity (bone is bright in CT, dark
  in T1), deterministic and cheap on a CPU.

Both return a list of feature maps; :func:`perceptual_loss` is the mean squared difference of each
(``1/CHW ||phi(a) - phi(b)||^2``, the paper's eq. 4), summed over the maps.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from volumetricsr.common.errors import InputError, ModelError
from volumetricsr.compute.models import sha256_of

#: torchvision's VGG16 ``features`` up to relu3_3: (index, in, out) of each convolution; pools at 4 and 9.
VGG16_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256))
VGG16_LAST = 15
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        convs = {i: (cin, cout) for i, cin, cout in VGG16_CONVS}
        for i in range(VGG16_LAST + 1):
            if i in convs:
                layers.append(nn.Conv2d(*convs[i], 3, padding=1))
            elif i in (4, 9):
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU(inplace=False))
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x.repeat(1, 3, 1, 1) + 1) / 2 - self.mean) / self.std
        return [self.features(x)]


class EdgePyramid(nn.Module):
    """Sobel gradient magnitude at scales 1, 1/2 and 1/4 (average pooling)."""

    def __init__(self, scales: int = 3):
        super().__init__()
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
        self.register_buffer("kernels", torch.stack([sobel, sobel.t()])[:, None])
        self.scales = scales

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for s in range(self.scales):
            g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernels)
            out.append(torch.sqrt(g.pow(2).sum(1, keepdim=True) + 1e-6))
            if s + 1 < self.scales:
                x = F.avg_pool2d(x, 2, ceil_mode=True)
        return out


def perceptual_loss(phi: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return sum(F.mse_loss(fa, fb) for fa, fb in zip(phi(a), phi(b)))


def _expected_hash(path: Path, sha256: Optional[str]) -> str:
    if sha256:
        if not re.fullmatch(r"[0-9a-fA-F]{8,64}", sha256):
            raise InputError(f"--perceptual-sha256 {sha256!r} is not a SHA256 (at least its first 8 hex digits).")
        return sha256.lower()
    match = re.search(r"-([0-9a-f]{8,64})\.pth?$", path.name)
    if not match:
        raise InputError(f"{path.name}: give the file's SHA256 (--perceptual-sha256), or keep torchvision's file "
                         "name, which ends in the start of its hash (vgg16-397923af.pth).")
    return match.group(1)


def load_vgg16(path: "str | Path", sha256: Optional[str] = None) -> tuple[VGG16Features, str]:
    """VGG16 features from a local torchvision state dict, refused unless its SHA256 matches;
    ``(frozen network, full SHA256)``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Perceptual weights {path} do not exist.")
    expected, digest = _expected_hash(path, sha256), sha256_of(path)
    if not digest.startswith(expected):
        raise ModelError(f"{path.name}: SHA256 {digest[:16]}... does not match the expected {expected[:16]}...; "
                         "the file is corrupt or not the VGG16 weights named. Refused.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors come in many types
        raise ModelError(f"{path.name} is not a loadable weights file ({exc}).") from exc
    net = VGG16Features()
    wanted = [k for k in net.state_dict() if k.startswith("features.")]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ModelError(f"{path.name} is not a torchvision VGG16 state dict (no {missing[0]}).")
    try:
        net.load_state_dict({k: state[k] for k in wanted}, strict=False)
    except RuntimeError as exc:
        raise ModelError(f"{path.name}: the tensors do not fit VGG16 ({str(exc).splitlines()[-1][:200]}).") from exc
    return net.eval().requires_grad_(False), digest


def feature_extractor(weights: Optional[str] = None, sha256: Optional[str] = None) -> tuple[nn.Module, dict]:
    """The perceptual network and what the model card records about it."""
    if weights:
        net, digest = load_vgg16(weights, sha256)
        return net, {"kind": "vgg16", "layers": "relu3_3", "weights": Path(weights).name, "sha256": digest}
    return EdgePyramid().requires_grad_(False), {
        "kind": "edge-pyramid", "note": "substitute for VGG16 (no pretrained weights here): Sobel gradient "
                                        "magnitude at scales 1, 1/2, 1/4 (volumetricsr.compute.perceptual.EdgePyramid)"}

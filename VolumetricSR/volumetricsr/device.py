"""Choosing the compute device."""
from __future__ import annotations

from .errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str = "auto") -> str:
    """'auto' -> the best available of cuda, mps, cpu; a named device is checked to be usable."""
    import torch

    name = (device or "auto").lower()
    base = name.split(":")[0]
    if base not in DEVICES:
        raise InputError(f"Unknown device {device!r}; use one of {', '.join(DEVICES)}.")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if base == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if base == "cuda" and not cuda:
        raise InputError("CUDA was asked for but is not usable here (no NVIDIA GPU, or a CPU-only torch "
                         f"build: torch {torch.__version__}). Use --device cpu or auto.")
    if base == "mps" and not mps:
        raise InputError("MPS (Apple GPU) was asked for but is not available. Use --device cpu or auto.")
    return name


def describe_device(device: str) -> str:
    """Human-readable name of a resolved device, with free memory for GPUs."""
    import torch

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        free, total = torch.cuda.mem_get_info(index)
        return f"{torch.cuda.get_device_name(index)} ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"
    return {"mps": "Apple GPU (MPS)"}.get(device, "CPU")

"""Choosing the compute device."""
from __future__ import annotations

import warnings
from typing import Optional

from volumetricsr.common.errors import InputError, Notice

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str = "auto") -> str:
    """'auto' -> the best available of cuda, mps, cpu; a named device is checked to be usable."""
    import torch

    name = (device or "auto").lower()
    base = name.split(":")[0]
    if base not in DEVICES:
        raise InputError(f"Unknown device {device!r}; use one of {', '.join(DEVICES)}.")
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if base == "auto":
        for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            problem = cuda_problem(index)
            if problem is None:
                return "cuda" if index == 0 else f"cuda:{index}"
            warnings.warn(f"Skipping GPU cuda:{index}: {problem}", Notice, stacklevel=2)
        return "mps" if mps else "cpu"
    if base == "cuda":
        index = torch.device(name).index or 0
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise InputError("CUDA was asked for but is not usable here (no NVIDIA GPU, or a CPU-only torch "
                             f"build: torch {torch.__version__}). Use --device cpu or auto.")
        problem = cuda_problem(index)
        if problem:
            raise InputError(f"GPU {name} cannot be used: {problem} Use --device cpu or auto.")
    if base == "mps" and not mps:
        raise InputError("MPS (Apple GPU) was asked for but is not available. Use --device cpu or auto.")
    return name


def cuda_problem(index: int) -> Optional[str]:
    """Why this torch build cannot drive GPU ``index`` (None: it can): its compute capability is
    missing from the build's architectures (a newer GPU than the wheel, or an old one it dropped),
    or a first operation on it fails (driver too old, device busy or broken)."""
    import torch

    major, minor = torch.cuda.get_device_capability(index)
    arches = torch.cuda.get_arch_list()
    name = torch.cuda.get_device_name(index)
    runs = any(a.startswith("sm_") and a[3:].isdigit() and int(a[3:]) // 10 == major and int(a[3:]) % 10 <= minor
               for a in arches)                               # binary code of the same major, lower minor
    runs = runs or any(a.startswith("compute_") and a[8:].isdigit() and int(a[8:]) <= major * 10 + minor
                       for a in arches)                       # PTX the driver can compile
    if not runs:
        return (f"{name} has compute capability {major}.{minor} (sm_{major}{minor}), which this PyTorch "
                f"{torch.__version__} build was not compiled for (it has {' '.join(arches) or 'none'}); install a "
                "PyTorch build that supports it.")
    try:
        _first_operation(index)
    except Exception as exc:    # driver/runtime mismatch, device in exclusive use, ...
        return f"{name} fails a first operation ({str(exc).splitlines()[0][:200]}); check the NVIDIA driver."
    return None


def _first_operation(index: int) -> None:
    import torch

    (torch.ones(1, device=f"cuda:{index}") + 1).item()


def describe_device(device: str) -> str:
    """Human-readable name of a resolved device, with free memory for GPUs."""
    import torch

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        free, total = torch.cuda.mem_get_info(index)
        return f"{torch.cuda.get_device_name(index)} ({free / 2**30:.1f} of {total / 2**30:.1f} GiB free)"
    return {"mps": "Apple GPU (MPS)"}.get(device, "CPU")

"""The device list of the panel: auto, each CUDA GPU with its name and memory, MPS, CPU.

The list reads device properties only: asking for free memory (``torch.cuda.mem_get_info``) would
create a CUDA context on every GPU of the machine inside Slicer's process, just by opening the panel.
"""
from __future__ import annotations

import importlib.util
import shutil
from typing import Optional


def _torch():
    """The torch module, or None when it is not installed or does not import."""
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch
    except Exception:  # a broken install must not break the panel
        return None
    return torch


def device_choices(torch=None) -> list[tuple[str, str]]:
    """``[(value, label)]``; values are what ``volumetricsr.compute.device.resolve_device`` accepts."""
    torch = torch if torch is not None else _torch()
    choices = [("auto", "Auto (best available)")]
    if torch is not None and torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            try:
                props = torch.cuda.get_device_properties(i)
                label = f"{props.name} ({props.total_memory / 2**30:.0f} GiB)"
            except Exception as exc:  # a GPU that errors on query is shown, with the reason
                label = f"unusable: {exc}"
            choices.append((f"cuda:{i}", f"CUDA {i}: {label}"))
    mps = getattr(getattr(torch, "backends", None), "mps", None) if torch is not None else None
    if mps is not None and mps.is_available():
        choices.append(("mps", "Apple GPU (MPS)"))
    choices.append(("cpu", "CPU"))
    return choices


def gpu_notice(torch=None, nvidia_smi: Optional[str] = "auto") -> str:
    """A message when a GPU is present but not usable, or when torch is missing; '' when all is well."""
    torch = torch if torch is not None else _torch()
    has_nvidia = bool(shutil.which("nvidia-smi")) if nvidia_smi == "auto" else bool(nvidia_smi)
    if torch is None:
        return ("PyTorch is not installed: only the interpolation methods can run. Network methods install it "
                "on first use (or use the PyTorch Utils module).")
    if torch.cuda.is_available():
        return ""
    if has_nvidia and getattr(torch.version, "cuda", None) is None:
        return (f"An NVIDIA GPU is present but PyTorch {torch.__version__} is a CPU-only build. Reinstall PyTorch "
                "with the PyTorch Utils module (it picks the CUDA build that matches your driver), then restart Slicer.")
    if has_nvidia:
        return (f"An NVIDIA GPU is present but PyTorch {torch.__version__} (CUDA {torch.version.cuda}) cannot use it: "
                "the NVIDIA driver may be too old for this build. Update the driver or reinstall PyTorch.")
    return ""

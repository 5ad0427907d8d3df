"""Atomic checkpoints (through the one writer, :mod:`volumetricsr.data.writer`) and random-number-generator state."""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from volumetricsr.common.errors import ModelError, OutputError
from volumetricsr.data.writer import write_atomically


def atomic_save(obj, path: "str | os.PathLike") -> Path:
    """``torch.save`` to ``path`` so that a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return write_atomically(path, lambda staged: torch.save(obj, staged))
    except (OSError, RuntimeError) as exc:     # torch reports a full disk as a RuntimeError
        raise OutputError(f"Could not write {path}: {str(exc).splitlines()[0][:200]} (is the disk full?); "
                          f"the previous {path.name} is kept.") from exc


def load(path: "str | os.PathLike") -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"No checkpoint at {path}: nothing to resume.")
    except Exception as exc:  # zip / unpickling errors come in many types
        raise ModelError(f"Checkpoint {path} is not readable ({exc}).") from exc


def _numpy_state() -> list:
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return [keys.tolist(), int(pos), int(has_gauss), float(gauss)]


def rng_state(generator: np.random.Generator) -> dict:
    """Every random state a training run draws from (Python, numpy, torch and the data sampler)."""
    state = {"python": list(random.getstate()[1]), "python_pos": random.getstate()[2],
             "numpy_global": _numpy_state(), "torch": torch.get_rng_state(),
             "sampler": generator.bit_generator.state}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generator: np.random.Generator) -> None:
    version = random.getstate()[0]
    random.setstate((version, tuple(state["python"]), state["python_pos"]))
    keys, pos, has_gauss, gauss = state["numpy_global"]
    np.random.set_state(("MT19937", np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    generator.bit_generator.state = state["sampler"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

"""Writing a trained network as a model (weights ``<id>.pt`` + JSON card ``<id>.json``, see models.py)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import InputError
from ..models import ModelCard, sha256_of
from .checkpoint import atomic_save

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_model_id(model_id: str) -> str:
    if not ID_PATTERN.match(model_id or "") or model_id.endswith(".json"):
        raise InputError(f"Model id {model_id!r}: use letters, digits, '.', '_' and '-' (it names the files).")
    return model_id


def write_model(folder: "str | os.PathLike", model_id: str, state_dict: dict, fields: dict,
                metrics: dict | None = None, **extra) -> ModelCard:
    """Save ``state_dict`` and a card with ``fields`` (method, architecture, ...) into ``folder``.

    Both files are written atomically, the weights first; the card is read back and verified.
    """
    check_model_id(model_id)
    folder = Path(folder)
    weights = atomic_save(state_dict, folder / f"{model_id}.pt")
    card = {"id": model_id, **fields, "metrics": metrics or {}, "weights": weights.name,
            "sha256": sha256_of(weights), **extra}
    path = folder / f"{model_id}.json"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, path)
    loaded = ModelCard.load(path)
    loaded.verify()
    return loaded

"""Writing a trained network: as a model (weights ``<id>.pt`` + JSON card ``<id>.json``, see :mod:`.models`),
or as an ONNX file (:func:`export_onnx`)."""
from __future__ import annotations

import io
import json
import os
import re
import warnings
from pathlib import Path
from typing import Sequence

from volumetricsr.common.errors import InputError, OutputError
from volumetricsr.compute.models import ModelCard, sha256_of
from volumetricsr.data.writer import Transaction

def export_onnx(net, path: "str | os.PathLike | io.BytesIO", example: Sequence[int], free: Sequence[int] = (0,),
                opset: int = 18) -> None:
    """The one ONNX export: ``net`` traced on zeros of shape ``example``; the axes in ``free`` (0: the
    batch) stay free in the file. Every method with a network exports through here, with the example
    its :meth:`~volumetricsr.methods.base.Method.onnx_example` gives."""
    import torch

    net = net.eval().cpu()
    axes = {a: "batch" if a == 0 else f"size{a}" for a in free}
    # no_grad: tracing with autograd on keeps every activation (about 10 GB for a 4x256x256 window)
    with warnings.catch_warnings(), torch.no_grad():   # shape-dependent Python values: constants here
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)   # the TorchScript exporter: still fine
        torch.onnx.export(net, (torch.zeros(tuple(example)),), path if hasattr(path, "write") else str(path),
                          input_names=["thick"], output_names=["thin"], dynamic_axes={"thick": axes, "thin": axes},
                          opset_version=opset, dynamo=False)


ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_model_id(model_id: str) -> str:
    if not ID_PATTERN.match(model_id or "") or model_id.endswith(".json"):
        raise InputError(f"Model id {model_id!r}: use letters, digits, '.', '_' and '-' (it names the files).")
    return model_id


def write_model(folder: "str | os.PathLike", model_id: str, state_dict: dict, fields: dict,
                metrics: dict | None = None, **extra) -> ModelCard:
    """Save ``state_dict`` and a card with ``fields`` (method, architecture, ...) into ``folder``.

    Weights and card are one transaction of the writer (both placed, or neither); the card is read
    back and verified.
    """
    import torch

    check_model_id(model_id)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights, path = folder / f"{model_id}.pt", folder / f"{model_id}.json"
    try:
        with Transaction({"weights": weights, "card": path}) as tx:
            torch.save(state_dict, tx.path(weights))
            card = {"id": model_id, **fields, "metrics": metrics or {}, "weights": weights.name,
                    "sha256": sha256_of(tx.path(weights)), **extra}
            tx.path(path).write_text(json.dumps(card, indent=2) + "\n")
    except (OSError, RuntimeError) as exc:     # torch reports a full disk as a RuntimeError
        raise OutputError(f"Could not write model {model_id} to {folder}: {str(exc).splitlines()[0][:200]} "
                          f"(is the disk full?).") from exc
    loaded = ModelCard.load(path)
    loaded.verify()
    return loaded

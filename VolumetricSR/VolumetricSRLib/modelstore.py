"""Model list, model card text and model import for the panel, over ``volumetricsr.compute.models``."""
from __future__ import annotations

import html
import shutil
from pathlib import Path
from typing import Optional


def model_choices(method: str) -> list[tuple[str, str]]:
    """``[(model id, label)]`` for ``method``, shipped models first, then the user's."""
    from volumetricsr.compute.models import list_models

    return [(c.id, f"{c.id}  (x{c.native_factor:g}, {c.modality})") for c in list_models(method)]


def uses_models(method) -> bool:
    """A method that needs a model, or one that trains on the volume unless given a saved one."""
    return method is not None and (method.needs_model or "model" in method.options)


def method_model_choices(method) -> list[tuple[str, str]]:
    """The model list the panel offers for a core ``method``: its models, and first, for a method
    that trains on the volume, ``("", ...)``: no model, train on this volume."""
    if not uses_models(method):
        return []
    first = [] if method.needs_model else [("", "none: train on this volume")]
    return first + model_choices(method.name)


def card_html(card) -> str:
    """A short description of a model card: data, metrics, timing, file."""
    def esc(value) -> str:
        return html.escape(str(value))

    data = card.training_data
    if isinstance(data, dict):
        data = ", ".join(f"{k}: {v}" for k, v in data.items())
    rows = [("Method", card.method), ("Native factor", f"x{card.native_factor:g}"), ("Modality", card.modality),
            ("Training data", data)]
    if isinstance(card.metrics, dict) and card.metrics:
        rows.append(("Metrics", ", ".join(f"{k} {v}" for k, v in card.metrics.items())))
    timing = card.extra.get("timing")
    if timing:
        rows.append(("Timing", ", ".join(f"{k}: {v}" for k, v in timing.items()) if isinstance(timing, dict) else timing))
    rows.append(("Card", card.path))
    return "<br>".join(f"<b>{esc(k)}:</b> {esc(v)}" for k, v in rows)


def import_model(card_path: "str | Path", destination: Optional[Path] = None, overwrite: bool = False):
    """Copy a model card and the files it names into the user models folder, after checking them.

    Raises ``ModelError`` with a message for the user when the card is unreadable, names an unknown
    method, its weights are missing or do not match the checksum, or another model has the same id.
    Returns the card loaded from its new place.
    """
    from volumetricsr.common.errors import ModelError
    from volumetricsr.methods import available_methods
    from volumetricsr.compute.models import ModelCard, user_models_dir

    card = ModelCard.load(card_path)
    known = {m.name for m in available_methods()}
    if card.method not in known:
        raise ModelError(f"Model {card.id} is for method {card.method!r}, which this VolumetricSR does not have "
                         f"(available: {', '.join(sorted(known))}). Update the extension or pick another model.")
    card.verify()
    dest = Path(destination) if destination is not None else user_models_dir()
    dest.mkdir(parents=True, exist_ok=True)
    files = [card.path, card.weights_path]
    onnx = card.extra.get("onnx")
    if onnx:
        files.append(card.path.parent / onnx)
    target_card = dest / card.path.name
    if target_card.resolve() == card.path.resolve():
        return card
    if target_card.exists() and not overwrite:
        raise ModelError(f"A model card {target_card.name} is already in {dest}; remove it first or import with overwrite.")
    for f in files:
        if not f.is_file():
            raise ModelError(f"Model {card.id}: {f} is missing.")
        if not f.resolve().is_relative_to(card.path.parent.resolve()):
            raise ModelError(f"Model {card.id}: {f} is outside the card's folder; keep the model's files beside its card.")
    for f in files:
        target = dest / f.resolve().relative_to(card.path.parent.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, target)
    return ModelCard.load(target_card)

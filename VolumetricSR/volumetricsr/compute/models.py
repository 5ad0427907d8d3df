"""Model files: a weights file plus a JSON card, found in models/ and in the user's models folder.

A card (``<id>.json``) names the method, the architecture and its arguments, the native factor, the
modality, the intensity normalisation, the training data, metrics and the weights file with its
SHA256. Weights load with ``torch.load(weights_only=True)`` after the checksum is verified.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from volumetricsr.common.errors import ModelError
from volumetricsr.data.writer import write_text

REQUIRED = ("id", "method", "architecture", "native_factor", "modality", "normalization",
            "training_data", "metrics", "weights", "sha256")


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _text(v) -> bool:
    return isinstance(v, str) and v != ""


#: What each card field the code reads must hold (the required ones and the optional ones it uses).
FIELDS = {
    "id": (_text, "a name"), "method": (_text, "a method name"), "modality": (_text, "a modality name"),
    "weights": (_text, "a file name"), "sha256": (_text, "a SHA256 in hex"),
    "architecture": (lambda v: isinstance(v, dict) and _text(v.get("name")) and isinstance(v.get("args", {}), dict),
                     'an object {"name": ..., "args": {...}}'),
    "native_factor": (_positive, "a number above 0"),
    "normalization": (lambda v: isinstance(v, dict), 'an object {"kind": ..., "low": ..., "high": ...}'),
    "metrics": (lambda v: isinstance(v, dict), "an object"),
    "slice_spacing_mm": (lambda v: _positive(v) or isinstance(v, list) and v and all(map(_positive, v)),
                         "a spacing in mm or a list of them"),
    "window": (lambda v: isinstance(v, list) and len(v) == 3 and all(isinstance(x, int) and _positive(x) for x in v),
               "three whole numbers above 0"),
    "onnx": (_text, "a file name"), "onnx_sha256": (_text, "a SHA256 in hex"),
    "prior": (lambda v: isinstance(v, bool), "true or false"),
}
FIELDS["onnx_window"] = FIELDS["window"]

#: Shipped models, next to the package (models/ at the top of the repository).
SHIPPED_DIR = Path(__file__).resolve().parents[3] / "models"
USER_DIR_ENV = "VOLUMETRICSR_MODELS"
#: Relative distance from a model's training slice spacing beyond which a run gets a warning.
SPACING_TOLERANCE = 0.25

def user_models_dir() -> Path:
    return Path(os.environ.get(USER_DIR_ENV, Path.home() / ".volumetricsr" / "models"))


def model_dirs() -> list[Path]:
    return [SHIPPED_DIR, user_models_dir()]


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_WEIGHTS: dict[tuple, dict] = {}      # ModelCard.state_dict's per-process cache, by file, checksum and mtime


@dataclass
class ModelCard:
    id: str
    method: str
    architecture: dict
    native_factor: float
    modality: str
    normalization: dict
    training_data: object
    metrics: dict
    weights: str
    sha256: str
    path: Path = field(default=Path("."), compare=False)
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, path: "str | os.PathLike") -> "ModelCard":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ModelError(f"Model card {path} does not exist.")
        except (OSError, ValueError, RecursionError) as exc:
            raise ModelError(f"Model card {path} is not readable JSON: {str(exc)[:200]}")
        if not isinstance(data, dict):
            raise ModelError(f"Model card {path} holds {json.dumps(data)[:40]}, not a card: a JSON object "
                             f"with {', '.join(REQUIRED)}.")
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise ModelError(f"Model card {path} lacks {', '.join(missing)}.")
        for name, (ok, what) in FIELDS.items():
            if name in data and not ok(data[name]):
                raise ModelError(f"Model card {path}: {name} must be {what}, not {json.dumps(data[name])[:60]}.")
        return cls(**{k: data[k] for k in REQUIRED}, path=path,
                   extra={k: v for k, v in data.items() if k not in REQUIRED})

    def file(self, name: str) -> Path:
        """A file the card names (weights, ONNX), which must lie in the card's own folder."""
        folder = self.path.parent.resolve()
        path = (folder / name).resolve()
        if Path(name).is_absolute() or path.parent != folder:
            raise ModelError(f"Model {self.id}: the card names {name!r}, which is not a file in the card's folder "
                             f"{folder}; card files must sit next to the card.")
        return path

    @property
    def weights_path(self) -> Path:
        return self.file(self.weights)

    def verify(self) -> Path:
        """Check the weights file exists and matches the card's SHA256."""
        return self._verified(self.weights, self.sha256, "weights file")

    def onnx_path(self) -> Path | None:
        """The card's ONNX file, checked against its ``onnx_sha256`` (None if the card names none)."""
        name = self.extra.get("onnx")
        if not name:
            return None
        if not self.extra.get("onnx_sha256"):
            raise ModelError(f"Model {self.id}: the card names {name} without its onnx_sha256; re-export it "
                             f"(volumetricsr export-onnx --model {self.id} ... --update-card).")
        return self._verified(name, self.extra["onnx_sha256"], "ONNX file")

    def _verified(self, name: str, sha256: str, what: str) -> Path:
        w = self.file(name)
        if not w.is_file():
            raise ModelError(f"Model {self.id}: {what} {w} is missing (the card names {name!r}).")
        digest = sha256_of(w)
        if digest != sha256:
            raise ModelError(f"Model {self.id}: {w.name} does not match its card (SHA256 {digest[:12]}..., "
                             f"card says {sha256[:12]}...). The file is corrupt or belongs to another model.")
        return w

    def update(self, **fields) -> "ModelCard":
        """Add or replace card fields (not the weights or their checksum); atomic; returns the new card."""
        if {"id", "weights", "sha256"} & set(fields):
            raise ModelError("A card update cannot change the id, the weights file or its SHA256.")
        data = json.loads(self.path.read_text())
        data.update(fields)
        write_text(self.path, json.dumps(data, indent=2) + "\n")
        return ModelCard.load(self.path)

    def state_dict(self) -> dict:
        """The weights, checked against the card; read once per process while the file is unchanged
        (a cohort worker loads its model once)."""
        import torch

        w = self.file(self.weights)
        stat = w.stat() if w.is_file() else None
        key = (str(w.resolve()), self.sha256, stat and stat.st_size, stat and stat.st_mtime_ns)
        if key in _WEIGHTS:
            return _WEIGHTS[key]
        w = self.verify()
        try:
            state = torch.load(w, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle and zip errors come in many types
            raise ModelError(f"Model {self.id}: {w.name} is not a loadable weights file ({exc}).") from exc
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        while len(_WEIGHTS) >= 4:
            _WEIGHTS.pop(next(iter(_WEIGHTS)))
        _WEIGHTS[key] = state
        return state

    def build(self):
        """The network with its trained weights, in eval mode."""
        from volumetricsr.compute.networks import ARCHITECTURES  # importing the package registers them all

        name, args = self.architecture["name"], self.architecture.get("args", {})
        if name not in ARCHITECTURES:
            raise ModelError(f"Model {self.id}: unknown architecture {name!r} "
                             f"(known: {', '.join(sorted(ARCHITECTURES)) or 'none'}).")
        try:
            net = ARCHITECTURES[name](**args)
        except TypeError as exc:
            raise ModelError(f"Model {self.id}: bad arguments for architecture {name}: {exc}") from exc
        try:
            missing, unexpected = net.load_state_dict(self.state_dict(), strict=False)
        except RuntimeError as exc:      # tensor shapes that differ from the architecture's
            raise ModelError(f"Model {self.id} ({self.path}): the weights do not fit architecture {name} {args}: "
                             f"{str(exc).splitlines()[-1].strip()[:300]} Card and weights disagree.") from exc
        if missing or unexpected:
            raise ModelError(f"Model {self.id}: the weights do not fit architecture {name} {args} "
                             f"(missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}). "
                             "Card and weights disagree.")
        return net.eval()

    def training_spacing(self) -> tuple[float, float] | None:
        """The thick slice spacings (mm) the model was trained on, as (lowest, highest), if the card says."""
        value = self.extra.get("slice_spacing_mm")
        if value is None:
            return None
        values = [float(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        return min(values), max(values)

    def spacing_warning(self, spacing: float, tolerance: float = SPACING_TOLERANCE) -> str | None:
        """A message when ``spacing`` lies more than ``tolerance`` (relative) outside the training spacings."""
        trained = self.training_spacing()
        if trained is None or trained[0] / (1 + tolerance) <= spacing <= trained[1] * (1 + tolerance):
            return None
        seen = f"{trained[0]:g} mm" if trained[0] == trained[1] else f"{trained[0]:g} to {trained[1]:g} mm"
        return (f"The slices are {spacing:g} mm apart, but model {self.id} was trained on slices {seen} apart: "
                "expect a weaker result (selfsr learns from the volume itself).")

    def summary(self) -> str:
        metrics = ", ".join(f"{k} {v}" for k, v in self.metrics.items()) if isinstance(self.metrics, dict) else ""
        return f"{self.id}  [{self.method}, x{self.native_factor:g}, {self.modality}]  {metrics}"


def list_models(method: Optional[str] = None, problems: Optional[list] = None) -> list[ModelCard]:
    """Cards in every models folder (shipped first), optionally only those of ``method``; cards that
    cannot be read are left out and, with ``problems``, appended to it as ``(path, reason)``."""
    cards = []
    for d in model_dirs():
        for p in sorted(d.glob("*.json")) if d.is_dir() else []:
            try:
                card = ModelCard.load(p)
            except ModelError as exc:
                if problems is not None:
                    problems.append((p, str(exc)))
                continue
            if method is None or card.method == method:
                cards.append(card)
    return cards


def find_model(model_id: Optional[str] = None, method: Optional[str] = None) -> ModelCard:
    """A card by id or card path; without an id, the first model of ``method``."""
    if model_id and (model_id.endswith(".json") or os.sep in model_id):
        return ModelCard.load(model_id)
    problems: list = []
    cards = list_models(None if model_id else method, problems)     # by id: any method's (the caller checks it)
    for card in cards:
        if model_id is None or card.id == model_id:
            return card
    broken = [reason for path, reason in problems if path.stem == model_id]
    if broken:
        raise ModelError(broken[0])
    where = ", ".join(str(d) for d in model_dirs())
    if model_id is None:
        raise ModelError(f"No model for method {method!r} in {where}. Train or import one (see the README).")
    known = ", ".join(c.id for c in cards if method is None or c.method == method) or "none"
    raise ModelError(f"No model {model_id!r} in {where} (known: {known}).")

"""The trainer's events (``volumetricsr.common.progress``) as a status line, and the loss history
for the live curve. Progress is the events' ``fraction`` (``VolumetricSRLib.processtask``)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional


def _number(value) -> Optional[float]:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def describe(record: dict) -> str:
    """'epoch 3, step 1200, loss 0.0123, val PSNR 38.21 dB, about 5 min left' from the keys present."""
    from VolumetricSRLib.runner import format_duration

    parts = []
    event = record.get("event")
    if event in ("stopped", "done", "model", "start"):
        parts.append({"stopped": "stopped, checkpoint saved", "done": "training done",
                      "model": f"model {record.get('id', '')} written", "start": "started"}[event])
    for key, label, fmt in (("epoch", "epoch", "{:g}"), ("step", "step", "{:g}"), ("loss", "loss", "{:.4g}"),
                            ("val_psnr", "val PSNR", "{:.2f} dB")):
        value = _number(record.get(key))
        if value is not None:
            parts.append(f"{label} {fmt.format(value)}")
    eta = _number(record.get("eta"))
    if eta is not None and event not in ("stopped", "done"):
        parts.append(f"about {format_duration(eta)} left")
    message = record.get("message")
    if message:
        parts.append(str(message))
    return ", ".join(parts)


@dataclass
class LossHistory:
    """Training loss by step, and validation PSNR by step, as they arrive."""

    loss: list[tuple[float, float]] = field(default_factory=list)
    val_psnr: list[tuple[float, float]] = field(default_factory=list)

    def add(self, record: dict) -> bool:
        """Add a record's points; True when the curve changed."""
        step = _number(record.get("step"))
        if step is None:
            step = _number(record.get("epoch"))
        if step is None:
            return False
        changed = False
        for key, series in (("loss", self.loss), ("val_psnr", self.val_psnr)):
            value = _number(record.get(key))
            if value is not None:
                series.append((step, value))
                changed = True
        return changed

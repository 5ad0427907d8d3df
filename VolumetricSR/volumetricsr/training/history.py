"""A training run's history: ``log.jsonl``, one JSON object per step (validation metrics on the
epoch's last step), appended before every checkpoint and never rewritten, so a run of any length
writes each row once; and ``curves.png``, drawn from a summary of bounded size (the losses averaged
in bins that double in width as the run grows, every validation row kept).

A checkpoint records the log's length when it was written (:attr:`History.size`); a resumed run cuts
the log back to it (rows of steps after the checkpoint are run again) and rebuilds the summary.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional

import numpy as np
from volumetricsr.data.writer import write_atomically


def _mean(rows: list[dict]) -> dict:
    keys = dict.fromkeys(k for r in rows for k in r if k != "step")
    return {"step": rows[-1]["step"], **{k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}}


class History:
    def __init__(self, path: "str | os.PathLike", points: int = 1000):
        self.path, self.points = Path(path), points
        self.size = 0                  # bytes of the log this run stands on
        self.bins: list[dict] = []     # training losses, each the mean over ``width`` steps
        self.width = 1
        self.open: list[dict] = []     # steps of the bin being filled
        self.val: list[dict] = []      # every row with validation metrics

    def append(self, rows: list[dict]) -> None:
        """Rows to the log (flushed to disk) and to the summary."""
        if not rows:
            return
        text = "".join(json.dumps(r) + "\n" for r in rows).encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        self.size += len(text)
        for row in rows:
            self._summarise(row)

    def restore(self, size: int) -> Optional[str]:
        """Back to a checkpoint's log of ``size`` bytes; a message if the log has lost rows since."""
        have = self.path.stat().st_size if self.path.exists() else 0
        if have > size:
            with open(self.path, "r+b") as f:
                f.truncate(size)
        self.size = min(have, size)
        for row in self.rows():
            self._summarise(row)
        if have < size:
            return (f"{self.path} is shorter than the checkpoint expects ({have} of {size} bytes): the history "
                    "before this resume is incomplete; training itself is not affected.")
        return None

    def rows(self) -> list[dict]:
        """Every row in the log (reads the file)."""
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_bytes().splitlines() if line.strip()]

    def _summarise(self, row: dict) -> None:
        if any(k.startswith("val_") for k in row):
            self.val.append({k: v for k, v in row.items() if k == "step" or k.startswith("val_")})
        self.open.append({k: v for k, v in row.items() if k == "step" or k.startswith("loss")})
        if len(self.open) == self.width:
            self.bins.append(_mean(self.open))
            self.open = []
            if len(self.bins) >= 2 * self.points:
                self.bins = [_mean(self.bins[i:i + 2]) for i in range(0, len(self.bins), 2)]
                self.width *= 2

    def plot(self, path: "str | os.PathLike") -> None:
        plot_curves(self.bins + ([_mean(self.open)] if self.open else []), self.val, Path(path))


def plot_curves(losses: list[dict], validation: list[dict], path: Path) -> None:
    """Training losses (raw and smoothed) and up to two validation metrics against the step, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    steps = np.array([r["step"] for r in losses])
    fig = Figure(figsize=(10, 4), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    keys = [k for k in dict.fromkeys(k for r in losses for k in r) if k.startswith("loss")]
    positive = True
    for i, key in enumerate(keys):
        loss = np.array([r.get(key, np.nan) for r in losses], dtype=float)
        positive &= bool(np.nanmin(loss) > 0)
        k = max(1, len(loss) // 50)
        ax1.plot(steps, loss, color="0.75" if k > 1 else f"C{i}", lw=0.8,
                 label=key if len(keys) == 1 or k == 1 else None)      # short runs: no smoothed curve
        if k > 1:
            ax1.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), color=f"C{i}",
                     label=f"{key}, mean of {k}")
    ax1.set(xlabel="step", ylabel="training loss", yscale="log" if positive and keys else "linear")
    ax1.legend()
    metrics = [k for k in dict.fromkeys(k for r in validation for k in r) if k.startswith("val_")][:2]
    if metrics:
        for axis, key, style in zip((ax2, ax2.twinx()), metrics, ("o-", "s--")):
            rows = [r for r in validation if key in r and math.isfinite(r[key])]
            axis.plot([r["step"] for r in rows], [r[key] for r in rows], style,
                      color="C1" if axis is ax2 else "C2", label=key)
            axis.set_ylabel(f"validation {key[4:].upper()}")
            axis.ticklabel_format(axis="y", useOffset=False)
        ax2.set_xlabel("step")
    else:
        ax2.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=ax2.transAxes)
    fig.tight_layout()
    write_atomically(path, fig.savefig)

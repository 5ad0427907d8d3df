"""The training loop shared by every method: steps, validation, checkpoints, resume, logs, curves, stop.

Files in the work folder:
- ``checkpoints/last.pt`` (after every epoch and when stopped) and ``checkpoints/best.pt`` (best
  validation score so far): task state (networks, optimizers, schedulers), step, best score,
  history and every random state; written atomically.
- ``log.csv`` (one row per step; validation columns filled at epoch ends) and ``curves.png``.

Progress goes to stdout: with ``progress_json`` one JSON object per line, with an ``event`` of
``start``, ``step``, ``validate`` (starting), ``epoch`` (with any validation metrics),
``checkpoint``, ``stopped`` or ``done`` (plus ``model`` and ``error`` from the command line);
otherwise short human-readable lines. SIGTERM/SIGINT, or a file named ``STOP`` appearing in the work
folder (for platforms without signals, e.g. a GUI on Windows), stop the run after the current step:
a checkpoint is saved and :meth:`Trainer.run` returns 130; a second signal aborts at once.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional, TextIO

import numpy as np

from ..cpu_memory import keep_freed_memory
from ..errors import Cancelled, ModelError
from ..progress import CancelToken
from . import checkpoint as ckpt
from .tasks import Task

STOPPED = 130
FORMAT = 1


class Trainer:
    def __init__(self, task: Task, workdir: "str | os.PathLike", *, total_steps: int, steps_per_epoch: int,
                 val_every: int = 1, seed: int = 0, config: Optional[dict] = None, progress_json: bool = False,
                 log_every: int = 10, stream: Optional[TextIO] = None):
        self.task, self.workdir = task, Path(workdir)
        self.total_steps, self.steps_per_epoch = int(total_steps), max(1, int(steps_per_epoch))
        self.val_every, self.config = max(1, int(val_every)), dict(config or {})
        self.progress_json, self.log_every = progress_json, max(1, log_every)
        self.stream = stream or sys.stdout
        self.rng = np.random.default_rng(seed)
        self.cancel = CancelToken()
        self.step, self.history, self.best = 0, [], {"metric": task.best_metric, "value": None, "step": None}
        self.is_main = int(os.environ.get("RANK", "0")) == 0   # only rank 0 writes (torchrun)

    # -- files ---------------------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.workdir / "checkpoints" / "last.pt"

    @property
    def stop_path(self) -> Path:
        return self.workdir / "STOP"

    @property
    def best_path(self) -> Path:
        return self.workdir / "checkpoints" / "best.pt"

    def state(self) -> dict:
        return {"format": FORMAT, "method": self.task.method, "config": self.config, "step": self.step,
                "best": self.best, "history": self.history, "task": self.task.state_dict(),
                "rng": ckpt.rng_state(self.rng)}

    def save(self, path: Path) -> None:
        if self.is_main:
            ckpt.atomic_save(self.state(), path)
            self.emit("checkpoint", path=str(path))

    def resume(self) -> None:
        state = ckpt.load(self.last_path)
        if state.get("method") != self.task.method:
            raise ModelError(f"Checkpoint {self.last_path} belongs to method {state.get('method')!r}, "
                             f"not {self.task.method!r}.")
        self.task.load_state_dict(state["task"])
        self.step, self.best, self.history = state["step"], state["best"], state["history"]
        ckpt.set_rng_state(state["rng"], self.rng)

    def write_log(self) -> None:
        if not self.is_main or not self.history:
            return
        keys = list(dict.fromkeys(k for row in self.history for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, keys)
        writer.writeheader()
        writer.writerows(self.history)
        _atomic_text(self.workdir / "log.csv", buf.getvalue())
        plot_curves(self.history, self.workdir / "curves.png")

    # -- progress and signals ------------------------------------------------------------------
    def emit(self, event: str, **fields) -> None:
        if not self.is_main:
            return
        if self.progress_json:
            print(json.dumps({"event": event, **fields}), file=self.stream, flush=True)
        elif event != "step" or fields.get("step", 0) % self.log_every == 0:
            text = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
            print(f"[{event}] {text}", file=self.stream, flush=True)

    def _on_signal(self, signum, frame) -> None:
        if self.cancel.cancelled:
            raise KeyboardInterrupt
        self.cancel.cancel()

    # -- loop ----------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> int:
        """Train until ``total_steps``; 0 when done, :data:`STOPPED` when stopped by a signal."""
        if resume:
            self.resume()
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, self._on_signal)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stop_path.unlink(missing_ok=True)
        start, t0 = self.step, time.perf_counter()
        self.emit("start", step=self.step, total=self.total_steps, steps_per_epoch=self.steps_per_epoch,
                  workdir=str(self.workdir))
        try:
            with keep_freed_memory():
                self._loop(start, t0)
        except Cancelled:
            pass
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        if self.cancel.cancelled:
            self.stop_path.unlink(missing_ok=True)
            self.save(self.last_path)
            self.write_log()
            self.emit("stopped", step=self.step, checkpoint=str(self.last_path))
            return STOPPED
        self.emit("done", step=self.step, best=self.best)
        return 0

    def _loop(self, start: int, t0: float) -> None:
        """Steps until done or cancelled; epochs end with validation and checkpoints."""
        while self.step < self.total_steps and not self.cancel.cancelled:
            out = self.task.train_step(self.rng)
            self.step += 1
            row = {"step": self.step, "epoch": self.epoch, **out}
            self.history.append(row)
            elapsed = time.perf_counter() - t0
            eta = elapsed / (self.step - start) * (self.total_steps - self.step)
            self.emit("step", **row, total=self.total_steps, elapsed=round(elapsed, 2), eta=round(eta, 1))
            if self.stop_path.exists():
                self.cancel.cancel()
            elif self.step % self.steps_per_epoch == 0 or self.step == self.total_steps:
                self.end_epoch(row)

    @property
    def epoch(self) -> int:
        return math.ceil(self.step / self.steps_per_epoch)

    def end_epoch(self, row: dict) -> None:
        metrics = {}
        if self.epoch % self.val_every == 0 or self.step == self.total_steps:
            self.emit("validate", epoch=self.epoch, step=self.step)
            metrics = self.task.validate(self.cancel)
            row.update(metrics)
            value = metrics.get(self.best["metric"])
            if value is not None and (self.best["value"] is None or value > self.best["value"]):
                self.best.update(value=value, step=self.step)
                self.save(self.best_path)
        self.emit("epoch", epoch=self.epoch, step=self.step, **metrics, best=self.best["value"])
        self.save(self.last_path)
        self.write_log()


def _atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def plot_curves(history: list[dict], path: Path) -> None:
    """Training loss (raw and smoothed) and validation metrics against the step, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    steps = np.array([r["step"] for r in history])
    loss = np.array([r.get("loss", np.nan) for r in history], dtype=float)
    fig = Figure(figsize=(10, 4), dpi=100)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(steps, loss, color="0.75", lw=0.8, label="loss")
    k = max(1, len(loss) // 50)
    if k > 1:
        ax1.plot(steps[k - 1:], np.convolve(loss, np.ones(k) / k, mode="valid"), color="C0", label=f"mean of {k}")
    ax1.set(xlabel="step", ylabel="training loss (L1)", yscale="log" if np.nanmin(loss) > 0 else "linear")
    ax1.legend()
    val = [r for r in history if "val_psnr" in r]
    if val:
        ax2.plot([r["step"] for r in val], [r["val_psnr"] for r in val], "o-", color="C1", label="PSNR")
        ax2.set(xlabel="step", ylabel="validation PSNR (dB)")
        twin = ax2.twinx()
        twin.plot([r["step"] for r in val], [r["val_ssim"] for r in val], "s--", color="C2", label="SSIM")
        twin.set_ylabel("validation SSIM")
    else:
        ax2.text(0.5, 0.5, "no validation yet", ha="center", va="center", transform=ax2.transAxes)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    os.replace(tmp, path)

"""The training harness: the work folder around the loop core (:mod:`.loop`): checkpoints, exact
resume, logs, curves, progress lines, signals and the STOP file.

Files in the work folder:
- ``checkpoints/last.pt`` (after every epoch and when stopped) and ``checkpoints/best.pt`` (best
  validation score so far, within the task's final stage): task state (networks, optimizers, schedulers), step, best score,
  history and every random state; written atomically.
- ``checkpoints/stage_NAME.pt``: the state after the last step of each stage but the last
  (multi-stage tasks): for comparing the stages; the result still comes from the final stage.
- ``log.jsonl`` (one JSON object per step, validation metrics on an epoch's last step; appended,
  never rewritten) and ``curves.png`` (:mod:`.history`).
- ``samples/epoch_NNNN.png``: the task's picture of its current output, where it has one (CLADE).
- ``cache/``: training data prepared once per case and memory-mapped (see :mod:`.data`).

Progress goes to stdout: with ``progress_json`` one JSON object per line, with an ``event`` of
``start``, ``step``, ``validate`` (starting), ``epoch`` (with any validation metrics),
``checkpoint``, ``note``, ``stopped`` or ``done`` (plus ``model`` and ``error`` from the command line);
otherwise short human-readable lines; ``start`` carries the process's ``pid``. SIGTERM/SIGINT, or a
file named ``STOP`` appearing in the work folder (what a GUI writes: Slicer starts the trainer
through a launcher that forwards no signals), stop the run after the current step, or during a
validation: a checkpoint is saved and :meth:`Trainer.run` returns 130; a second signal aborts at once.

Under torchrun (``group``, :mod:`.distributed`) every rank runs a Trainer: the ranks stop together,
rank 0 alone validates, prints and writes files, and checkpoints hold every rank's random state.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional, TextIO

import numpy as np

from volumetricsr.compute.cpu_memory import keep_freed_memory
from volumetricsr.common.errors import Cancelled, InputError, ModelError, TrainingError
from volumetricsr.common.progress import StopFileToken, emit_json
from volumetricsr.training import checkpoint as ckpt
from volumetricsr.training.distributed import LOCAL, Group
from volumetricsr.training.history import History
from volumetricsr.training.loop import Loop
from volumetricsr.training.tasks import Task
from volumetricsr.data.writer import write_atomically

STOPPED = 130
FORMAT = 2     # 2: no history in checkpoints (log.jsonl), one random state per rank


class Trainer:
    """The work-folder harness around the loop core (:class:`~.loop.Loop`): checkpoints, exact
    resume, signals and the STOP file, ``log.jsonl``, curves and progress lines.

    ``config`` is saved with every checkpoint, with the run's horizon (``total_steps``,
    ``steps_per_epoch``, ``val_every``) and the task's data split; :meth:`resume` restores the
    step, history, best values, every random state and the task's state (the schedulers carry
    their own horizon), and refuses a split that has changed.
    """

    def __init__(self, task: Task, workdir: "str | os.PathLike", *, total_steps: int, steps_per_epoch: int,
                 val_every: int = 1, seed: int = 0, config: Optional[dict] = None, progress_json: bool = False,
                 log_every: int = 10, stream: Optional[TextIO] = None, group: Group = LOCAL):
        self.task, self.workdir = task, Path(workdir)
        self.config = dict(config or {})
        self.config.update(total_steps=int(total_steps), steps_per_epoch=max(1, int(steps_per_epoch)),
                           val_every=max(1, int(val_every)))
        self.progress_json, self.log_every = progress_json, max(1, log_every)
        self.stream = stream or sys.stdout
        self.cancel = StopFileToken(self.workdir / "STOP")
        self.group, self.is_main = group, group.is_main
        self.loop = Loop(task, total_steps, steps_per_epoch=steps_per_epoch, val_every=val_every,
                         rng=np.random.default_rng(group.seed(seed)), cancel=self.cancel, on_event=self._on_event,
                         sync=group)
        self.log = History(self.workdir / "log.jsonl")
        self._t0, self._start, self._signals = time.perf_counter(), 0, 0

    # -- the loop's state ----------------------------------------------------------------------
    @property
    def step(self) -> int:
        return self.loop.step

    @property
    def history(self) -> list[dict]:
        """Every step's row so far (reads ``log.jsonl``)."""
        return self.log.rows() + self.loop.history

    @property
    def total_steps(self) -> int:
        return self.loop.total_steps

    @property
    def result(self) -> dict:
        """The best entry of the final stage (``{"metric", "value", "step"}``), {} if none."""
        final = self.task.final_stage
        bests = self.loop.best if final is None else {final: self.loop.best.get(final)}
        found = [b for b in bests.values() if b]
        return max(found, key=lambda b: b["value"]) if found else {}

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

    def stage_path(self, stage: str) -> Path:
        """The state at the end of stage ``stage`` (multi-stage tasks keep each)."""
        return self.workdir / "checkpoints" / f"stage_{stage}.pt"

    def state(self) -> dict:
        """The checkpoint (collective: gathers every rank's random state, and checks that every rank
        still holds rank 0's weights)."""
        ranks = self.group.gather((ckpt.rng_state(self.loop.rng), weights_digest(self.task) if self.group.world > 1 else 0))
        if any(digest != ranks[0][1] for _, digest in ranks):
            raise TrainingError(f"At step {self.step} the ranks no longer hold the same weights (digests "
                                f"{[d for _, d in ranks]}): a method that updates weights outside "
                                "volumetricsr.training.loop.optimize?")
        return {"format": FORMAT, "method": self.task.method, "config": self.config, "split": self.task.split(),
                **self.loop.state(), "log_bytes": self.log.size, "task": self.task.state_dict(),
                "rng": [rng for rng, _ in ranks]}

    def save(self, path: Path) -> None:
        """The log up to now, then the checkpoint, written by rank 0 while the others wait."""
        self.write_log()
        state = self.state()
        if self.is_main:
            ckpt.atomic_save(state, path)
            self.emit("checkpoint", path=str(path))
        self.group.barrier()

    def resume(self) -> None:
        state = ckpt.load(self.last_path)
        if state.get("method") != self.task.method:
            raise ModelError(f"Checkpoint {self.last_path} belongs to method {state.get('method')!r}, "
                             f"not {self.task.method!r}.")
        check_same_split(state.get("split", {}), self.task.split(), self.last_path)
        self.task.load_state_dict(state["task"])
        self.loop.load_state(state)
        rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]
        if len(rngs) != self.group.world:
            self.emit("note", message=f"{self.last_path} was written by {len(rngs)} rank(s), resumed on "
                                      f"{self.group.world}: training continues, but not bit for bit.")
        if self.group.rank < len(rngs):
            ckpt.set_rng_state(rngs[self.group.rank], self.loop.rng)
        else:
            self.loop.rng = np.random.default_rng([self.config.get("seed", 0), self.group.rank, self.step])
        if self.is_main:
            lost = self.log.restore(state.get("log_bytes", 0))
            if lost:
                self.emit("note", message=lost)

    def write_log(self) -> None:
        """New rows to ``log.jsonl``; ``curves.png`` redrawn (rank 0)."""
        rows = self.loop.take_rows()
        if not self.is_main or not rows:
            return
        self.log.append(rows)
        try:
            self.log.plot(self.workdir / "curves.png")
        except ImportError:   # matplotlib is an optional extra
            if not getattr(self, "_said_no_curves", False):
                self._said_no_curves = True
                self.emit("note", message="matplotlib is not installed: log.jsonl written, curves.png skipped "
                                          "(pip install volumetricsr[plots])")

    def write_sample(self, epoch: int) -> None:
        """``samples/epoch_NNNN.png``: the task's sample image, if it has one."""
        image = self.task.sample_image() if self.is_main else None
        if image is None:
            return
        import SimpleITK as sitk

        path = self.workdir / "samples" / f"epoch_{epoch:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = sitk.GetImageFromArray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8))
        write_atomically(path, lambda staged: sitk.WriteImage(pixels, str(staged)))

    # -- progress and signals ------------------------------------------------------------------
    def emit(self, event: str, **fields) -> None:
        if not self.is_main:
            return
        if self.progress_json:
            if "step" in fields and self.total_steps:
                fields["fraction"] = fields["step"] / self.total_steps
            emit_json(event, stream=self.stream, **fields)
        elif event != "step" or fields.get("step", 0) % self.log_every == 0:
            text = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items())
            print(f"[{event}] {text}", file=self.stream, flush=True)

    def _on_event(self, name: str, fields: dict) -> None:
        if name == "step":
            elapsed = time.perf_counter() - self._t0
            eta = elapsed / (self.step - self._start) * (self.total_steps - self.step)
            self.emit("step", **fields, total=self.total_steps, elapsed=round(elapsed, 2), eta=round(eta, 1))
        elif name == "best":
            if self.task.final_stage is None or fields["stage"] == self.task.final_stage:
                self.save(self.best_path)
        elif name == "stage_end":
            self.save(self.stage_path(fields["stage"]))
            self.emit("stage_end", **fields)
        elif name == "epoch":
            self.emit("epoch", **fields)
            self.save(self.last_path)
            self.write_sample(fields["epoch"])
        else:
            self.emit(name, **fields)

    def _on_signal(self, signum, frame) -> None:
        self._signals += 1
        if self._signals > 1:
            raise KeyboardInterrupt
        self.cancel.cancel()

    # -- run -----------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> int:
        """Train until ``total_steps``; 0 when done, :data:`STOPPED` when stopped by a signal."""
        if resume:
            self.resume()
        elif self.is_main:
            self.log.restore(0)          # a new run in this folder: a new log
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                handlers[sig] = signal.signal(sig, self._on_signal)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stop_path.unlink(missing_ok=True)
        self.group.broadcast(self.task.modules().values())
        self._start, self._t0 = self.step, time.perf_counter()
        self.emit("start", step=self.step, total=self.total_steps, steps_per_epoch=self.loop.steps_per_epoch,
                  workdir=str(self.workdir), pid=os.getpid())
        try:
            with keep_freed_memory():
                self.loop.run()
        except Cancelled:
            pass
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        if self.cancel.cancelled:
            self.stop_path.unlink(missing_ok=True)
            self.save(self.last_path)
            self.emit("stopped", step=self.step, checkpoint=str(self.last_path))
            return STOPPED
        self.emit("done", step=self.step, best=self.result or None)
        return 0


def weights_digest(task: Task) -> float:
    """A number that changes with any of the task's weights (ranks compare theirs)."""
    import torch

    with torch.no_grad():
        return sum(float(p.double().sum() + p.double().abs().sum() * 1e-3)
                   for m in task.modules().values() for p in m.parameters())


def check_same_split(saved: dict, now: dict, where: Path) -> None:
    """A resumed run must see the data it started with: say which cases changed."""
    if saved == now:
        return
    changes = []
    for part in sorted(set(saved) | set(now)):
        old = {json.dumps(r) for r in saved.get(part, [])}
        new = {json.dumps(r) for r in now.get(part, [])}
        changes += [f"{part} +{json.loads(r)[0]}" for r in sorted(new - old)]
        changes += [f"{part} -{json.loads(r)[0]}" for r in sorted(old - new)]
    raise InputError(f"The training data changed since {where} was written ({', '.join(changes) or 'order'}); "
                     f"restore it, or start a new run (another --out or --workdir).")

"""Progress reporting and cooperative cancellation shared by every long task."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from volumetricsr.common.errors import Cancelled

#: ``progress(fraction, message)``: fraction in [0, 1] of the whole task.
ProgressCallback = Callable[[float, str], None]


class CancelToken:
    """Thread-safe flag that a UI sets and the running task checks between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled("Cancelled by the user; nothing was written.")


class StopFileToken(CancelToken):
    """Cancelled by :meth:`cancel` (a signal) or by the file ``path`` appearing: how a GUI stops a
    run in another process where signals do not arrive (Slicer's launcher forwards none)."""

    def __init__(self, path: "str | os.PathLike"):
        super().__init__()
        self.path = Path(path)

    @property
    def cancelled(self) -> bool:
        if not super().cancelled and self.path.exists():
            self.cancel()
        return super().cancelled


class JsonProgress:
    """A progress callback that prints ``{"event": "progress", "fraction", "message"}`` lines (at
    most every ``every`` seconds, and whenever the message changes) for a parent process."""

    def __init__(self, stream=None, every: float = 0.2):
        self.stream, self.every, self._last = stream or sys.stdout, every, (-1.0, None)

    def __call__(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if now - self._last[0] >= self.every or message != self._last[1] or fraction >= 1.0:
            self._last = (now, message)
            emit_json("progress", stream=self.stream, fraction=fraction, message=message)


#: The JSON-lines events that ``infer --progress-json`` and ``train --progress-json`` write (one object
#: per line, ``{"event": name, ...}``) and both Slicer modules read, with the fields each must have.
#: Any event may carry ``fraction`` (of the whole task, 0..1) and ``message`` (one line for a status
#: bar); a reader needs nothing else to show progress. docs/architecture.md lists them.
EVENTS = {
    "start": ("pid",),                       # the process runs (train adds step, total, workdir)
    "progress": ("fraction", "message"),     # infer
    "step": ("step", "total", "fraction"),   # train: one optimisation step (loss, lr, elapsed, eta)
    "validate": ("epoch", "step"),           # train: validation begins
    "epoch": ("epoch", "step", "fraction"),  # train: an epoch ended (validation metrics)
    "stage_end": ("stage", "step"),          # train: a staged method finished a stage
    "checkpoint": ("path",),                 # train: a checkpoint was written
    "note": ("message",),                    # something the user should know; the run goes on
    "model": ("id", "card"),                 # train: the model was written
    "stopped": ("step",),                    # train: stopped on request, resumable
    "done": (),                              # finished (infer: output, describe, seconds, consistency)
    "error": ("message",),                   # failed: the one line that says why
}


def event_line(event: str, **fields) -> str:
    """One event as its JSON line, checked against :data:`EVENTS`."""
    missing = [k for k in EVENTS.get(event, ()) if k not in fields]
    if event not in EVENTS or missing:
        raise ValueError(f"event {event!r}: " + (f"missing {missing}" if event in EVENTS else "not in EVENTS"))
    if "fraction" in fields:
        fields["fraction"] = round(min(max(float(fields["fraction"]), 0.0), 1.0), 4)
    return json.dumps({"event": event, **fields})


def emit_json(event: str, stream=None, **fields) -> None:
    print(event_line(event, **fields), file=stream or sys.stdout, flush=True)


def read_event(line: str) -> Optional[dict]:
    """The event a line holds, or None for any other output (a library's own print, a blank line)."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) and record.get("event") in EVENTS else None


def report(progress: Optional[ProgressCallback], fraction: float, message: str = "") -> None:
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def scaled(progress: Optional[ProgressCallback], start: float, stop: float) -> Optional[ProgressCallback]:
    """A callback for a sub-task that fills [start, stop] of the parent's progress."""
    if progress is None:
        return None
    return lambda f, msg="": progress(start + (stop - start) * min(max(f, 0.0), 1.0), msg)

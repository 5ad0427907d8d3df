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
            emit_json("progress", stream=self.stream, fraction=round(float(fraction), 4), message=message)


def emit_json(event: str, stream=None, **fields) -> None:
    print(json.dumps({"event": event, **fields}), file=stream or sys.stdout, flush=True)


def report(progress: Optional[ProgressCallback], fraction: float, message: str = "") -> None:
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def scaled(progress: Optional[ProgressCallback], start: float, stop: float) -> Optional[ProgressCallback]:
    """A callback for a sub-task that fills [start, stop] of the parent's progress."""
    if progress is None:
        return None
    return lambda f, msg="": progress(start + (stop - start) * min(max(f, 0.0), 1.0), msg)

"""Progress reporting and cooperative cancellation shared by every long task."""
from __future__ import annotations

import threading
from typing import Callable, Optional

from .errors import Cancelled

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


def report(progress: Optional[ProgressCallback], fraction: float, message: str = "") -> None:
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def scaled(progress: Optional[ProgressCallback], start: float, stop: float) -> Optional[ProgressCallback]:
    """A callback for a sub-task that fills [start, stop] of the parent's progress."""
    if progress is None:
        return None
    return lambda f, msg="": progress(start + (stop - start) * min(max(f, 0.0), 1.0), msg)

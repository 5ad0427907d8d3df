"""A task run in the calling thread with the child-process task's interface; progress, ETA, outcome.

:class:`InlineTask` runs the instant methods (interpolations) for the panel: in Slicer's main
thread, at the first :meth:`~InlineTask.poll` (the panel's timer), with progress reported as it goes
and the window kept live between reports (``between``: Slicer's ``processEvents``), so Cancel and
Close Scene still reach it. Not in a worker thread: CTK never enables PythonQt's thread support, so
Slicer's main thread keeps the GIL while Qt idles and another Python thread runs only while the main
thread runs Python; under a main loop that does the same, the interpolations ran 6-22x slower in a
thread than in the main thread (``benchmarks/slicer_gil.py``). The task function gets ``(progress,
cancel)`` (the core's callback and :class:`CancelToken` signatures).
"""
from __future__ import annotations

import time
import traceback
from typing import Any, Callable, Optional


def poll_until_done(poll: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    """Call ``poll`` until it returns False (scripts and tests; the UI uses a timer instead)."""
    deadline = time.monotonic() + timeout
    while poll():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish in time.")
        time.sleep(interval)


def format_duration(seconds: float) -> str:
    """'45 s', '3 min 05 s', '1 h 02 min'."""
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class EtaEstimator:
    """Remaining time from the fraction done, assuming the rate seen so far holds."""

    def __init__(self, start: float, min_fraction: float = 0.01, min_elapsed: float = 1.0):
        self.start, self.min_fraction, self.min_elapsed = start, min_fraction, min_elapsed

    def remaining(self, fraction: float, now: float) -> Optional[float]:
        """Seconds left, or None while there is too little to go on."""
        elapsed = now - self.start
        if fraction < self.min_fraction or elapsed < self.min_elapsed:
            return None
        return elapsed * (1.0 - min(fraction, 1.0)) / fraction


class InlineTask:
    """``fn(progress, cancel)`` run in the thread that first calls :meth:`poll`.

    Callbacks (all from that :meth:`poll`): ``on_progress(fraction, message, eta_seconds_or_None)``,
    ``on_done(result)``, ``on_cancelled()``, ``on_error(exception, traceback_text)``. ``between()``
    runs after each progress report (the panel: Slicer's ``processEvents``); a :meth:`poll` from
    inside it (the panel's timer) returns True at once.
    """

    def __init__(self, fn: Callable[[Callable, Any], Any], cancel_token, *,
                 on_progress: Optional[Callable] = None, on_done: Optional[Callable] = None,
                 on_cancelled: Optional[Callable] = None, on_error: Optional[Callable] = None,
                 between: Optional[Callable[[], None]] = None, clock: Callable[[], float] = time.monotonic):
        self.fn, self.cancel_token, self.between, self.clock = fn, cancel_token, between, clock
        self.on_progress, self.on_done = on_progress, on_done
        self.on_cancelled, self.on_error = on_cancelled, on_error
        self._finished = self._running = False
        self.eta = EtaEstimator(clock())

    @property
    def finished(self) -> bool:
        """True once the outcome has been delivered by :meth:`poll`."""
        return self._finished

    def start(self) -> "InlineTask":
        self.eta = EtaEstimator(self.clock())
        return self

    def cancel(self) -> None:
        """Stop at the next check (from ``between``, or before the first :meth:`poll`)."""
        self.cancel_token.cancel()

    def close(self) -> None:
        """For a scene or module that closes: cancel, with no callback from now on."""
        self.on_progress = self.on_done = self.on_cancelled = self.on_error = None
        self.cancel()

    def _progress(self, fraction: float, message: str = "") -> None:
        if self.on_progress:
            self.on_progress(float(fraction), message, self.eta.remaining(float(fraction), self.clock()))
        if self.between:
            self.between()

    def poll(self) -> bool:
        """Run the task (the first call) and deliver its outcome; True only when called while it runs."""
        if self._running:
            return True
        if self._finished:
            return False
        from volumetricsr.common.errors import Cancelled

        self._running = True
        try:
            self.cancel_token.raise_if_cancelled()
            outcome = ("done", self.fn(self._progress, self.cancel_token))
        except Cancelled:
            outcome = ("cancelled",)
        except Exception as exc:  # reported through on_error, as a child's failure is
            outcome = ("error", exc, traceback.format_exc())
        finally:
            self._running = False
        self._finished = True
        self._deliver(outcome)
        return False

    def _deliver(self, outcome: tuple) -> None:
        kind = outcome[0]
        if kind == "done" and self.cancel_token.cancelled:
            kind = "cancelled"        # Cancel was pressed as the work finished: the user asked for nothing
        try:
            if kind == "done":
                self.on_done and self.on_done(outcome[1])
            elif kind == "cancelled":
                self.on_cancelled and self.on_cancelled()
            else:
                self.on_error and self.on_error(outcome[1], outcome[2])
        except Exception as exc:  # a failing handler (e.g. making the output node) is an error too
            if kind == "error" or not self.on_error:
                raise
            self.on_error(exc, traceback.format_exc())

    def wait(self, timeout: float = 60.0, interval: float = 0.01) -> None:
        """Run it to the end (scripts and tests; the panel polls from a timer)."""
        poll_until_done(self.poll, timeout, "The task", interval)

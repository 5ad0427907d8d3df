"""Run a long task in a background thread; the UI thread polls for progress, ETA and the outcome.

The task function gets ``(progress, cancel)`` (the core's callback and :class:`CancelToken` signatures)
and must not touch the MRML scene: its result is handed to ``on_done`` on the thread that calls
:meth:`BackgroundTask.poll` (in Slicer, a ``qt.QTimer`` on the main thread).
"""
from __future__ import annotations

import queue
import threading
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


class BackgroundTask:
    """``fn(progress, cancel)`` in a daemon thread, reported through :meth:`poll`.

    Callbacks (all called from :meth:`poll`): ``on_progress(fraction, message, eta_seconds_or_None)``,
    ``on_done(result)``, ``on_cancelled()``, ``on_error(exception, traceback_text)``.
    """

    def __init__(self, fn: Callable[[Callable, Any], Any], cancel_token, *,
                 on_progress: Optional[Callable] = None, on_done: Optional[Callable] = None,
                 on_cancelled: Optional[Callable] = None, on_error: Optional[Callable] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.fn, self.cancel_token, self.clock = fn, cancel_token, clock
        self.on_progress, self.on_done = on_progress, on_done
        self.on_cancelled, self.on_error = on_cancelled, on_error
        self._events: "queue.Queue[tuple]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._finished = False
        self.eta = EtaEstimator(clock())

    @property
    def finished(self) -> bool:
        """True once the outcome has been delivered by :meth:`poll`."""
        return self._finished

    def start(self) -> "BackgroundTask":
        self.eta = EtaEstimator(self.clock())
        self._thread = threading.Thread(target=self._work, name="VolumetricSR task", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the task to stop at its next check; the outcome still arrives through :meth:`poll`."""
        self.cancel_token.cancel()

    def _work(self) -> None:
        from volumetricsr.common.errors import Cancelled

        def progress(fraction: float, message: str = "") -> None:
            self._events.put(("progress", float(fraction), message))

        try:
            result = self.fn(progress, self.cancel_token)
        except Cancelled:
            self._events.put(("cancelled",))
        except BaseException as exc:  # reported to the UI thread, never lost in the worker
            self._events.put(("error", exc, traceback.format_exc()))
        else:
            if self.cancel_token.cancelled:
                self._events.put(("cancelled",))
            else:
                self._events.put(("done", result))

    def poll(self) -> bool:
        """Deliver queued events; returns True while the task is still running."""
        while not self._finished:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            self._deliver(event)
        return not self._finished

    def _deliver(self, event: tuple) -> None:
        kind = event[0]
        if kind == "progress":
            if self.on_progress:
                self.on_progress(event[1], event[2], self.eta.remaining(event[1], self.clock()))
            return
        self._finished = True
        if kind == "done" and self.cancel_token.cancelled:
            kind = "cancelled"        # Cancel was pressed as the work finished: the user asked for nothing
        try:
            if kind == "done":
                self.on_done and self.on_done(event[1])
            elif kind == "cancelled":
                self.on_cancelled and self.on_cancelled()
            else:
                self.on_error and self.on_error(event[1], event[2])
        except Exception as exc:  # a failing handler (e.g. making the output node) is an error too
            if kind == "error" or not self.on_error:
                raise
            self.on_error(exc, traceback.format_exc())

    def wait(self, timeout: float = 60.0, interval: float = 0.01) -> None:
        """Poll until the outcome is delivered (scripts and tests; the UI uses a timer instead)."""
        poll_until_done(self.poll, timeout, "The background task", interval)

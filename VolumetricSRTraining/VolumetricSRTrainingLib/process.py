"""The trainer as a subprocess: a reader thread queues its output, the UI thread polls, stop terminates.

The launcher is injectable: the module passes one that uses ``slicer.util.launchConsoleProcess``
(Slicer's startup environment, no console window on Windows); tests pass ``subprocess.Popen`` with a
fake trainer.
"""
from __future__ import annotations

import os
import queue
import subprocess
import threading
from typing import Callable, Optional

from .history import parse_record


def popen_launcher(args: list[str], env: Optional[dict] = None):
    """Start ``args`` with stdout and stderr merged into one text pipe."""
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env={**os.environ, **(env or {})})


class TrainingProcess:
    """Callbacks, all from :meth:`poll`: ``on_record(dict)``, ``on_log(line)``, ``on_finished(returncode, stopped)``."""

    def __init__(self, args: list[str], *, env: Optional[dict] = None, launcher: Callable = popen_launcher,
                 on_record: Optional[Callable] = None, on_log: Optional[Callable] = None,
                 on_finished: Optional[Callable] = None):
        self.args, self.env, self.launcher = args, env, launcher
        self.on_record, self.on_log, self.on_finished = on_record, on_log, on_finished
        self.process = None
        self.stopped = False
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._done = False

    def start(self) -> "TrainingProcess":
        self.process = self.launcher(self.args, self.env)
        threading.Thread(target=self._read, name="VolumetricSR trainer output", daemon=True).start()
        return self

    def _read(self) -> None:
        try:
            for line in self.process.stdout:
                self._lines.put(line.rstrip("\r\n"))
        finally:
            self._lines.put(None)      # end of output

    def stop(self, grace_seconds: float = 30.0) -> None:
        """Terminate (SIGTERM: the trainer saves a checkpoint); kill if it has not exited after ``grace_seconds``."""
        if self.process is None or self.process.poll() is not None:
            return
        self.stopped = True
        self.process.terminate()
        timer = threading.Timer(grace_seconds, lambda: self.process.poll() is None and self.process.kill())
        timer.daemon = True
        timer.start()

    def poll(self) -> bool:
        """Deliver queued output; True while the trainer runs or output is pending."""
        while not self._done:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return True
            if line is None:
                self._done = True
                code = self.process.wait()
                if self.on_finished:
                    self.on_finished(code, self.stopped)
                return False
            record = parse_record(line)
            if record is not None:
                self.on_record and self.on_record(record)
            elif self.on_log:
                self.on_log(line)
        return False

    def wait(self, timeout: float = 60.0, interval: float = 0.02) -> None:
        import time

        deadline = time.monotonic() + timeout
        while self.poll():
            if time.monotonic() > deadline:
                raise TimeoutError("The trainer did not finish in time.")
            time.sleep(interval)

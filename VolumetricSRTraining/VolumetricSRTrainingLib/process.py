"""The trainer as a subprocess: a reader thread queues its output, the UI thread polls.

In Slicer the trainer is started through ``PythonSlicer``, a CTK launcher that runs the real Python
as its child and forwards no signals: terminating what we started ends only the launcher, and the
trainer would run on. So Stop writes the trainer's stop file (``WORKDIR/STOP``: it saves a checkpoint
after the current step, or during validation, and exits); only if it has not exited after the grace
period does :meth:`TrainingProcess.poll` kill the real trainer (its PID comes in its ``start``
line) and the launcher, and the run ends as ``killed``, with no checkpoint saved at the stop.

Output is read as bytes and decoded as UTF-8 (the trainer is told to write UTF-8), so an
undecodable line is shown with replacement characters instead of ending the reader. The launcher
is injectable: the module passes one that uses ``slicer.util.launchConsoleProcess``; tests pass a
stand-in of Slicer's launcher and a fake trainer.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .history import parse_record


def popen_launcher(args: list[str], env: Optional[dict] = None):
    """Start ``args`` with stdout and stderr merged into one pipe."""
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def kill_pid(pid: int) -> None:
    """End process ``pid`` at once (SIGKILL; TerminateProcess on Windows); gone already is fine."""
    try:
        os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    except (OSError, ProcessLookupError):
        pass


class TrainingProcess:
    """Callbacks, all from :meth:`poll`: ``on_record(dict)``, ``on_log(line)``,
    ``on_finished(returncode, stop)`` where ``stop`` is None (no stop asked), ``"stopped"`` (the
    trainer saved a checkpoint and exited) or ``"killed"`` (it did not exit within the grace period)."""

    def __init__(self, args: list[str], *, env: Optional[dict] = None, launcher: Callable = popen_launcher,
                 stop_file: "Optional[str | os.PathLike]" = None, on_record: Optional[Callable] = None,
                 on_log: Optional[Callable] = None, on_finished: Optional[Callable] = None):
        self.args, self.env, self.launcher = args, env, launcher
        self.stop_file = Path(stop_file) if stop_file else None
        self.on_record, self.on_log, self.on_finished = on_record, on_log, on_finished
        self.process = None
        self.trainer_pid: Optional[int] = None     # the real trainer (the launcher's child)
        self.stop_state: Optional[str] = None
        self._deadline: Optional[float] = None
        self._saw_stopped = False
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._done = False

    @property
    def stopped(self) -> bool:
        return self.stop_state is not None

    def start(self) -> "TrainingProcess":
        if self.stop_file is not None:
            self.stop_file.unlink(missing_ok=True)
        self.process = self.launcher(self.args, self.env)
        threading.Thread(target=self._read, name="VolumetricSR trainer output", daemon=True).start()
        return self

    def _read(self) -> None:
        stream = getattr(self.process.stdout, "buffer", self.process.stdout)   # bytes, even from a text pipe
        try:
            for line in stream:
                if isinstance(line, bytes):
                    line = line.decode("utf-8", errors="replace")
                self._lines.put(line.rstrip("\r\n"))
        except (OSError, ValueError):       # the pipe closed under us
            pass
        finally:
            self._lines.put(None)      # end of output

    def running(self) -> bool:
        return self.process is not None and not self._done

    def stop(self, grace_seconds: float = 120.0) -> None:
        """Ask the trainer to stop (its stop file; SIGTERM where there is none); :meth:`poll` kills it
        if it is still running after ``grace_seconds``."""
        if not self.running() or self.stop_state is not None:
            return
        self.stop_state = "asked"
        if self.stop_file is not None:
            self.stop_file.parent.mkdir(parents=True, exist_ok=True)
            self.stop_file.touch()
        else:
            self.process.terminate()
        self._deadline = time.monotonic() + grace_seconds

    def kill(self) -> None:
        """The trainer at once; then its launcher, which normally exits with it."""
        if self.trainer_pid is not None:
            kill_pid(self.trainer_pid)
        if self.process is None:
            return
        try:
            self.process.wait(timeout=2 if self.trainer_pid is not None else 0)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def poll(self) -> bool:
        """Deliver queued output; True while the trainer runs or output is pending."""
        if self._deadline is not None and self.stop_state == "asked" and time.monotonic() > self._deadline:
            self.stop_state = "killed"
            self.kill()
        while not self._done:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return True
            if line is None:
                self._done = True
                code = self.process.wait()
                if self.stop_state == "asked":     # ended on its own after the stop: did it save?
                    self.stop_state = "stopped" if self._saw_stopped else None
                if self.stop_file is not None:
                    self.stop_file.unlink(missing_ok=True)
                if self.on_finished:
                    self.on_finished(code, self.stop_state)
                return False
            record = parse_record(line)
            if record is not None:
                if record.get("event") == "start" and isinstance(record.get("pid"), int):
                    self.trainer_pid = record["pid"]
                self._saw_stopped |= record.get("event") == "stopped"
                self.on_record and self.on_record(record)
            elif self.on_log:
                self.on_log(line)
        return False

    def wait(self, timeout: float = 60.0, interval: float = 0.02) -> None:
        deadline = time.monotonic() + timeout
        while self.poll():
            if time.monotonic() > deadline:
                raise TimeoutError("The trainer did not finish in time.")
            time.sleep(interval)

    def close(self, timeout: float = 10.0) -> None:
        """For a module that closes: stop the trainer, wait up to ``timeout`` s, then kill it; no
        trainer is left running behind Slicer."""
        if not self.running():
            return
        self.stop(grace_seconds=timeout)
        try:
            self.wait(timeout + 5)
        except TimeoutError:
            self.kill()

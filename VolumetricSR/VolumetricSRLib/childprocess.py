"""The core in a child process (the trainer, a panel run): a reader thread queues its output, the
UI thread polls.

In Slicer the child is started through ``PythonSlicer``, a CTK launcher that runs the real Python as
its child and forwards no signals: terminating what we started ends only the launcher, and the work
would run on. So a stop writes the child's stop file (the trainer's ``WORKDIR/STOP``, ``infer
--stop-file``: it stops at its next check, a trainer after saving a checkpoint); only if it has not
exited after the grace period does :meth:`ChildProcess.poll` kill the real child (its PID comes in
its ``start`` line) and the launcher, and the run ends as ``killed``.

Output is read as bytes and decoded as UTF-8 (the child is told to write UTF-8), so an undecodable
line is shown with replacement characters instead of ending the reader. The launcher is
injectable: the modules pass :func:`slicer_launcher`; tests pass a stand-in of Slicer's launcher.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .runner import poll_until_done

#: The core's command line, for a Python without the ``volumetricsr`` entry point.
CLI_SNIPPET = "import sys; from volumetricsr.app.cli import main; sys.exit(main())"


def python_executable() -> str:
    """PythonSlicer inside Slicer (it sets up Slicer's environment), else this interpreter."""
    exe = Path(sys.executable)
    slicer_python = exe.with_name("PythonSlicer" + (".exe" if os.name == "nt" else ""))
    return str(slicer_python) if slicer_python.is_file() else sys.executable


def core_path() -> str:
    """The folder holding the ``volumetricsr`` package, for the child's PYTHONPATH."""
    import volumetricsr

    return str(Path(volumetricsr.__file__).resolve().parents[1])


def core_environment() -> dict:
    """Variables every child gets: the core on PYTHONPATH, unbuffered UTF-8 output, and the models
    folder this process uses (Slicer starts children in its startup environment, without variables
    set since)."""
    from volumetricsr.compute.models import user_models_dir

    pythonpath = os.pathsep.join(p for p in (core_path(), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": pythonpath, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8",
            "VOLUMETRICSR_MODELS": str(user_models_dir())}


def slicer_launcher(args: list[str], env: Optional[dict] = None):
    """Launch through Slicer's ``launchConsoleProcess`` (startup environment, hidden console)."""
    import slicer

    return slicer.util.launchConsoleProcess(args, updateEnvironment=env)   # PythonSlicer: a launcher


def popen_launcher(args: list[str], env: Optional[dict] = None):
    """Start ``args`` with stdout and stderr merged into one pipe."""
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def kill_pid(pid: int) -> None:
    """End process ``pid`` at once (SIGKILL; TerminateProcess on Windows); gone already is fine."""
    try:
        os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))
    except (OSError, ProcessLookupError):
        pass


class ChildProcess:
    """Callbacks, all from :meth:`poll`: ``on_record(event)`` for each line that is an event of the
    core's schema (``volumetricsr.common.progress.read_event``), ``on_log(line)`` for any other,
    ``on_finished(returncode, stop)`` where ``stop`` is None (no stop asked), ``"stopped"`` (the
    child said so, with a ``stopped`` line, and exited), ``"ended"`` (it exited after the stop
    without saying so) or ``"killed"`` (it did not exit within the grace period)."""

    def __init__(self, args: list[str], *, env: Optional[dict] = None, launcher: Callable = popen_launcher,
                 stop_file: "Optional[str | os.PathLike]" = None, on_record: Optional[Callable] = None,
                 on_log: Optional[Callable] = None, on_finished: Optional[Callable] = None):
        self.args, self.env, self.launcher = args, env, launcher
        self.stop_file = Path(stop_file) if stop_file else None
        self.on_record, self.on_log, self.on_finished = on_record, on_log, on_finished
        self.process = None
        self.child_pid: Optional[int] = None     # the real child (the launcher's child)
        self.stop_state: Optional[str] = None
        self._deadline: Optional[float] = None
        self._saw_stopped = False
        self._lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self._done = False

    @property
    def stopped(self) -> bool:
        return self.stop_state is not None

    def start(self) -> "ChildProcess":
        if self.stop_file is not None:
            self.stop_file.unlink(missing_ok=True)
        self.process = self.launcher(self.args, self.env)
        threading.Thread(target=self._read, name="VolumetricSR child output", daemon=True).start()
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
        """Ask the child to stop (its stop file; SIGTERM where there is none); :meth:`poll` kills it
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
        """The child at once; then its launcher, which normally exits with it."""
        if self.child_pid is not None:
            kill_pid(self.child_pid)
        if self.process is None:
            return
        try:
            self.process.wait(timeout=2 if self.child_pid is not None else 0)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def poll(self) -> bool:
        """Deliver queued output; True while the child runs or output is pending."""
        if self._deadline is not None and self.stop_state == "asked" and time.monotonic() > self._deadline:
            self.stop_state = "killed"
            self.kill()
        from volumetricsr.common.progress import read_event

        while not self._done:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return True
            if line is None:
                self._done = True
                code = self.process.wait()
                if self.stop_state == "asked":     # ended on its own after the stop: did it say so?
                    self.stop_state = "stopped" if self._saw_stopped else "ended"
                if self.stop_file is not None:
                    self.stop_file.unlink(missing_ok=True)
                if self.on_finished:
                    self.on_finished(code, self.stop_state)
                return False
            record = read_event(line)
            if record is not None:
                if record.get("event") == "start" and isinstance(record.get("pid"), int):
                    self.child_pid = record["pid"]
                self._saw_stopped |= record.get("event") == "stopped"
                self.on_record and self.on_record(record)
            elif self.on_log:
                self.on_log(line)
        return False

    def wait(self, timeout: float = 60.0, interval: float = 0.02) -> None:
        poll_until_done(self.poll, timeout, "The child process", interval)

    def close(self, timeout: float = 10.0) -> None:
        """For a module that closes: stop the child, wait up to ``timeout`` s, then kill it; nothing is
        left running behind Slicer."""
        if not self.running():
            return
        self.stop(grace_seconds=timeout)
        try:
            self.wait(timeout + 5)
        except TimeoutError:
            self.kill()

"""A core command in a child process, followed through its events: the panel's runs and the trainer.

:class:`ProcessTask` is the one task class for a child process (both modules use it), with
:class:`~.runner.InlineTask`'s interface. It reads the child's events (the schema of
``volumetricsr.common.progress``: one JSON object per line) and reports progress from their
``fraction`` (of the whole task), with the time left estimated from it.

The panel's runs (:func:`infer_task`): Slicer's embedded Python keeps the GIL on the main thread
while Qt idles, so a worker thread in Slicer's process runs only in the gaps of the GUI's own
Python; and the core would set process-wide things (allocator settings, a CUDA context) in Slicer
itself. So network and per-volume runs go to a child, as the trainer does: the job's private copy of
the voxels is written with its geometry to a temporary NRRD, ``volumetricsr infer`` runs on it
through Slicer's launcher with JSON progress and a stop file, and the result (and the maps asked
for, and the consistency from the final event, into ``job.results``) is read back only when the
child ends complete. A sequence's frames go as one 4-D file and come back as one (``infer`` runs
every frame; its progress covers them all). Cancel writes the stop file; a child that has not ended a few seconds later is
killed (the real child, not the launcher). The temporary folder is removed in every case.
"""
from __future__ import annotations

import collections
import json
import math
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

from .childprocess import CLI_SNIPPET, ChildProcess, core_environment, popen_launcher, python_executable
from .runner import EtaEstimator, poll_until_done


def progress_fraction(event: dict) -> Optional[float]:
    """The event's ``fraction`` of the whole task, in [0, 1]; None where it has none."""
    value = event.get("fraction")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return min(max(float(value), 0.0), 1.0)


class ProcessTask:
    """``args`` in a child process (:class:`~.childprocess.ChildProcess`). Callbacks, all from
    :meth:`poll`: ``on_progress(fraction, message, eta)`` for each event with a ``fraction``,
    ``on_event(event)`` for every event, ``on_log(line)`` for other output, and
    ``on_finished(code, stop)`` once it ended (``stop`` as in ``ChildProcess``). :meth:`cancel` also
    cancels ``cancel`` (a ``CancelToken``, if given); ``folder`` (temporary files, if any) is removed
    when the task ends or closes."""

    def __init__(self, args: list[str], *, env: Optional[dict] = None, launcher: Callable = popen_launcher,
                 stop_file=None, folder: Optional[Path] = None, cancel=None, grace_seconds: float = 5.0,
                 on_progress: Optional[Callable] = None, on_event: Optional[Callable] = None,
                 on_log: Optional[Callable] = None, on_finished: Optional[Callable] = None,
                 clock: Callable[[], float] = time.monotonic):
        self.child = ChildProcess(args, env=env, launcher=launcher, stop_file=stop_file, on_record=self._event,
                                  on_log=self._log, on_finished=self._ended)
        self.folder, self.cancel_token, self.grace, self.clock = folder, cancel, grace_seconds, clock
        self.on_progress, self.on_event, self.on_log, self.on_finished = on_progress, on_event, on_log, on_finished
        self.log: collections.deque = collections.deque(maxlen=40)     # the last lines of other output
        self.last_event: dict = {}
        self._finished = False
        self.eta = EtaEstimator(clock())

    @property
    def finished(self) -> bool:
        return self._finished

    @property
    def cancelled(self) -> bool:
        """A stop was asked (:meth:`cancel`, or the cancel token)."""
        return self.child.stopped or (self.cancel_token is not None and self.cancel_token.cancelled)

    def start(self) -> "ProcessTask":
        self.eta = EtaEstimator(self.clock())
        self.child.start()
        if self.cancel_token is not None and self.cancel_token.cancelled:     # cancelled before it started
            self.cancel()
        return self

    def cancel(self, grace_seconds: Optional[float] = None) -> None:
        """Ask the child to stop at its next check (its stop file: the trainer saves a checkpoint
        first); it is killed if it has not ended ``grace_seconds`` later (default: the task's)."""
        if self.cancel_token is not None:
            self.cancel_token.cancel()
        self.child.stop(self.grace if grace_seconds is None else grace_seconds)

    def poll(self) -> bool:
        """Deliver the child's events and, once it ended, the outcome; True while it runs."""
        if not self._finished:
            self.child.poll()
        return not self._finished

    def wait(self, timeout: float = 60.0, interval: float = 0.02) -> None:
        poll_until_done(self.poll, timeout, "The child process", interval)

    def close(self, timeout: float = 5.0) -> None:
        """For a module that closes: stop, wait up to ``timeout`` s, then kill; no callbacks."""
        self.on_progress = self.on_event = self.on_log = self.on_finished = None
        self.cancel(timeout)
        self.child.close(timeout)
        self._finished = True
        self._remove_folder()

    def _event(self, event: dict) -> None:
        self.last_event = event
        fraction = progress_fraction(event)
        if fraction is not None and self.on_progress:
            self.on_progress(fraction, event.get("message", ""), self.eta.remaining(fraction, self.clock()))
        if self.on_event:
            self.on_event(event)

    def _log(self, line: str) -> None:
        self.log.append(line)
        if self.on_log:
            self.on_log(line)

    def _ended(self, code: int, stop: Optional[str]) -> None:
        self._finished = True
        try:
            if self.on_finished:
                self.on_finished(code, stop)
        finally:
            self._remove_folder()

    def _remove_folder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def infer_command(job, folder: Path, python: Optional[str] = None) -> tuple[list[str], dict]:
    """The child's command line and extra environment for ``job``, with files in ``folder``."""
    args = [python or python_executable(), "-c", CLI_SNIPPET, "infer", str(folder / "input.nrrd"),
            str(folder / "output.nrrd"), "--method", job.method, "--options", json.dumps(job.options),
            "--progress-json", "--stop-file", str(folder / "STOP"), "--quiet"]
    env = {}
    device = job.device or "auto"
    if device.startswith("cuda:"):        # the chosen GPU is the child's only one
        env["CUDA_VISIBLE_DEVICES"], device = device.split(":", 1)[1], "cuda"
    args += ["--device", device]
    if job.spacing:
        args += ["--spacing", repr(float(job.spacing))]
    if job.axis:
        args += ["--axis", job.axis]
    if job.dtype:
        args += ["--dtype", "input"]
    if job.force:
        args.append("--force")
    from volumetricsr.app.api import MAPS     # the maps a child may write beside its output

    trust = getattr(job, "trust", {})
    if trust.get("enforce_consistency"):
        args.append("--enforce-consistency")
    for key in MAPS:
        if trust.get(key):
            args += ["--" + key.replace("_", "-"), str(folder / f"{key}.nrrd")]
    return args, env


def infer_task(job, *, launcher: Callable = popen_launcher, python: Optional[str] = None,
               on_progress: Optional[Callable] = None, on_done: Optional[Callable] = None,
               on_cancelled: Optional[Callable] = None, on_error: Optional[Callable] = None,
               grace_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic) -> ProcessTask:
    """``job`` as a (not yet started) :class:`ProcessTask` of ``volumetricsr infer``. Callbacks, all
    from ``poll``: ``on_progress(fraction, message, eta)``, ``on_done(volume)``, ``on_cancelled()``,
    ``on_error(exception, details)``."""
    from volumetricsr import read_frames, read_volume, write_frames, write_volume
    from volumetricsr.app.api import MAPS
    from volumetricsr.common.errors import VolumetricSRError

    frames = getattr(job, "frames", None)
    read = read_volume if frames is None else read_frames
    folder = Path(tempfile.mkdtemp(prefix="volumetricsr-run-"))
    try:
        if frames is None:
            write_volume(job.volume, folder / "input.nrrd")
        else:
            write_frames(frames, folder / "input.nrrd")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    args, env = infer_command(job, folder, python)
    errors = []

    def event(e: dict) -> None:
        if e["event"] == "error":
            errors.append(e.get("message"))
        elif e["event"] == "done":
            job.results.update({k: e[k] for k in ("consistency", "slice_profile", "trained_on") if e.get(k) is not None})

    def ended(code: int, stop: Optional[str]) -> None:
        if stop is not None or task.cancelled:
            on_cancelled and on_cancelled()
        elif code == 0 and (folder / "output.nrrd").is_file():
            try:
                result = read(folder / "output.nrrd")
                for key in MAPS:
                    if (folder / f"{key}.nrrd").is_file():
                        job.results[key] = read(folder / f"{key}.nrrd")
                on_done and on_done(result)
            except Exception as exc:    # a failing handler (e.g. making the output node) is an error too
                if not on_error:
                    raise
                on_error(exc, traceback.format_exc())
        elif on_error:
            last = task.log[-1] if task.log else ""
            message = errors[-1] if errors else f"The run ended with exit code {code}: {last}"
            on_error(VolumetricSRError(message), "\n".join(task.log))

    task = ProcessTask(args, env={**core_environment(), **env}, launcher=launcher, stop_file=folder / "STOP",
                       folder=folder, cancel=job.cancel, grace_seconds=grace_seconds, on_progress=on_progress,
                       on_event=event, on_finished=ended, clock=clock)
    return task

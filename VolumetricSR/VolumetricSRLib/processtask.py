"""A panel run in a separate process, with :class:`~.runner.BackgroundTask`'s interface.

Slicer's embedded Python keeps the GIL on the main thread while Qt idles, so a worker thread in
Slicer's process runs only in the gaps of the GUI's own Python; and the core would set
process-wide things (allocator settings, a CUDA context) in Slicer itself. So network and
per-volume runs go to a child, as the trainer does: the job's private copy of the voxels is
written with its geometry to a temporary NRRD, ``volumetricsr infer`` runs on it through Slicer's
launcher with JSON progress and a stop file, and the result (and the maps asked for, and the
consistency from the final record, into ``job.results``) is read back only when the child ends
complete. Cancel writes the stop file; a child that has not ended a few seconds later is killed
(the real child, not the launcher). The temporary folder is removed in every case.
"""
from __future__ import annotations

import collections
import json
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Optional

from .childprocess import CLI_SNIPPET, ChildProcess, core_environment, popen_launcher, python_executable
from .runner import EtaEstimator, poll_until_done


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


class ProcessTask:
    """``job`` in a child process. Callbacks, all from :meth:`poll`: ``on_progress(fraction,
    message, eta)``, ``on_done(volume)``, ``on_cancelled()``, ``on_error(exception, details)``."""

    def __init__(self, job, *, launcher: Callable = popen_launcher, python: Optional[str] = None,
                 on_progress: Optional[Callable] = None, on_done: Optional[Callable] = None,
                 on_cancelled: Optional[Callable] = None, on_error: Optional[Callable] = None,
                 grace_seconds: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.job, self.launcher, self.python, self.grace, self.clock = job, launcher, python, grace_seconds, clock
        self.on_progress, self.on_done, self.on_cancelled, self.on_error = on_progress, on_done, on_cancelled, on_error
        self.child: Optional[ChildProcess] = None
        self.folder: Optional[Path] = None
        self.log: collections.deque = collections.deque(maxlen=40)
        self.error: Optional[str] = None
        self._finished = False
        self.eta = EtaEstimator(clock())

    @property
    def finished(self) -> bool:
        return self._finished

    def start(self) -> "ProcessTask":
        from volumetricsr import write_volume

        self.folder = Path(tempfile.mkdtemp(prefix="volumetricsr-run-"))
        write_volume(self.job.volume, self.folder / "input.nrrd")
        args, env = infer_command(self.job, self.folder, self.python)
        self.child = ChildProcess(args, env={**core_environment(), **env}, launcher=self.launcher,
                                  stop_file=self.folder / "STOP", on_record=self._record, on_log=self.log.append,
                                  on_finished=self._ended)
        self.eta = EtaEstimator(self.clock())
        self.child.start()
        if self.job.cancel is not None and self.job.cancel.cancelled:     # cancelled before it started
            self.cancel()
        return self

    def cancel(self) -> None:
        """Stop the child at its next check (killed after the grace period); no node is made."""
        if self.job.cancel is not None:
            self.job.cancel.cancel()
        if self.child is not None:
            self.child.stop(self.grace)

    def poll(self) -> bool:
        """Deliver the child's progress and, once it ended, the outcome; True while it runs."""
        if not self._finished and self.child is not None:
            self.child.poll()
        return not self._finished

    def close(self, timeout: float = 5.0) -> None:
        """Cancel, wait up to ``timeout`` s, then kill: for a module that closes (no callbacks)."""
        self.on_progress = self.on_done = self.on_cancelled = self.on_error = None
        self.cancel()
        if self.child is not None:
            self.child.close(timeout)
        self._finished = True
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def wait(self, timeout: float = 60.0, interval: float = 0.02) -> None:
        poll_until_done(self.poll, timeout, "The run", interval)

    def _record(self, record: dict) -> None:
        if record.get("event") == "progress" and self.on_progress:
            fraction = float(record.get("fraction", 0.0))
            self.on_progress(fraction, record.get("message", ""), self.eta.remaining(fraction, self.clock()))
        elif record.get("event") == "error":
            self.error = record.get("message")
        elif record.get("event") == "done":
            self.job.results.update({k: record[k] for k in ("consistency", "slice_profile") if record.get(k)})

    def _ended(self, code: int, stop: Optional[str]) -> None:
        self._finished = True
        try:
            if stop is not None or (self.job.cancel is not None and self.job.cancel.cancelled):
                self.on_cancelled and self.on_cancelled()
            elif code == 0 and (self.folder / "output.nrrd").is_file():
                self._deliver()
            else:
                from volumetricsr.common.errors import VolumetricSRError

                message = self.error or f"The run ended with exit code {code}: {self.log[-1] if self.log else ''}"
                self.on_error and self.on_error(VolumetricSRError(message), "\n".join(self.log))
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _deliver(self) -> None:
        from volumetricsr import read_volume
        from volumetricsr.app.api import MAPS

        try:
            result = read_volume(self.folder / "output.nrrd")
            for key in MAPS:
                if (self.folder / f"{key}.nrrd").is_file():
                    self.job.results[key] = read_volume(self.folder / f"{key}.nrrd")
            if self.on_done:
                self.on_done(result)
        except Exception as exc:    # a failing handler (e.g. making the output node) is an error too
            if not self.on_error:
                raise
            self.on_error(exc, traceback.format_exc())

"""Start, follow and stop one training run: the trainer process, its loss history and plot."""
from __future__ import annotations

from typing import Callable, Optional

from VolumetricSRLib.childprocess import ChildProcess, popen_launcher, slicer_launcher  # noqa: F401

from .command import TrainingSettings, build_command, environment
from .history import LossHistory, describe, progress_fraction


class TrainingRun:
    """One trainer subprocess. ``on_status(fraction_or_None, text)`` and ``on_finished(ok, text)`` are
    called from :meth:`poll`; ``plot`` (optional) gets the loss history after each new point."""

    def __init__(self, settings: TrainingSettings, *, plot=None, launcher: Callable = popen_launcher,
                 python: Optional[str] = None, script="find", on_status: Optional[Callable] = None,
                 on_log: Optional[Callable] = None, on_finished: Optional[Callable] = None):
        problems = settings.problems()
        if problems:
            raise ValueError(" ".join(problems))
        self.settings, self.plot, self.history = settings, plot, LossHistory()
        self.on_status, self.on_finished_cb = on_status, on_finished
        self.last_record: dict = {}
        self.process = ChildProcess(build_command(settings, python, script), env=environment(settings),
                                     launcher=launcher, stop_file=settings.workdir() / "STOP",
                                     on_record=self._record, on_log=on_log, on_finished=self._finished)

    def start(self) -> "TrainingRun":
        self.process.start()
        return self

    def stop(self, grace_seconds: float = 120.0) -> None:
        """Ask for a checkpoint and an exit; the trainer is killed if it has not exited in ``grace_seconds``."""
        self.process.stop(grace_seconds)

    def close(self, timeout: float = 10.0) -> None:
        """Stop, wait up to ``timeout`` s, then kill: nothing left running when the module closes."""
        self.process.close(timeout)

    def poll(self) -> bool:
        return self.process.poll()

    def wait(self, timeout: float = 60.0) -> None:
        self.process.wait(timeout)

    def _record(self, record: dict) -> None:
        self.last_record = record
        if self.history.add(record) and self.plot is not None:
            self.plot.update(self.history)
        if self.on_status:
            self.on_status(progress_fraction(record, self.settings.epochs), describe(record))

    def _finished(self, code: int, stop: Optional[str]) -> None:
        model = self.settings.modelId
        if stop == "stopped":
            step = self.last_record.get("step")
            ok, text = False, (f"Stopped{f' at step {step}' if step else ''}; a checkpoint was saved. "
                               f"Tick 'Resume' and Start to continue {model}.")
        elif stop == "killed":
            ok, text = False, ("The trainer did not stop in time and was killed: no checkpoint was saved at the "
                               f"stop; 'Resume' continues {model} from its last epoch's checkpoint, if any.")
        elif code == 0:
            ok, text = True, f"Model {model} trained; it is listed in the VolumetricSR module's model selector."
        else:
            ok, text = False, f"Training failed (exit code {code}); see the log above."
        if self.on_finished_cb:
            self.on_finished_cb(ok, text)

"""Start, follow and stop one training run: the trainer as a ProcessTask, its loss history and plot."""
from __future__ import annotations

from typing import Callable, Optional

from VolumetricSRLib.childprocess import popen_launcher, slicer_launcher  # noqa: F401  (the modules' launcher)
from VolumetricSRLib.processtask import ProcessTask, progress_fraction

from .command import TrainingSettings, build_command, environment
from .history import LossHistory, describe


def training_task(settings: TrainingSettings, *, history: Optional[LossHistory] = None, plot=None,
                  launcher: Callable = popen_launcher, python: Optional[str] = None, script="find",
                  on_status: Optional[Callable] = None, on_log: Optional[Callable] = None,
                  on_finished: Optional[Callable] = None) -> ProcessTask:
    """The trainer for ``settings`` as a (not yet started) :class:`ProcessTask`; its ``cancel`` asks for
    a checkpoint and an exit (the trainer is killed if it has not exited two minutes later). Its
    events fill ``history`` and redraw ``plot`` (optional). Called from ``poll``:
    ``on_status(fraction_or_None, text)`` for each event, ``on_log(line)``, ``on_finished(ok, text)``."""
    problems = settings.problems()
    if problems:
        raise ValueError(" ".join(problems))
    history = LossHistory() if history is None else history

    def event(e: dict) -> None:
        if history.add(e) and plot is not None:
            plot.update(history)
        if on_status:
            on_status(progress_fraction(e), describe(e))

    def ended(code: int, stop: Optional[str]) -> None:
        if on_finished:
            on_finished(*outcome(settings.modelId, code, stop, task.last_event))

    task = ProcessTask(build_command(settings, python, script), env=environment(settings), launcher=launcher,
                       stop_file=settings.workdir() / "STOP", grace_seconds=120.0, on_event=event, on_log=on_log,
                       on_finished=ended)
    return task


def outcome(model: str, code: int, stop: Optional[str], last_event: dict) -> tuple[bool, str]:
    """``(ok, text)`` of a trainer that ended with ``code`` (``stop`` as in ``ChildProcess``)."""
    if stop == "stopped":
        step = last_event.get("step")
        return False, (f"Stopped{f' at step {step}' if step else ''}; a checkpoint was saved. "
                       f"Tick 'Resume' and Start to continue {model}.")
    if stop == "killed":
        return False, ("The trainer did not stop in time and was killed: no checkpoint was saved at the "
                       f"stop; 'Resume' continues {model} from its last epoch's checkpoint, if any.")
    if code == 0:
        return True, f"Model {model} trained; it is listed in the VolumetricSR module's model selector."
    return False, f"Training failed (exit code {code}); see the log above."

"""Training settings and the command line of the headless trainer.

Contract with the trainer (``VolumetricSRTraining/VolumetricSRTrainingLib/train.py``, or ``volumetricsr train``):
``--method M --data PATH --out MODEL_ID --models-dir DIR --workdir DIR/runs/MODEL_ID --epochs N
--device D [--resume] --progress-json``; with ``--progress-json`` it prints one JSON object per line
in UTF-8 (an ``event`` of ``start`` with its ``pid``, ``step``, ``epoch``, ``stopped``, ``model``...;
keys such as ``step``, ``loss``, ``val_psnr``), and when the file ``WORKDIR/STOP`` appears it writes
a checkpoint, prints a ``stopped`` line and exits. The models folder is passed explicitly: the
trainer starts in Slicer's startup environment, which lacks variables set inside Slicer.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from VolumetricSRLib.childprocess import CLI_SNIPPET, core_environment, python_executable
from VolumetricSRLib.settings import offered, option

#: Where the headless script is: in this package (source tree and built extension alike).
TRAIN_SCRIPT_CANDIDATES = (Path(__file__).resolve().parent / "train.py",)
MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


@dataclass
class TrainingSettings:
    method: str = "tvsrn"
    dataPath: str = ""
    modelId: str = ""
    epochs: int = option("epochs", 100)
    device: str = "auto"            # auto, cpu, mps, cuda or cuda:N (N is passed as CUDA_VISIBLE_DEVICES)
    resume: bool = False
    extraArgs: str = ""             # further trainer options, e.g. "--crop 128 --batch-size 2"
    modelsDir: str = ""             # where the model goes ("": the user models folder the main module lists)

    @staticmethod
    def declarations() -> dict:
        """The declared options these settings set (``volumetricsr train``'s common options)."""
        from volumetricsr.app.train_cli import COMMON_OPTIONS

        return COMMON_OPTIONS

    def models_dir(self) -> Path:
        from volumetricsr.compute.models import user_models_dir

        return Path(self.modelsDir) if self.modelsDir else user_models_dir()

    def workdir(self) -> Path:
        """The run's checkpoints, log and stop file."""
        return self.models_dir() / "runs" / self.modelId

    def problems(self) -> list[str]:
        out = []
        if not self.method:
            out.append("Choose a method.")
        if self.dataPath and not Path(self.dataPath).exists() or not self.dataPath and not self.resume:
            out.append(f"The training data {self.dataPath or '(none)'} does not exist.")
        try:
            shlex.split(self.extraArgs or "")
        except ValueError as exc:
            out.append(f"Extra trainer options: {exc}.")
        if not MODEL_ID.match(self.modelId or ""):
            out.append("The model name may use letters, digits, '.', '_' and '-' (for example tvsrn-ct-x5-mine).")
        from volumetricsr.common.errors import InputError

        try:
            offered(TrainingSettings)["epochs"].rule("epochs", self.epochs)
        except InputError as exc:
            out.append(str(exc))
        return out


def find_train_script() -> Optional[Path]:
    return next((p for p in TRAIN_SCRIPT_CANDIDATES if p.is_file()), None)


def build_command(settings: TrainingSettings, python: Optional[str] = None,
                  script: "Optional[Path | str]" = "find") -> list[str]:
    """The trainer's argument list (``script=None``: the core CLI's ``train`` subcommand)."""
    args = ["--method", settings.method, "--out", settings.modelId, "--models-dir", str(settings.models_dir()),
            "--workdir", str(settings.workdir()), "--epochs", str(int(settings.epochs)),
            "--device", settings.device.split(":")[0], "--progress-json"]
    if settings.dataPath:
        args[2:2] = ["--data", str(settings.dataPath)]
    if settings.resume:
        args.append("--resume")
    return trainer_head(python, script) + args + shlex.split(settings.extraArgs or "")


def environment(settings: TrainingSettings) -> dict:
    """Variables for the trainer: the core's (:func:`~VolumetricSRLib.childprocess.core_environment`)
    and the chosen GPU."""
    env = core_environment()
    if settings.device.startswith("cuda:"):
        env["CUDA_VISIBLE_DEVICES"] = settings.device.split(":", 1)[1]
    return env


def trainer_head(python: Optional[str] = None, script: "Optional[Path | str]" = "find") -> list[str]:
    """The command that starts the trainer, before its options."""
    python = python or python_executable()
    script = find_train_script() if script == "find" else script
    return [python, str(script)] if script else [python, "-c", CLI_SNIPPET, "train"]

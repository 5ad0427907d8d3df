"""The VolumetricSRTraining module's self-test, run inside Slicer and against the stand-in: the trainer
starts from Slicer's Python, and one tiny training step makes a model.

Each check is a function of the module's ``ScriptedLoadableModuleTest`` (``test``) and its logic class
(``Logic``); the module file's ``test_*`` methods call them.
"""
import os
import shlex
import tempfile

import numpy as np
import slicer
from VolumetricSRLib.childprocess import ChildProcess
from VolumetricSRLib.selftest import run_checks, skip_without_torch  # noqa: F401  (run_checks: the module's runTest)

from .command import TrainingSettings, environment, trainer_head
from .logic import slicer_launcher


def tiny_training(test, Logic):
    """Two smooth synthetic volumes; one tiny TVSRN step through the console API writes a model."""
    skip_without_torch(test)      # training needs PyTorch, in the trainer's Python as in Slicer's
    from volumetricsr import Volume, write_volume

    folder = tempfile.mkdtemp(dir=slicer.app.temporaryPath)
    data, models = os.path.join(folder, "data"), os.path.join(folder, "models")
    os.makedirs(data)
    rng = np.random.default_rng(0)
    for i in range(2):      # smooth synthetic thin volumes; the trainer makes x5 pseudo-pairs from them
        a = rng.normal(size=(41, 40, 40)).cumsum(0).cumsum(1).cumsum(2)
        write_volume(Volume((500 * a / np.abs(a).max()).astype("int16"), (0.8, 0.8, 1.0)),
                     os.path.join(data, f"case{i}.nii.gz"))
    arch = '{"channels": 8, "enc_layers": 1, "tab_layers": 1, "dec_layers": 1}'
    ok = Logic().train(
        "tvsrn", data, "tvsrn-selftest", epochs=1, device="auto",
        extraArgs=f"--max-steps 1 --crop 32 --val-crop 32 --models-dir {shlex.quote(models)} --arch {shlex.quote(arch)}",
        timeout=600)
    test.assertTrue(ok)
    test.assertTrue(os.path.isfile(os.path.join(models, "tvsrn-selftest.json")))


def trainer_help(test, Logic):
    """The trainer starts through Slicer's launcher and lists its options."""
    skip_without_torch(test)
    lines, codes = [], []
    proc = ChildProcess(trainer_head() + ["--help"], env=environment(TrainingSettings()), launcher=slicer_launcher,
                        on_log=lines.append, on_finished=lambda code, stopped: codes.append(code)).start()
    proc.wait(120)
    test.assertEqual(codes, [0])
    test.assertTrue(any("--progress-json" in line for line in lines))

"""VolumetricSRTraining: train a VolumetricSR model from Slicer, in a subprocess, with a live loss curve.

The panel runs the headless trainer (VolumetricSRTraining/VolumetricSRTrainingLib/train.py, also usable as
``Slicer --no-main-window --python-script VolumetricSRTraining/VolumetricSRTrainingLib/train.py ...`` or with plain Python),
reads its ``--progress-json`` lines, and stops it with its stop file (it saves a checkpoint; a signal
would reach only Slicer's launcher). The trained model is written to the user models folder, where
the VolumetricSR module lists it.
"""
from typing import Annotated


import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin

from VolumetricSRLib.widgets import ParameterNodeWidgetMixin
from VolumetricSRTrainingLib.command import TrainingSettings
from VolumetricSRTrainingLib.logic import slicer_launcher, training_task


class VolumetricSRTraining(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Volumetric Super-Resolution Training"
        self.parent.categories = ["Filtering"]
        self.parent.dependencies = ["VolumetricSR"]   # uses VolumetricSRLib and the core beside it
        self.parent.contributors = ["VolumetricSR contributors"]
        self.parent.helpText = (
            "Trains a VolumetricSR network model on your data (RPLHR-CT style folder of thick/thin pairs, "
            "a list of pairs, or volumes for self-supervised methods). The model then appears in the "
            "Volumetric Super-Resolution module.")
        self.parent.acknowledgementText = "Built on 3D Slicer and PyTorch."


@parameterNodeWrapper
class VolumetricSRTrainingParameterNode:
    method: str = "tvsrn"
    dataPath: str = ""
    modelId: str = ""
    epochs: Annotated[int, WithinRange(1, 10000)] = 100
    device: str = "auto"
    resume: bool = False
    extraArgs: str = ""
    modelsDir: str = ""      # "": the user models folder, which the VolumetricSR module lists


class VolumetricSRTrainingWidget(ParameterNodeWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._run = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/VolumetricSRTraining.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = VolumetricSRTrainingLogic()
        self._timer = self.pollTimer(200, self._poll)

        self._fillCombos()
        self.ui.methodComboBox.currentIndexChanged.connect(lambda i: self.storeData("method", self.ui.methodComboBox))
        self.ui.deviceComboBox.currentIndexChanged.connect(lambda i: self.storeData("device", self.ui.deviceComboBox))
        self.ui.dataPathLineEdit.currentPathChanged.connect(self._onDataPath)
        self.ui.startButton.clicked.connect(self.onStart)
        self.ui.stopButton.clicked.connect(self.onStop)
        self.ui.stopButton.enabled = False
        self.ui.progressBar.visible = False
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, lambda *a: self.setParameterNode(None))
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, lambda *a: self.initializeParameterNode())
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._run is not None:       # no trainer left running behind Slicer
            self._run.close(timeout=10.0)
        self.removeObservers()

    def _fillCombos(self) -> None:
        from VolumetricSRLib.devices import device_choices

        try:
            from volumetricsr import available_methods
            from volumetricsr.training.tasks import trainable

            methods = [m for m in available_methods() if m.name in trainable()]
        except Exception as exc:    # missing, or a PyTorch that fails to load: a reason, never a broken panel
            self.ui.statusLabel.text = f"{exc}. Install the dependencies in the Volumetric Super-Resolution module."
            methods = []
        for m in methods:
            self.ui.methodComboBox.addItem(m.title or m.name, m.name)
        for value, label in device_choices():
            self.ui.deviceComboBox.addItem(label, value)

    def _onDataPath(self, path) -> None:
        if self._parameterNode:
            self._parameterNode.dataPath = path

    def _updateGui(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p is None:
            return
        self.selectData(self.ui.methodComboBox, p.method)
        self.selectData(self.ui.deviceComboBox, p.device)
        if self.ui.dataPathLineEdit.currentPath != p.dataPath:
            self.ui.dataPathLineEdit.currentPath = p.dataPath
        problems = self._settings().problems()
        self.ui.startButton.enabled = self._run is None and not problems
        self.ui.startButton.toolTip = " ".join(problems) or "Start training in a separate process."

    def _settings(self) -> TrainingSettings:
        p = self._parameterNode
        return TrainingSettings(method=p.method, dataPath=p.dataPath, modelId=p.modelId, epochs=p.epochs,
                                device=p.device, resume=p.resume, extraArgs=p.extraArgs, modelsDir=p.modelsDir)

    def onStart(self) -> None:
        from VolumetricSRLib.dependencies import DependencyInstaller, requirements_for
        from VolumetricSRTrainingLib.plot import LossPlot

        with slicer.util.tryWithErrorDisplay("Training could not start.", waitCursor=True):
            DependencyInstaller(interactive=True).ensure(requirements_for(True))
            settings = self._settings()
            self.ui.logTextEdit.clear()
            self._run = training_task(settings, plot=LossPlot(settings.modelId), launcher=slicer_launcher,
                                      on_status=self._onStatus, on_log=self.ui.logTextEdit.appendPlainText,
                                      on_finished=self._onFinished).start()
            self._setRunning(True)
            self._timer.start()

    def onStop(self) -> None:
        if self._run is not None:
            self._run.cancel()
            self.ui.statusLabel.text = "Stopping: a checkpoint is saved after the current step..."

    def _poll(self) -> None:
        if self._run is None or not self._run.poll():
            self._timer.stop()
            self._run = None
            self._setRunning(False)

    def _setRunning(self, running: bool) -> None:
        self.ui.stopButton.enabled = running
        self.ui.progressBar.visible = running
        self.ui.settingsCollapsibleButton.enabled = not running
        if running:
            self.ui.progressBar.value = 0
            self.ui.statusLabel.text = "Starting the trainer..."
        self._updateGui()

    def _onStatus(self, fraction, text: str) -> None:
        if fraction is not None:
            self.ui.progressBar.value = int(round(100 * fraction))
        if text:
            self.ui.statusLabel.text = text

    def _onFinished(self, ok: bool, text: str) -> None:
        self.ui.statusLabel.text = text
        if not ok and "failed" in text:
            slicer.util.errorDisplay(text, detailedText=self.ui.logTextEdit.toPlainText())


class VolumetricSRTrainingLogic(ScriptedLoadableModuleLogic):
    """Scripting: ``VolumetricSRTrainingLogic().train(method, data, model_id, epochs, device)`` blocks."""

    def getParameterNode(self):
        return VolumetricSRTrainingParameterNode(super().getParameterNode())

    def train(self, method: str, dataPath: str, modelId: str, epochs: int = 100, device: str = "auto",
              resume: bool = False, extraArgs: str = "", timeout: float = 7 * 24 * 3600.0, modelsDir: str = "") -> bool:
        """Run the trainer to the end, logging its output; True when it succeeded."""
        import logging

        result = []
        run = training_task(TrainingSettings(method, dataPath, modelId, epochs, device, resume, extraArgs, modelsDir),
                            launcher=slicer_launcher, on_status=lambda f, t: logging.info(t), on_log=logging.info,
                            on_finished=lambda ok, text: result.append((ok, text))).start()
        run.wait(timeout)
        logging.info(result[0][1])
        return result[0][0]


class VolumetricSRTrainingTest(ScriptedLoadableModuleTest):
    """Inside Slicer: the trainer starts from Slicer's Python, and one tiny training step makes a model."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        from volumetricsr.methods import TORCH_PROBLEM

        if TORCH_PROBLEM:      # training needs PyTorch, in the trainer's Python as in Slicer's
            self.delayDisplay(f"Training self-test skipped: PyTorch does not import here ({TORCH_PROBLEM})")
            return
        self.setUp()
        self.test_trainer_help()
        self.test_tiny_training()

    def test_tiny_training(self):
        import os
        import shlex
        import tempfile

        import numpy as np
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
        ok = VolumetricSRTrainingLogic().train(
            "tvsrn", data, "tvsrn-selftest", epochs=1, device="auto",
            extraArgs=f"--max-steps 1 --crop 32 --val-crop 32 --models-dir {shlex.quote(models)} --arch {shlex.quote(arch)}",
            timeout=600)
        self.assertTrue(ok)
        self.assertTrue(os.path.isfile(os.path.join(models, "tvsrn-selftest.json")))

    def test_trainer_help(self):
        from VolumetricSRTrainingLib.command import environment, trainer_head
        from VolumetricSRLib.childprocess import ChildProcess

        lines, codes = [], []
        proc = ChildProcess(trainer_head() + ["--help"], env=environment(TrainingSettings()), launcher=slicer_launcher,
                               on_log=lines.append, on_finished=lambda code, stopped: codes.append(code)).start()
        proc.wait(120)
        self.assertEqual(codes, [0])
        self.assertTrue(any("--progress-json" in line for line in lines))

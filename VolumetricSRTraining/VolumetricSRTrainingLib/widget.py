"""The VolumetricSRTraining panel without its module file: settings, Start/Stop of the trainer (a child
process), its log, progress and live loss curve. The module's widget class inherits it (see
``VolumetricSRLib.widget``)."""
from __future__ import annotations

import slicer
from VolumetricSRLib.settings import settings_from
from VolumetricSRLib.widget import ParameterNodeWidgetMixin

from .command import TrainingSettings
from .logic import slicer_launcher, training_task


class TrainingPanel(ParameterNodeWidgetMixin):
    """Panel: training settings, Start (the trainer in a child process) and Stop, log and loss curve."""

    def __init__(self) -> None:
        self.logic = None
        self._task = None

    def setupPanel(self, logic) -> None:
        """After ``ScriptedLoadableModuleWidget.setup``: load the .ui, connect it, fill the lists."""
        self.ui = self.loadPanelUI("UI/VolumetricSRTraining.ui")
        self.logic = logic
        self._timer = self.pollTimer(200, self._poll)

        self.declaredWidgets(TrainingSettings)
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
        if self._task is not None:       # no trainer left running behind Slicer
            self._task.close(timeout=10.0)
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
        self.ui.startButton.enabled = self._task is None and not problems
        self.ui.startButton.toolTip = " ".join(problems) or "Start training in a separate process."

    def _settings(self) -> TrainingSettings:
        return settings_from(self._parameterNode, TrainingSettings)

    def onStart(self) -> None:
        from VolumetricSRLib.dependencies import DependencyInstaller, requirements_for
        from .plot import LossPlot

        with slicer.util.tryWithErrorDisplay("Training could not start.", waitCursor=True):
            DependencyInstaller(interactive=True).ensure(requirements_for(True))
            settings = self._settings()
            self.ui.logTextEdit.clear()
            self._begin(training_task(settings, plot=LossPlot(settings.modelId), launcher=slicer_launcher,
                                      on_status=self._onStatus, on_log=self.ui.logTextEdit.appendPlainText,
                                      on_finished=self._onFinished).start())

    def onStop(self) -> None:
        self._cancelTask("Stopping: a checkpoint is saved after the current step...")

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

"""VolumetricSRTraining: train a VolumetricSR model from Slicer, in a subprocess, with a live loss curve.

The panel runs the headless trainer (VolumetricSRTraining/VolumetricSRTrainingLib/train.py, also usable as
``Slicer --no-main-window --python-script VolumetricSRTraining/VolumetricSRTrainingLib/train.py ...`` or with plain Python),
reads its ``--progress-json`` lines, and stops it with its stop file (it saves a checkpoint; a signal
would reach only Slicer's launcher). The trained model is written to the user models folder, where
the VolumetricSR module lists it.
"""
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from VolumetricSRTrainingLib import selftest
from VolumetricSRTrainingLib.command import TrainingSettings
from VolumetricSRTrainingLib.logic import slicer_launcher, training_task
from VolumetricSRTrainingLib.widget import TrainingPanel


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


class VolumetricSRTrainingWidget(TrainingPanel, ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Panel: settings, Start/Stop, log, progress and loss curve (VolumetricSRTrainingLib.widget)."""

    def __init__(self, parent=None) -> None:
        VTKObservationMixin.__init__(self)
        TrainingPanel.__init__(self)
        ScriptedLoadableModuleWidget.__init__(self, parent)   # last: without a parent it calls setup() itself

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.setupPanel(VolumetricSRTrainingLogic())


class VolumetricSRTrainingLogic(ScriptedLoadableModuleLogic):
    """Scripting: ``VolumetricSRTrainingLogic().train(method, data, model_id, epochs, device)`` blocks."""

    def getParameterNode(self):
        """The panel's state, saved with the scene: the fields of TrainingSettings (its epochs' range
        from the trainer's declaration)."""
        from VolumetricSRLib.settings import parameter_node_class

        return parameter_node_class(TrainingSettings, "VolumetricSRTrainingParameterNode")(super().getParameterNode())

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
    """Inside Slicer: the trainer starts from Slicer's Python, and one tiny training step makes a model
    (the checks: VolumetricSRTrainingLib.selftest; they skip where PyTorch does not import)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        selftest.run_checks(self)

    def test_tiny_training(self):
        selftest.tiny_training(self, VolumetricSRTrainingLogic)

    def test_trainer_help(self):
        selftest.trainer_help(self, VolumetricSRTrainingLogic)

"""VolumetricSR: through-plane super-resolution of thick-slice CT and MRI in 3D Slicer.

A thin module over the plain-Python core (``volumetricsr``) and its Slicer glue (``VolumetricSRLib``).
Console API (blocking, returns the new volume node)::

    import VolumetricSR
    out = VolumetricSR.VolumetricSRLogic().run(slicer.util.getNode("CT"), method="bspline", spacing=1.0)
"""
from typing import Annotated

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin
from slicer import vtkMRMLScalarVolumeNode

from VolumetricSRLib import HOMEPAGE, selftest, settings as S
from VolumetricSRLib.logic import SuperResolutionLogic
from VolumetricSRLib.widget import SuperResolutionPanel


class VolumetricSR(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Volumetric Super-Resolution"
        self.parent.categories = ["Filtering"]
        self.parent.dependencies = []
        self.parent.contributors = ["VolumetricSR contributors"]
        self.parent.helpText = (
            "Makes thick-slice CT and MRI volumes thin-slice: interpolates (linear, B-spline, sinc) or runs a "
            "trained network along the through-plane axis. The result is a new volume beside the input. "
            f'See the <a href="{HOMEPAGE}#3d-slicer">README</a>.')
        self.parent.acknowledgementText = "Built on 3D Slicer, PyTorch and SimpleITK."


@parameterNodeWrapper
class VolumetricSRParameterNode:
    """Panel state saved with the scene; field names match VolumetricSRLib.settings.RunSettings."""

    inputVolume: vtkMRMLScalarVolumeNode
    outputVolume: vtkMRMLScalarVolumeNode     # None: create "<input> SR <method>"
    method: str = "bspline"
    model: str = ""
    isotropic: bool = True
    spacing: Annotated[float, WithinRange(0.01, 100.0)] = 1.0
    axis: Annotated[str, Choice(list(S.AXES))] = "auto"
    device: str = "auto"
    backend: str = "torch"
    precision: Annotated[str, Choice(list(S.PRECISIONS))] = "auto"
    windowSlices: Annotated[int, WithinRange(0, 64)] = 0
    windowSize: Annotated[int, WithinRange(0, 1024)] = 0
    overlapSlices: Annotated[float, WithinRange(S.METHOD_DEFAULT, 0.95)] = S.METHOD_DEFAULT
    overlapInPlane: Annotated[float, WithinRange(S.METHOD_DEFAULT, 0.95)] = S.METHOD_DEFAULT
    batchSize: Annotated[int, WithinRange(0, 64)] = 0
    budget: Annotated[str, Choice(list(S.BUDGETS))] = "auto"
    iterations: Annotated[int, WithinRange(0, 1000000)] = 0
    seed: Annotated[int, WithinRange(0, 2147483647)] = 0
    stride: Annotated[int, WithinRange(-1, 32)] = -1
    planes: Annotated[int, WithinRange(0, 2)] = 0
    force: bool = False
    enforceConsistency: bool = False
    consistencyMap: bool = False
    confidenceMap: bool = False
    sliceThickness: Annotated[float, WithinRange(0.0, 200.0)] = 0.0
    sliceProfile: Annotated[str, Choice(list(S.PROFILES))] = "auto"


class VolumetricSRWidget(SuperResolutionPanel, ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Panel: settings, Apply (background run with progress, ETA, Cancel), Compare (VolumetricSRLib.widget)."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        SuperResolutionPanel.__init__(self)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        self.setupPanel(VolumetricSRLogic())


class VolumetricSRLogic(ScriptedLoadableModuleLogic, SuperResolutionLogic):
    """Console API: ``VolumetricSRLogic().run(inputNode, method="bspline", spacing=None, device="auto", ...)``.

    ``run`` blocks and returns the new volume node; ``prepare``/``start`` run in the background (see
    VolumetricSRLib.logic). Network methods install missing packages without asking unless
    ``interactive=True``.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        SuperResolutionLogic.__init__(self)

    def getParameterNode(self):
        return VolumetricSRParameterNode(super().getParameterNode())


class VolumetricSRTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: MRHead made thick, super-resolved with B-spline, geometry and values checked
    (the checks: VolumetricSRLib.selftest)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_bspline_geometry_and_values()
        self.setUp()
        self.test_background_run_and_cancel()
        self.setUp()
        self.test_trust_maps()
        from volumetricsr.methods import TORCH_PROBLEM

        if TORCH_PROBLEM:      # a Slicer without (a working) PyTorch: the network test cannot run
            self.delayDisplay(f"test_tiny_model skipped: PyTorch does not import here ({TORCH_PROBLEM})")
            return
        self.setUp()
        self.test_tiny_model()

    def test_bspline_geometry_and_values(self):
        selftest.bspline_geometry_and_values(self, VolumetricSRLogic)

    def test_trust_maps(self):
        selftest.trust_maps(self, VolumetricSRLogic)

    def test_background_run_and_cancel(self):
        selftest.background_run_and_cancel(self, VolumetricSRLogic)

    def test_tiny_model(self):
        selftest.tiny_model(self, VolumetricSRLogic)

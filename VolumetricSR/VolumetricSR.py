"""VolumetricSR: through-plane super-resolution of thick-slice CT and MRI in 3D Slicer.

A thin module over the plain-Python core (``volumetricsr``) and its Slicer glue (``VolumetricSRLib``).
Console API (blocking, returns the new volume node)::

    import VolumetricSR
    out = VolumetricSR.VolumetricSRLogic().run(slicer.util.getNode("CT"), method="bspline", spacing=1.0)
"""
import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from VolumetricSRLib import HOMEPAGE, selftest
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


class VolumetricSRWidget(SuperResolutionPanel, ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Panel: settings, Apply (background run with progress, ETA, Cancel), Compare (VolumetricSRLib.widget)."""

    def __init__(self, parent=None) -> None:
        VTKObservationMixin.__init__(self)
        SuperResolutionPanel.__init__(self)
        ScriptedLoadableModuleWidget.__init__(self, parent)   # last: without a parent it calls setup() itself

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
        """The panel's state, saved with the scene: the fields of VolumetricSRLib.settings.RunSettings,
        their ranges and choices made from the core's option declarations."""
        from VolumetricSRLib.settings import parameter_node_class

        return parameter_node_class()(super().getParameterNode())


class VolumetricSRTest(ScriptedLoadableModuleTest):
    """Runs inside Slicer: MRHead made thick, super-resolved with B-spline, geometry and values checked
    (the checks: VolumetricSRLib.selftest; those that need PyTorch skip where it does not import)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        selftest.run_checks(self)

    def test_bspline_geometry_and_values(self):
        selftest.bspline_geometry_and_values(self, VolumetricSRLogic)

    def test_trust_maps(self):
        selftest.trust_maps(self, VolumetricSRLogic)

    def test_background_run_and_cancel(self):
        selftest.background_run_and_cancel(self, VolumetricSRLogic)

    def test_tiny_model(self):
        selftest.tiny_model(self, VolumetricSRLogic)

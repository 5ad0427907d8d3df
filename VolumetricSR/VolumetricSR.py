"""VolumetricSR: through-plane super-resolution of thick-slice CT and MRI in 3D Slicer.

A thin module over the plain-Python core (``volumetricsr``) and its Slicer glue (``VolumetricSRLib``).
Console API (blocking, returns the new volume node)::

    import VolumetricSR
    out = VolumetricSR.VolumetricSRLogic().run(slicer.util.getNode("CT"), method="bspline", spacing=1.0)
"""
import logging
from typing import Annotated, Optional

import qt
import vtk

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.util import VTKObservationMixin
from slicer import vtkMRMLScalarVolumeNode

from VolumetricSRLib import HOMEPAGE, settings as S
from VolumetricSRLib.logic import SuperResolutionLogic
from VolumetricSRLib.widgets import ParameterNodeWidgetMixin


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


class VolumetricSRWidget(ParameterNodeWidgetMixin, ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Panel: settings, Apply (background run with progress, ETA, Cancel), Compare."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._task = None
        self._lastResult = None
        self._coreError = ""
        self._runInput = None
        self._runJob = None
        self._modelsFor = None      # the method whose models the model list holds

    # --- setup ---------------------------------------------------------------------------------
    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/VolumetricSR.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = VolumetricSRLogic()

        self._timer = self.pollTimer(100, self._poll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.methodComboBox.currentIndexChanged.connect(self._onMethodChosen)
        self.ui.modelComboBox.currentIndexChanged.connect(self._onModelChosen)
        self.ui.deviceComboBox.currentIndexChanged.connect(lambda i: self.storeData("device", self.ui.deviceComboBox))
        self.ui.backendComboBox.currentIndexChanged.connect(lambda i: self.storeData("backend", self.ui.backendComboBox))
        self.ui.refreshDevicesButton.clicked.connect(self._fillDevices)
        self.ui.importModelButton.clicked.connect(self.onImportModel)
        self.ui.installDependenciesButton.clicked.connect(self.onInstallDependencies)
        self.ui.applyButton.clicked.connect(self.onApply)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.ui.compareButton.clicked.connect(self.onCompare)
        self.ui.cancelButton.visible = False
        self.ui.progressBar.visible = False
        self.ui.compareButton.enabled = False

        for name, title in S.BACKEND_TITLES.items():
            self.ui.backendComboBox.addItem(title, name)
        self._fillMethods()
        self._fillDevices()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        if self._task is not None:       # no run left behind Slicer: a child is stopped, then killed
            getattr(self._task, "close", self._task.cancel)()
        self.removeObservers()

    def enter(self) -> None:
        ParameterNodeWidgetMixin.enter(self)
        self._fillModels()      # models trained or imported meanwhile appear here

    def onSceneStartClose(self, caller, event) -> None:
        if self._task is not None:   # its nodes are going away: stop it and ignore whatever it returns
            self._task.cancel()
            self._task = None
            self._timer.stop()
            self._setRunning(False)
        self._lastResult = None
        self.ui.compareButton.enabled = False
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        ParameterNodeWidgetMixin.initializeParameterNode(self)
        if not self._parameterNode.inputVolume:    # the first volume the input list can show
            from VolumetricSRLib.scene import first_scalar_volume

            self._parameterNode.inputVolume = first_scalar_volume(slicer.mrmlScene)

    # --- combo boxes whose items are not fixed (synchronised by hand) --------------------------
    def _fillMethods(self) -> None:
        from VolumetricSRLib.panel import method_items

        combo = self.ui.methodComboBox
        blocked = combo.blockSignals(True)      # filling the list must not change the stored method
        combo.clear()
        try:
            items = method_items()
        except Exception as exc:   # the core needs packages not installed yet, or one that fails to load
            self._coreError = (f"{exc}. Click 'Install dependencies' (Compute section), or Apply to be asked "
                               "to install them.")
            items = []
        else:
            self._coreError = ""
        for name, title in items:
            combo.addItem(title, name)
        combo.blockSignals(blocked)
        if self._parameterNode:
            self.selectData(combo, self._parameterNode.method)

    def _fillModels(self) -> None:
        from VolumetricSRLib.modelstore import method_model_choices

        combo, method = self.ui.modelComboBox, self._currentMethod()
        self._modelsFor = method.name if method is not None else None
        blocked = combo.blockSignals(True)
        combo.clear()
        for model_id, label in method_model_choices(method):
            combo.addItem(label, model_id)
        combo.blockSignals(blocked)
        p = self._parameterNode
        if p and combo.findData(p.model) < 0:        # the stored model is not one of this method's
            p.model = combo.itemData(0) if combo.count else ""
        elif p:
            self.selectData(combo, p.model)
        self._showCard()

    def _fillDevices(self) -> None:
        from VolumetricSRLib.devices import device_choices, gpu_notice

        combo = self.ui.deviceComboBox
        blocked = combo.blockSignals(True)
        combo.clear()
        for value, label in device_choices():
            combo.addItem(label, value)
        combo.blockSignals(blocked)
        if self._parameterNode:
            self.selectData(combo, self._parameterNode.device)
        notice = gpu_notice()
        self.ui.deviceNoticeLabel.text = notice
        self.ui.deviceNoticeLabel.visible = bool(notice)

    @staticmethod
    def _loadTorchMethods() -> str:
        """Register the network methods now that PyTorch may import; '' or why not."""
        try:
            from volumetricsr.methods import load_torch_methods
        except Exception as exc:     # the core itself does not import
            return str(exc)
        return load_torch_methods()

    def _pendingMethods(self) -> dict:
        from VolumetricSRLib.panel import pending_methods

        try:
            return pending_methods()
        except Exception:   # the core itself does not import yet
            return {}

    def _currentMethod(self):
        name = self._parameterNode.method if self._parameterNode else self.ui.methodComboBox.currentData
        try:
            from volumetricsr import get_method

            return get_method(name)
        except Exception:   # core not importable yet, or a method that is no longer registered
            return None

    def _onMethodChosen(self, index) -> None:
        self.storeData("method", self.ui.methodComboBox)
        self._fillModels()

    def _onModelChosen(self, index) -> None:
        self.storeData("model", self.ui.modelComboBox)
        self._showCard()

    def _showCard(self) -> None:
        from VolumetricSRLib.modelstore import card_html

        method, model_id = self._currentMethod(), self.ui.modelComboBox.currentData
        text = ""
        if method is not None and (method.needs_model or model_id):
            try:
                from volumetricsr.compute.models import find_model

                text = card_html(find_model(model_id or None, method.name))
            except Exception as exc:
                text = f"<span style='color:#b00'>{exc}</span>"
        self.ui.modelCardLabel.text = text

    # --- state -> GUI ----------------------------------------------------------------------------
    def _updateGui(self, caller=None, event=None) -> None:
        from VolumetricSRLib.modelstore import uses_models
        from VolumetricSRLib.panel import geometry_summary, method_html, pending_html

        p = self._parameterNode
        if p is None or self._updating:
            return
        self._updating = True
        try:
            self.selectData(self.ui.methodComboBox, p.method)
            self.selectData(self.ui.backendComboBox, p.backend)
            self.selectData(self.ui.deviceComboBox, p.device)
            method = None if self._coreError else self._currentMethod()
            pending = method is None and not self._coreError and p.method in self._pendingMethods()
            if method is not None and method.name != self._modelsFor:   # e.g. a scene loaded with another method
                self._fillModels()
            network = method is not None and method.needs_model
            self.ui.methodDescriptionLabel.text = (method_html(method) if method else
                                                   pending_html(p.method) if pending else self._coreError)
            for w in (self.ui.modelLabel, self.ui.modelComboBox, self.ui.importModelButton, self.ui.modelCardLabel):
                w.visible = uses_models(method)
            self.ui.advancedCollapsibleButton.enabled = network
            self.ui.selfSupervisedCollapsibleButton.enabled = method is not None and method.trains_per_volume
            for w in (self.ui.strideSpinBoxLabel, self.ui.strideSpinBox, self.ui.planesSpinBoxLabel, self.ui.planesSpinBox):
                w.visible = method is not None and "stride" in method.options
            self.ui.backendComboBox.enabled = network
            self.ui.deviceComboBox.enabled = method is not None and method.uses_device
            self.ui.spacingSpinBox.enabled = not p.isotropic
            s = S.settings_from(p)
            if not self._coreError:
                self.ui.geometryLabel.text = geometry_summary(p.inputVolume, s.target_spacing, s.target_axis)
            running = self._task is not None
            self.ui.applyButton.enabled = bool(p.inputVolume) and (method is not None or pending
                                                                   or bool(self._coreError)) and not running
            self.ui.applyButton.toolTip = "Run" if p.inputVolume else "Select an input volume"
        finally:
            self._updating = False

    # --- actions ---------------------------------------------------------------------------------
    def onApply(self) -> None:
        p, pending = self._parameterNode, self._pendingMethods()
        with slicer.util.tryWithErrorDisplay("VolumetricSR could not start.", waitCursor=True):
            job = self.logic.prepare_from_settings(p.inputVolume, S.settings_from(p), output_node=p.outputVolume,
                                                   interactive=not slicer.app.commandOptions().noMainWindow)
            if self._coreError or pending != self._pendingMethods():
                self._fillMethods()  # dependencies were installed by prepare: list the methods now
                self._fillModels()
            self._runInput, self._runJob = p.inputVolume, job
            self.ui.warningLabel.text = "\n".join(f"Warning: {w}" for w in job.warnings)
            self._task = self.logic.start(job, on_progress=self._onProgress, on_done=self._onDone,
                                          on_cancelled=self._onCancelled, on_error=self._onError)
            self._setRunning(True)
            self._timer.start()

    def onCancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self.ui.statusLabel.text = "Cancelling..."

    def _poll(self) -> None:
        if self._task is None or not self._task.poll():
            self._timer.stop()
            self._task = None
            self._setRunning(False)

    def _setRunning(self, running: bool) -> None:
        self.ui.applyButton.visible = not running
        self.ui.cancelButton.visible = running
        self.ui.progressBar.visible = running
        self.ui.progressBar.value = 0
        for section in (self.ui.inputsCollapsibleButton, self.ui.methodCollapsibleButton,
                        self.ui.outputCollapsibleButton, self.ui.computeCollapsibleButton,
                        self.ui.advancedCollapsibleButton, self.ui.selfSupervisedCollapsibleButton):
            section.enabled = not running
        if running:
            self.ui.statusLabel.text = "Starting..."
        else:
            self._updateGui()

    def _onProgress(self, fraction: float, message: str, eta: Optional[float]) -> None:
        from VolumetricSRLib.runner import format_duration

        self.ui.progressBar.value = int(round(100 * fraction))
        left = f", about {format_duration(eta)} left" if eta is not None else ""
        self.ui.statusLabel.text = f"{message or 'Working'}{left}"

    def _onDone(self, node) -> None:
        from VolumetricSRLib.panel import consistency_text, profile_text

        results = self._runJob.results
        self._lastResult = (self._runInput, node, results.get("map_nodes"))
        self.ui.compareButton.enabled = True
        self.ui.statusLabel.text = (f"Done: {node.GetName()}. {consistency_text(results.get('consistency'))} "
                                 f"{profile_text(results.get('slice_profile'))}").strip()

    def _onCancelled(self) -> None:
        self.ui.statusLabel.text = "Cancelled; the scene is unchanged."

    def _onError(self, exc, details: str) -> None:
        self.ui.statusLabel.text = "Failed; the scene is unchanged."
        slicer.util.errorDisplay(f"VolumetricSR failed: {exc}", detailedText=details)

    def onCompare(self) -> None:
        from VolumetricSRLib.scene import compare

        if self._lastResult:
            with slicer.util.tryWithErrorDisplay("Compare failed."):
                compare(*self._lastResult)

    def onImportModel(self) -> None:
        from VolumetricSRLib.modelstore import import_model

        path = qt.QFileDialog.getOpenFileName(slicer.util.mainWindow(), "Import a model card", "",
                                              "Model card (*.json)")
        if not path:
            return
        with slicer.util.tryWithErrorDisplay("The model could not be imported.", waitCursor=True):
            card = import_model(path)
            self._parameterNode.model = card.id
            self._fillModels()
            slicer.util.infoDisplay(f"Imported model {card.id}.")

    def onInstallDependencies(self) -> None:
        from VolumetricSRLib.dependencies import ALL, DependencyInstaller

        with slicer.util.tryWithErrorDisplay("Installing the Python packages failed.", waitCursor=True):
            installed = DependencyInstaller(interactive=True).ensure(ALL, ask_again=True)
            problem = self._loadTorchMethods()
            text = ("Installed: " + ", ".join(r.pip for r in installed) if installed
                    else "All VolumetricSR packages are already installed.")
            slicer.util.infoDisplay(text + (f"\nThe network methods do not load in this session ({problem}): "
                                            "restart Slicer." if problem else ""))
            self._fillMethods()
            self._fillDevices()
            self._updateGui()


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
    """Runs inside Slicer: MRHead made thick, super-resolved with B-spline, geometry and values checked."""

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

    def _thick(self, factor=4):
        """MRHead with every ``factor``-th slice along K: a thick-slice volume and its thin reference."""
        import SampleData
        from VolumetricSRLib import scene

        thin = SampleData.SampleDataLogic().downloadMRHead()
        volume = scene.volume_from_node(thin)
        k = volume.spacing[2] * factor
        thick = volume.with_array(volume.array[::factor].copy(), spacing=(*volume.spacing[:2], k))
        return thin, scene.create_output_node(thick, thin, "MRHead thick"), factor

    def test_bspline_geometry_and_values(self):
        import numpy as np

        thin, thick, factor = self._thick()
        out = VolumetricSRLogic().run(thick, method="bspline", spacing=thin.GetSpacing()[2])
        self.assertEqual(out.GetName(), "MRHead thick SR bspline")
        a_out = slicer.util.arrayFromVolume(out)
        n = slicer.util.arrayFromVolume(thick).shape[0]
        self.assertEqual(a_out.shape, ((n - 1) * factor + 1,) + slicer.util.arrayFromVolume(thin).shape[1:])
        np.testing.assert_allclose(out.GetOrigin(), thin.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(out.GetSpacing(), thin.GetSpacing(), rtol=1e-6)
        for ijk in ([0, 0, 0], [10, 20, a_out.shape[0] - 1]):      # same physical points as the thin original
            p_out, p_thin = [0, 0, 0, 1], [0, 0, 0, 1]
            m_out, m_thin = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
            out.GetIJKToRASMatrix(m_out)
            thin.GetIJKToRASMatrix(m_thin)
            m_out.MultiplyPoint(ijk + [1], p_out)
            m_thin.MultiplyPoint(ijk + [1], p_thin)
            np.testing.assert_allclose(p_out, p_thin, atol=1e-4)
        reference = slicer.util.arrayFromVolume(thin)[: a_out.shape[0]].astype(float)
        error = np.abs(a_out - reference).mean()
        self.assertLess(error, 0.25 * reference.std())
        self.delayDisplay(f"B-spline: mean absolute error {error:.2f} against the thin original")

    def test_trust_maps(self):
        import numpy as np

        thin, thick, factor = self._thick()
        results = {}
        out = VolumetricSRLogic().run(thick, method="sinc", spacing=thin.GetSpacing()[2], results=results,
                                      enforce_consistency=True, consistency_map=True, confidence_map=True)
        maps = results["map_nodes"]
        self.assertLess(results["consistency"]["rms"], 1e-2 * slicer.util.arrayFromVolume(thick).std())
        self.assertEqual(slicer.util.arrayFromVolume(maps["confidence_map"]).shape, slicer.util.arrayFromVolume(out).shape)
        self.assertEqual(slicer.util.arrayFromVolume(maps["consistency_map"]).shape,
                         slicer.util.arrayFromVolume(thick).shape)
        self.assertGreater(float(np.max(slicer.util.arrayFromVolume(maps["confidence_map"]))), 0.0)
        from VolumetricSRLib.scene import compare

        compare(thick, out, maps)
        self.delayDisplay(f"Consistency RMS after enforcing: {results['consistency']['rms']:.3g}; maps overlaid")

    def test_background_run_and_cancel(self):
        import time

        thin, thick, _ = self._thick()
        logic = VolumetricSRLogic()
        before = slicer.mrmlScene.GetNumberOfNodes()
        job = logic.prepare(thick, "sinc", 0.25)
        outcome = []
        task = logic.start(job, on_done=outcome.append, on_cancelled=lambda: outcome.append("cancelled"),
                           on_error=lambda e, tb: outcome.append(tb))
        task.cancel()
        deadline = time.time() + 60
        while task.poll() and time.time() < deadline:
            slicer.app.processEvents()
            time.sleep(0.02)
        self.assertEqual(outcome, ["cancelled"])
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)

    def test_tiny_model(self):
        """A tiny TVSRN (random weights, written as a model card in a temporary models folder) and a short
        self-supervised run, through the same logic the panel uses: network methods end to end."""
        import os
        import tempfile

        import numpy as np
        import torch
        from volumetricsr.compute.networks.tvsrn import TVSRN
        from volumetricsr.compute.export import write_model

        tiny = dict(factor=5, depth=4, channels=4, heads=2, window=4, group=4, tab_window=[2, 4],
                    enc_layers=1, tab_layers=1, dec_layers=1)
        previous = os.environ.get("VOLUMETRICSR_MODELS")
        with tempfile.TemporaryDirectory() as folder:
            os.environ["VOLUMETRICSR_MODELS"] = folder
            try:
                torch.manual_seed(0)
                write_model(folder, "selftest-tiny", TVSRN(**tiny).state_dict(), {
                    "method": "tvsrn", "architecture": {"name": "tvsrn", "args": tiny}, "native_factor": 5,
                    "modality": "CT", "normalization": {"kind": "window", "low": -1024, "high": 2048},
                    "training_data": "none: random weights for the self-test"})
                thin, thick, factor = self._thick(5)
                with self.assertRaisesRegex(Exception, "is a CT model"):     # MRHead is an MR volume
                    VolumetricSRLogic().run(thick, method="tvsrn", model="selftest-tiny", device="auto")
                out = VolumetricSRLogic().run(thick, method="tvsrn", model="selftest-tiny", device="auto",
                                              spacing=thin.GetSpacing()[2], window=(4, 64, 64), force=True)
                n = slicer.util.arrayFromVolume(thick).shape[0]
                self.assertEqual(slicer.util.arrayFromVolume(out).shape[0], (n - 1) * factor + 1)
                np.testing.assert_allclose(out.GetOrigin(), thick.GetOrigin(), atol=1e-4)
                self.assertTrue(np.isfinite(slicer.util.arrayFromVolume(out)).all())
                own = VolumetricSRLogic().run(thick, method="selfsr", device="auto", iterations=20)
                np.testing.assert_allclose(own.GetOrigin(), thick.GetOrigin(), atol=1e-4)
            finally:
                if previous is None:
                    os.environ.pop("VOLUMETRICSR_MODELS", None)
                else:
                    os.environ["VOLUMETRICSR_MODELS"] = previous
        self.delayDisplay("Tiny TVSRN and self-supervised runs passed")

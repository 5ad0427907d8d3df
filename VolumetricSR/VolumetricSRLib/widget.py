"""The modules' panels without their module files: the VolumetricSR panel (:class:`SuperResolutionPanel`)
and the plumbing both modules' widgets share (:class:`ParameterNodeWidgetMixin`).

A module file's widget class inherits its panel, ``ScriptedLoadableModuleWidget`` and
``VTKObservationMixin`` (in that order), and its ``setup`` calls the panel's ``setupPanel``.
"""
from __future__ import annotations

from typing import Optional

import qt
import slicer
import vtk

from .settings import BACKEND_TITLES, RunSettings, offered, per_method_options, settings_from


class ParameterNodeWidgetMixin:
    """Mix into a ``ScriptedLoadableModuleWidget`` that also uses ``VTKObservationMixin``, listed
    first among the bases. The widget provides ``self.logic.getParameterNode()``, ``self.ui`` and
    ``_updateGui()``; it sets ``_updating`` while it writes to the GUI itself."""

    _parameterNode = None
    _parameterNodeGuiTag = None
    _updating = False

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    @staticmethod
    def selectData(combo, value) -> None:
        """Show the item holding ``value`` (if any) without emitting a change."""
        index = combo.findData(value)
        if index >= 0 and index != combo.currentIndex:
            blocked = combo.blockSignals(True)
            combo.currentIndex = index
            combo.blockSignals(blocked)

    def storeData(self, field: str, combo) -> None:
        """The user picked an item: store its value in the parameter node's ``field``."""
        if self._parameterNode and not self._updating and combo.currentIndex >= 0:
            setattr(self._parameterNode, field, combo.itemData(combo.currentIndex))

    def declaredWidgets(self, settings_class, **by_hand) -> dict:
        """``{field: widget}`` of the settings of ``settings_class`` made from option declarations: the
        widgets bound to the parameter node (their ranges and choices come with it) and ``by_hand``
        (lists the panel fills). Each gets its option's help as tooltip."""
        ways = offered(settings_class)
        bound = {w.property("SlicerParameterName"): w for w in vars(self.ui).values()}
        widgets = {f: w for f, w in {**bound, **by_hand}.items() if f in ways}
        for f, w in widgets.items():
            w.toolTip = ways[f].tooltip
        return widgets

    def loadPanelUI(self, path: str):
        """The module's .ui (``Resources/<path>``) in its panel; its widgets as attributes."""
        uiWidget = slicer.util.loadUI(self.resourcePath(path))
        self.layout.addWidget(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        return slicer.util.childWidgetVariables(uiWidget)

    def pollTimer(self, interval_ms: int, poll):
        """A stopped timer that calls ``poll`` every ``interval_ms`` once started."""
        timer = qt.QTimer()
        timer.setInterval(interval_ms)
        timer.timeout.connect(poll)
        return timer

    # --- the run: one task at a time, polled by ``self._timer``; ``_setRunning`` shows it -------------
    _task = None

    def _begin(self, task) -> None:
        self._task = task
        self._setRunning(True)
        self._timer.start()

    def _cancelTask(self, status: str) -> None:
        if self._task is not None:
            self._task.cancel()
            self.ui.statusLabel.text = status

    def _poll(self) -> None:
        if self._task is None or not self._task.poll():
            self._timer.stop()
            self._task = None
            self._setRunning(False)


class SuperResolutionPanel(ParameterNodeWidgetMixin):
    """Panel: settings, Apply (background run with progress, ETA, Cancel), Compare."""

    def __init__(self) -> None:
        self.logic = None
        self._task = None
        self._lastResult = None
        self._coreError = ""
        self._runInput = None
        self._runJob = None
        self._modelsFor = None      # the method whose models the model list holds
        self._defaultMethod = ("", "")     # the method the panel chose (no user choice yet) and why

    # --- setup ---------------------------------------------------------------------------------
    def setupPanel(self, logic) -> None:
        """After ``ScriptedLoadableModuleWidget.setup``: load the .ui, connect it, fill the lists."""
        self.ui = self.loadPanelUI("UI/VolumetricSR.ui")
        self.logic = logic

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

        declared = self.declaredWidgets(RunSettings, backend=self.ui.backendComboBox, model=self.ui.modelComboBox)
        self._optionRows = {f: (w, getattr(self.ui, w.objectName + "Label", None)) for f, w in declared.items()}
        for value in offered()["backend"].choices:
            self.ui.backendComboBox.addItem(BACKEND_TITLES.get(value, value), value)
        self._fillMethods()
        self._fillDevices()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._dropTask()
        self.removeObservers()

    def _dropTask(self) -> None:
        """Stop the running task for good, with no callback: a child is asked to stop, killed if it
        has not ended a few seconds later, and its temporary folder removed; a run in this process
        stops at its next check. No run is left behind."""
        if self._task is not None:
            self._task.close()
            self._task = None

    def enter(self) -> None:
        ParameterNodeWidgetMixin.enter(self)
        self._fillModels()      # models trained or imported meanwhile appear here

    def onSceneStartClose(self, caller, event) -> None:
        if self._task is not None:   # its nodes are going away: stop it and ignore whatever it returns
            self._dropTask()
            self._timer.stop()
            self._setRunning(False)
        self._lastResult = None
        self.ui.compareButton.enabled = False
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if getattr(self.parent, "isEntered", True):    # a panel made without a parent is shown, with no isEntered
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        ParameterNodeWidgetMixin.initializeParameterNode(self)
        if not self._parameterNode.inputVolume:    # the first volume the input list can show
            from .scene import first_scalar_volume

            self._parameterNode.inputVolume = first_scalar_volume(slicer.mrmlScene)
        self._chooseDefaultMethod()

    def _chooseDefaultMethod(self) -> None:
        """No method chosen yet, or the one the panel chose: the panel's default (panel.default_method)."""
        from .panel import default_method

        p = self._parameterNode
        if p is None or self._coreError or p.method not in ("", self._defaultMethod[0]):
            return
        self._defaultMethod = default_method()
        p.method = self._defaultMethod[0]

    # --- combo boxes whose items are not fixed (synchronised by hand) --------------------------
    def _fillMethods(self) -> None:
        from .panel import method_items

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
        from .modelstore import method_model_choices

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
        from .devices import device_choices, gpu_notice

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
        from .panel import pending_methods

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
        from .modelstore import card_html

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
        from .modelstore import uses_models
        from .panel import geometry_summary, method_html, node_volume, pending_html, run_time_text
        from .sequences import sequence_of_proxy

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
            s = None if self._coreError else settings_from(p)
            sequence = sequence_of_proxy(p.inputVolume)       # the input is the frame a sequence browser shows
            self.ui.allFramesCheckBox.visible = sequence is not None
            if sequence is not None:
                self.ui.allFramesCheckBox.text = f"All {sequence.GetNumberOfDataNodes()} frames of {sequence.GetName()}"
            frames = sequence.GetNumberOfDataNodes() if sequence is not None and p.allFrames else 1
            if method is not None:
                why = self._defaultMethod[1] if p.method == self._defaultMethod[0] else ""
                time_text = run_time_text(method, node_volume(p.inputVolume), s.target_spacing, s.target_axis,
                                          frames)
                self.ui.methodDescriptionLabel.text = method_html(method, why, time_text)
            else:
                self.ui.methodDescriptionLabel.text = pending_html(p.method) if pending else self._coreError
            for w in (self.ui.modelLabel, self.ui.modelComboBox, self.ui.importModelButton, self.ui.modelCardLabel):
                w.visible = uses_models(method)
            self._showOptionsOf(method)
            self.ui.deviceComboBox.enabled = method is not None and method.uses_device
            self.ui.spacingSpinBox.enabled = not p.isotropic
            if s is not None:
                self.ui.geometryLabel.text = geometry_summary(p.inputVolume, s.target_spacing, s.target_axis)
            running = self._task is not None
            self.ui.applyButton.enabled = bool(p.inputVolume) and (method is not None or pending
                                                                   or bool(self._coreError)) and not running
            self.ui.applyButton.toolTip = "Run" if p.inputVolume else "Select an input volume"
        finally:
            self._updating = False

    def _showOptionsOf(self, method) -> None:
        """Show the rows of the options ``method`` takes (``method.options``), hide the others; a
        section of such rows is enabled while it shows one. The model list follows ``uses_models``."""
        takes, per_method = set(method.options) if method is not None else set(), per_method_options()
        shown = []
        for f, (widget, label) in self._optionRows.items():
            option = offered()[f].option.name
            if option in per_method and option != "model":
                for w in (widget, label) if label is not None else (widget,):
                    w.visible = option in takes
                if option in takes:
                    shown.append(widget)
        for section in (self.ui.advancedCollapsibleButton, self.ui.selfSupervisedCollapsibleButton):
            section.enabled = any(section.isAncestorOf(w) for w in shown)

    # --- actions ---------------------------------------------------------------------------------
    def onApply(self) -> None:
        p, pending = self._parameterNode, self._pendingMethods()
        with slicer.util.tryWithErrorDisplay("VolumetricSR could not start.", waitCursor=True):
            job = self.logic.prepare_from_settings(p.inputVolume, settings_from(p), output_node=p.outputVolume,
                                                   interactive=not slicer.app.commandOptions().noMainWindow)
            if self._coreError or pending != self._pendingMethods():
                self._fillMethods()  # dependencies were installed by prepare: list the methods now
                self._fillModels()
            self._runInput, self._runJob = p.inputVolume, job
            self.ui.warningLabel.text = "\n".join(f"Warning: {w}" for w in job.warnings)
            self._begin(self.logic.start(job, on_progress=self._onProgress, on_done=self._onDone,
                                         on_cancelled=self._onCancelled, on_error=self._onError))

    def onCancel(self) -> None:
        self._cancelTask("Cancelling...")

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
        from .runner import format_duration

        self.ui.progressBar.value = int(round(100 * fraction))
        left = f", about {format_duration(eta)} left" if eta is not None else ""
        self.ui.statusLabel.text = f"{message or 'Working'}{left}"

    def _onDone(self, node) -> None:
        from .panel import consistency_text, frames_text, profile_text
        from .sequences import is_sequence, shown_node

        results = self._runJob.results
        maps = results.get("map_nodes") or {}
        self._lastResult = (self._runInput, shown_node(node), {key: shown_node(m) for key, m in maps.items()})
        self.ui.compareButton.enabled = True
        frames = f" ({frames_text(node.GetNumberOfDataNodes(), results.get('trained_on'))})" if is_sequence(node) else ""
        self.ui.statusLabel.text = (f"Done: {node.GetName()}{frames}. {consistency_text(results.get('consistency'))} "
                                 f"{profile_text(results.get('slice_profile'))}").strip()

    def _onCancelled(self) -> None:
        self.ui.statusLabel.text = "Cancelled; the scene is unchanged."

    def _onError(self, exc, details: str) -> None:
        self.ui.statusLabel.text = "Failed; the scene is unchanged."
        slicer.util.errorDisplay(f"VolumetricSR failed: {exc}", detailedText=details)

    def onCompare(self) -> None:
        from .scene import compare

        if self._lastResult:
            with slicer.util.tryWithErrorDisplay("Compare failed."):
                compare(*self._lastResult)

    def onImportModel(self) -> None:
        from .modelstore import import_model

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
        from .dependencies import ALL, DependencyInstaller

        with slicer.util.tryWithErrorDisplay("Installing the Python packages failed.", waitCursor=True):
            installed = DependencyInstaller(interactive=True).ensure(ALL, ask_again=True)
            problem = self._loadTorchMethods()
            text = ("Installed: " + ", ".join(r.pip for r in installed) if installed
                    else "All VolumetricSR packages are already installed.")
            slicer.util.infoDisplay(text + (f"\nThe network methods do not load in this session ({problem}): "
                                            "restart Slicer." if problem else ""))
            self._fillMethods()
            self._fillDevices()
            self._chooseDefaultMethod()       # B-spline until PyTorch loaded: now the recommended one
            self._updateGui()

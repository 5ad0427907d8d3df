"""The modules' widgets, run on their real .ui files with PySide6 (skipped without it) and the stand-in.

Slicer's PythonQt exposes Qt properties as attributes (``button.enabled = False``);
``ui_preview.PythonQtStyle`` gives PySide6 widgets that access, so the widget code runs unchanged (the
``qt_slicer`` fixture, conftest.py). Timers are not started: the tests call the widgets' poll slots
themselves, as the QTimer would.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("PySide6.QtUiTools")

import slicer_standin  # noqa: E402
from conftest import make_volume  # noqa: E402
from test_slicer_scene import add_node  # noqa: E402

slicer = slicer_standin.install()

import VolumetricSR  # noqa: E402
import VolumetricSRTraining  # noqa: E402
from VolumetricSRLib.logic import SuperResolutionLogic  # noqa: E402
from VolumetricSRLib.settings import RunSettings, offered, per_method_options  # noqa: E402
from VolumetricSRTrainingLib.command import TrainingSettings  # noqa: E402
from volumetricsr.app.train_cli import COMMON_OPTIONS  # noqa: E402


def visible(w):
    return not w.isHidden()


def run_until_idle(poll, is_running, timeout=30.0):
    deadline = time.monotonic() + timeout
    while is_running():
        poll()
        assert time.monotonic() < deadline, "the run did not finish"
        time.sleep(0.01)


def open_module(name):
    """The module's widget as a user opening the module gets it: its panel made, set up and entered."""
    slicer.util.selectModule(name)
    return slicer.util.getModuleWidget(name)


def sr_widget():
    w = open_module("VolumetricSR")
    return w, w._parameterNode


def test_panel_follows_the_parameter_node(qt_slicer):
    node = add_node(make_volume(size_ijk=(20, 18, 8), spacing=(0.8, 0.8, 3.0)))
    w, p = sr_widget()
    assert p.inputVolume is node                       # the first volume is selected
    assert "Through-plane axis K: 8 slices at 3 mm" in w.ui.geometryLabel.text
    assert w.ui.methodComboBox.currentData == "selfsr" and w.ui.applyButton.enabled    # the recommended method
    p.method = "bspline"
    assert "B-spline" in w.ui.methodDescriptionLabel.text and not visible(w.ui.modelComboBox)
    p.method = "tvsrn"                                 # a network method: model, device and backend appear
    assert w.ui.methodComboBox.currentData == "tvsrn" and visible(w.ui.modelComboBox)
    assert w.ui.modelComboBox.currentData == "tvsrn-ct-x5" == p.model      # the shipped model, its card shown
    assert "tvsrn-ct-x5.json" in w.ui.modelCardLabel.text and "val_psnr" in w.ui.modelCardLabel.text
    assert w.ui.advancedCollapsibleButton.enabled and w.ui.backendComboBox.enabled
    p.method, p.isotropic, p.spacing = "linear", False, 1.0
    assert "-> 22 slices at 1 mm" in w.ui.geometryLabel.text and w.ui.spacingSpinBox.enabled
    assert not w.ui.deviceComboBox.enabled
    w.ui.methodComboBox.currentIndex = w.ui.methodComboBox.findData("sinc")   # the user picks a method
    assert p.method == "sinc"


def test_the_panel_opens_on_the_recommended_method_and_says_why_and_how_long(qt_slicer, monkeypatch):
    """Where PyTorch loads, the panel opens on selfsr; before, on B-spline, and Install dependencies
    moves it to selfsr unless the user chose a method. The method line says why, and about how long
    a run of the input takes."""
    from volumetricsr import methods

    add_node(make_volume(size_ijk=(64, 64, 10), spacing=(0.8, 0.8, 4.0)))
    w, p = sr_widget()
    text = w.ui.methodDescriptionLabel.text
    assert p.method == "selfsr" == w.ui.methodComboBox.currentData
    assert "recommended" in text and "Time:" in text and "about" in text
    w.ui.methodComboBox.currentIndex = w.ui.methodComboBox.findData("sinc")     # the user's choice: no reason
    assert p.method == "sinc" and "recommended" not in w.ui.methodDescriptionLabel.text
    assert "Time:" in w.ui.methodDescriptionLabel.text

    slicer_standin.reset()
    add_node(make_volume(size_ijk=(64, 64, 10), spacing=(0.8, 0.8, 4.0)))
    monkeypatch.setattr(methods, "TORCH_PROBLEM", "ModuleNotFoundError: No module named 'torch'")
    w, p = sr_widget()
    assert p.method == "bspline" and "needs PyTorch" in w.ui.methodDescriptionLabel.text
    w.onInstallDependencies()              # everything is there: PyTorch loads in this session now
    assert p.method == "selfsr" and "recommended" in w.ui.methodDescriptionLabel.text


def declared_widgets(ui, cls=RunSettings) -> dict:
    """``{field: widget}`` of the panel's settings made from option declarations (bound to the
    parameter node by ``SlicerParameterName``, or, the backend, filled by the panel)."""
    ways = offered(cls)
    bound = {w.property("SlicerParameterName"): w for w in vars(ui).values()}
    return {f: w for f, w in {**bound, "backend": getattr(ui, "backendComboBox", None)}.items() if f in ways}


def test_the_panels_offer_every_setting_as_declared(qt_slicer):
    """At setup each spin box gets the declared range and each combo box the declared choices (from the
    parameter node, as Slicer's GUI connectors give them), and each widget the declared help."""
    w, _ = sr_widget()
    widgets, ways = declared_widgets(w.ui), offered()
    assert set(widgets) == set(ways) - {"model"}            # the model list: the method's models
    for field, widget in widgets.items():
        way = ways[field]
        assert widget.toolTip == way.tooltip, field
        if way.range:
            assert (widget.minimum, widget.maximum) == pytest.approx(way.range), field
        elif way.choices:
            items = [widget.itemData(i) or widget.itemText(i) for i in range(widget.count)]
            assert items == list(way.choices), field
    assert (w.ui.seedSpinBox.minimum, w.ui.seedSpinBox.maximum) == (0, 2**32 - 1)      # the core's seeds, all
    t = open_module("VolumetricSRTraining")
    epochs = COMMON_OPTIONS["epochs"].rule
    assert (t.ui.epochsSpinBox.minimum, t.ui.epochsSpinBox.maximum) == (epochs.low, epochs.high)
    assert t.ui.epochsSpinBox.toolTip == offered(TrainingSettings)["epochs"].tooltip


def test_the_panel_shows_the_options_each_method_takes(qt_slicer):
    """A method's option rows are shown when it takes the option (``Method.options``), and a section
    of them is enabled while it shows one: ctguided was offered backend, window and overlap, which it
    then dropped."""
    from volumetricsr import available_methods

    add_node(make_volume())
    w, p = sr_widget()
    rows = {f: widget for f, widget in declared_widgets(w.ui).items()
            if offered()[f].option.name in per_method_options()}
    assert {"backend", "windowSlices", "batchSize", "budget", "stride"} <= set(rows)
    for method in available_methods():
        p.method = method.name
        for field, widget in rows.items():
            assert visible(widget) == (offered()[field].option.name in method.options), (method.name, field)
    p.method = "ctguided"
    assert visible(w.ui.batchSizeSpinBox) and not visible(w.ui.backendComboBox) and not visible(w.ui.overlapSlicesSpinBox)
    assert not visible(w.ui.backendComboBoxLabel) and w.ui.advancedCollapsibleButton.enabled
    assert not w.ui.selfSupervisedCollapsibleButton.enabled
    p.method = "bspline"
    assert not w.ui.advancedCollapsibleButton.enabled and not w.ui.selfSupervisedCollapsibleButton.enabled
    p.method = "clade"
    assert visible(w.ui.strideSpinBox) and w.ui.selfSupervisedCollapsibleButton.enabled


def test_the_bound_widgets_and_the_parameter_node_follow_each_other(qt_slicer):
    """connectGui binds as Slicer's GUI connectors do (slicer/parameterNodeWrapper/wrapper.py): each widget
    named by SlicerParameterName shows its field at once, a change in the widget sets the field, and a
    change of the node refills the widgets; after disconnectGui neither follows the other."""
    node = add_node(make_volume())
    w, p = sr_widget()
    assert w.ui.inputSelector.currentNode() is node and w.ui.isotropicCheckBox.checked
    w.ui.isotropicCheckBox.checked = False            # the user's clicks
    w.ui.spacingSpinBox.value = 1.5
    w.ui.axisComboBox.currentIndex = w.ui.axisComboBox.findText("K")
    w.ui.iterationsSpinBox.value = 250
    assert (p.isotropic, p.spacing, p.axis, p.iterations) == (False, 1.5, "K", 250)
    assert w.ui.spacingSpinBox.enabled                # the panel's own update ran too
    p.spacing, p.sliceProfile, p.force = 2.0, "rect", True
    assert (w.ui.spacingSpinBox.value, w.ui.sliceProfileComboBox.currentText, w.ui.forceCheckBox.checked) == \
        (2.0, "rect", True)
    other = add_node(make_volume(), name="other")
    w.ui.inputSelector.setCurrentNode(other)
    assert p.inputVolume is other
    w.exit()                                          # the user leaves the module: disconnectGui
    w.ui.spacingSpinBox.value = 3.0
    p.force = False
    assert p.spacing == 2.0 and w.ui.forceCheckBox.checked


def test_a_panel_made_without_a_parent_works(qt_slicer):
    """In Slicer a module widget made without a parent calls setup() itself, from its base class's
    __init__ (ScriptedLoadableModule.py): the panels' own state must be set before that, or it wipes
    the logic setup made; and Close Scene must not need the module panel's isEntered."""
    node = add_node(make_volume())
    w = VolumetricSR.VolumetricSRWidget()
    assert len(w.layout.widgets) == 1 and w.logic is not None and w._parameterNode.inputVolume is node
    w._parameterNode.method = "linear"
    w.onApply()
    run_until_idle(w._poll, lambda: w._task is not None)
    assert w.ui.statusLabel.text.startswith("Done: thick SR linear")
    slicer.mrmlScene.Clear(0)
    assert w._parameterNode is not None and w._parameterNode.inputVolume is None
    t = VolumetricSRTraining.VolumetricSRTrainingWidget()
    assert len(t.layout.widgets) == 1 and t.logic is not None and t.ui.methodComboBox.count > 0


def test_the_default_input_is_never_a_volume_the_input_list_cannot_show(qt_slicer):
    """Vector, DWI and DTI volumes are scalar-volume subclasses in Slicer: loaded first, they were the
    default input, which the input list (plain scalar volumes) could not show."""
    for cls in ("vtkMRMLDiffusionWeightedVolumeNode", "vtkMRMLVectorVolumeNode"):
        slicer.mrmlScene.AddNewNodeByClass(cls, cls)
    node = add_node(make_volume(size_ijk=(20, 18, 8), spacing=(0.8, 0.8, 3.0)))
    _, p = sr_widget()
    assert p.inputVolume is node


def test_apply_runs_in_the_background_then_compare(qt_slicer):
    node = add_node(make_volume())
    w, p = sr_widget()
    p.method = "linear"
    w.onApply()
    assert visible(w.ui.cancelButton) and not visible(w.ui.applyButton) and visible(w.ui.progressBar)
    assert not w.ui.inputsCollapsibleButton.enabled
    run_until_idle(w._poll, lambda: w._task is not None)
    out = slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")[-1]
    assert out.GetName() == "thick SR linear"
    assert w.ui.statusLabel.text.startswith("Done: thick SR linear. Consistency with the acquired slices: RMS ")
    assert visible(w.ui.applyButton) and not visible(w.ui.cancelButton) and w.ui.inputsCollapsibleButton.enabled
    assert w.ui.compareButton.enabled
    w.onCompare()
    red = slicer.app.layoutManager().sliceWidget("Red").composite
    assert red.background == node.GetID() and red.linked


def test_the_trust_checkboxes_make_maps_beside_the_result_and_compare_overlays_them(qt_slicer):
    node = add_node(make_volume())
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    folder = sh.CreateFolderItem(1, "study")
    sh.SetItemParent(sh.GetItemByDataNode(node), folder)
    w, p = sr_widget()
    p.method = "sinc"
    for box, field in ((w.ui.enforceConsistencyCheckBox, "enforceConsistency"),
                       (w.ui.consistencyMapCheckBox, "consistencyMap"), (w.ui.confidenceMapCheckBox, "confidenceMap")):
        assert box.property("SlicerParameterName") == field     # bound to the field (connectGui, in Slicer)
        setattr(p, field, True)                                 # what ticking it does there
    w.onApply()
    run_until_idle(w._poll, lambda: w._task is not None)
    volumes = {n.GetName(): n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")}
    out, check, spread = (volumes[f"thick SR sinc{s}"] for s in ("", " consistency", " confidence"))
    assert all(sh.GetItemParent(sh.GetItemByDataNode(n)) == folder for n in (out, check, spread))
    assert slicer.util.arrayFromVolume(check).shape == slicer.util.arrayFromVolume(node).shape     # acquired grid
    assert slicer.util.arrayFromVolume(spread).shape == slicer.util.arrayFromVolume(out).shape
    assert np.abs(slicer.util.arrayFromVolume(check)).max() < 1e-2 * np.ptp(slicer.util.arrayFromVolume(node))
    assert spread.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeFileInferno.txt"
    assert check.GetDisplayNode().GetLevel() == 0.0      # a signed map: symmetric about 0
    legends = {n.primary: n.title for n in slicer.util.getNodesByClass("vtkMRMLColorLegendDisplayNode")}
    assert legends[spread.GetDisplayNode()] == "spread of the predictions"
    assert "RMS" in w.ui.statusLabel.text and "Slice profile " in w.ui.statusLabel.text   # what enforcement used
    w.onCompare()
    widgets = slicer.app.layoutManager().widgets
    assert widgets["Red"].composite.foreground == check.GetID() and widgets["Red"].composite.background == node.GetID()
    assert widgets["Yellow"].composite.foreground == spread.GetID() and widgets["Yellow"].composite.foreground_opacity == 0.5
    from VolumetricSRLib.scene import compare

    compare(node, out, {"consistency_map": check})        # the only map: over the result
    assert widgets["Yellow"].composite.foreground == check.GetID() and widgets["Red"].composite.foreground is None
    compare(node, out)                                     # no maps: no overlays
    assert widgets["Yellow"].composite.foreground is None and widgets["Yellow"].composite.foreground_opacity == 0


def test_cancel_and_failure_leave_the_scene_unchanged(qt_slicer, monkeypatch):
    """An interpolation runs in Slicer's main thread, events processed between its progress reports:
    a Cancel clicked then stops it."""
    add_node(make_volume())
    w, p = sr_widget()

    def slow(job, progress=None, cancel=None):
        while True:
            progress(0.5, "working")
            job.cancel.raise_if_cancelled()

    clicks = [w.onCancel]
    monkeypatch.setattr(slicer.app, "processEvents", lambda: clicks and clicks.pop()())   # the click, processed
    monkeypatch.setattr(SuperResolutionLogic, "compute", staticmethod(slow))
    p.method = "linear"
    before = list(slicer.mrmlScene.nodes)
    w.onApply()
    assert w.ui.statusLabel.text == "Starting..."
    w._poll()                                     # the timer's first tick runs it
    assert w.ui.statusLabel.text == "Cancelled; the scene is unchanged." and slicer.mrmlScene.nodes == before
    assert w._task is None and visible(w.ui.applyButton)

    def broken(job, progress=None, cancel=None):
        raise MemoryError("not enough memory for 900 slices")

    monkeypatch.setattr(SuperResolutionLogic, "compute", staticmethod(broken))
    w.onApply()
    run_until_idle(w._poll, lambda: w._task is not None)
    assert w.ui.statusLabel.text == "Failed; the scene is unchanged." and slicer.mrmlScene.nodes == before
    assert any(c[0] == "errorDisplay" and "900 slices" in c[1] for c in slicer.util.calls)


def test_bad_settings_are_reported_and_nothing_starts(qt_slicer):
    add_node(make_volume())
    w, p = sr_widget()
    p.isotropic, p.spacing = False, 10.0               # coarser than the 3 mm slices
    with pytest.raises(Exception, match="coarser"):
        w.onApply()
    assert w._task is None and any(c[0] == "errorDisplay" for c in slicer.util.calls)


def test_in_testing_mode_the_panel_logs_errors_and_waits_for_no_click(qt_slicer, monkeypatch, caplog):
    """Slicer --testing (ctest): tryWithErrorDisplay and errorDisplay show no dialog a user would have to
    close (Base/Python/slicer/util.py); the panel's errors are in the log instead."""
    monkeypatch.setattr(slicer.app, "testing", True)
    add_node(make_volume())
    w, p = sr_widget()
    p.isotropic, p.spacing = False, 10.0
    with pytest.raises(Exception, match="coarser"):
        w.onApply()

    def broken(job, progress=None, cancel=None):
        raise MemoryError("not enough memory for 900 slices")

    monkeypatch.setattr(SuperResolutionLogic, "compute", staticmethod(broken))
    p.isotropic, p.method = True, "linear"
    w.onApply()
    run_until_idle(w._poll, lambda: w._task is not None)
    assert w.ui.statusLabel.text == "Failed; the scene is unchanged." and slicer.util.calls == []
    assert "VolumetricSR failed: not enough memory for 900 slices" in caplog.text


def test_closing_the_scene_drops_a_running_task(qt_slicer, monkeypatch):
    """Close Scene, processed between two progress reports of an interpolation: it stops there, and
    nothing it computed reaches the new scene."""
    add_node(make_volume())
    w, p = sr_widget()
    closes = [lambda: slicer.mrmlScene.Clear(0)]
    monkeypatch.setattr(slicer.app, "processEvents", lambda: closes and closes.pop()())
    p.method = "linear"
    w.onApply()
    task = w._task
    w._poll()
    assert w._task is None and visible(w.ui.applyButton) and not w._timer.isActive()
    assert task.cancel_token.cancelled and task.finished and not closes
    assert slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode") == []
    assert "Done" not in w.ui.statusLabel.text


def apply_a_long_child_run():
    """Apply, on the panel's input, a selfsr run that would last for hours, polled as the panel's timer
    does until its child process has said its PID; (widget, task)."""
    w, p = sr_widget()
    p.method, p.iterations = "selfsr", 100000
    w.onApply()
    task = w._task
    deadline = time.monotonic() + 60
    while task.child.child_pid is None and time.monotonic() < deadline:
        w._poll()
        time.sleep(0.02)
    assert task.child.child_pid is not None, "the child did not start"
    return w, task


def test_close_scene_during_a_child_run_stops_the_child_and_removes_its_files(qt_slicer):
    """File > Close Scene (the scene's Clear: its close events) while a child process runs: the child
    is stopped at once, not left to run until Slicer exits, its temporary folder is removed, and the
    panel is ready for the next scene."""
    import os

    add_node(make_volume(size_ijk=(40, 40, 8), spacing=(1.0, 1.0, 4.0)))
    w, task = apply_a_long_child_run()
    pid, folder = task.child.child_pid, task.folder
    assert folder.is_dir()
    slicer.mrmlScene.Clear(0)
    assert not folder.exists() and w._task is None and not w._timer.isActive() and visible(w.ui.applyButton)
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert w._parameterNode is not None and w._parameterNode.inputVolume is None   # the new, empty scene


FAKE = '''
import argparse, sys, time
from volumetricsr.common.progress import event_line
p = argparse.ArgumentParser()
for a in ("--method", "--data", "--out", "--device", "--epochs", "--models-dir", "--workdir"):
    p.add_argument(a)
p.add_argument("--resume", action="store_true")
p.add_argument("--progress-json", action="store_true")
a = p.parse_args()
print("reading", a.data, flush=True)
for s in range(1, 4):
    print(event_line("step", step=s, total=3, fraction=s / 3, loss=1.0 / s, eta=3 - s), flush=True)
'''


def test_training_panel_runs_the_trainer(qt_slicer, monkeypatch, tmp_path):
    import VolumetricSRTrainingLib.command as command

    script = tmp_path / "train.py"
    script.write_text(FAKE)
    monkeypatch.setattr(command, "TRAIN_SCRIPT_CANDIDATES", (script,))
    w = open_module("VolumetricSRTraining")
    p = w._parameterNode
    assert w.ui.methodComboBox.currentData == "tvsrn" and not w.ui.startButton.enabled
    w.ui.dataPathLineEdit.currentPath = str(tmp_path)          # the user picks the data folder
    p.modelId = "tvsrn-mine"
    assert p.dataPath == str(tmp_path) and w.ui.startButton.enabled
    w.onStart()
    assert w.ui.stopButton.enabled and not w.ui.settingsCollapsibleButton.enabled
    run_until_idle(w._poll, lambda: w._task is not None)
    assert w.ui.statusLabel.text.startswith("Model tvsrn-mine trained")
    assert w.ui.progressBar.value == 100 and "reading" in w.ui.logTextEdit.toPlainText()
    table = slicer.util.getNodesByClass("vtkMRMLTableNode")[0]
    assert list(table.columns["loss"]) == [1.0, 0.5, 1.0 / 3]
    assert w.ui.startButton.enabled and not w.ui.stopButton.enabled


def test_fitness_warnings_are_shown_in_the_panel(qt_slicer, monkeypatch):
    add_node(make_volume())
    w, p = sr_widget()
    p.method = "linear"
    original = SuperResolutionLogic.prepare_from_settings

    def with_note(self, *args, **kwargs):
        job = original(self, *args, **kwargs)
        job.warnings = ["The slices are 8 mm apart, but model m was trained on slices 5 mm apart."]
        return job

    monkeypatch.setattr(SuperResolutionLogic, "prepare_from_settings", with_note)
    w.onApply()
    run_until_idle(w._poll, lambda: w._task is not None)
    assert w.ui.warningLabel.text == "Warning: The slices are 8 mm apart, but model m was trained on slices 5 mm apart."

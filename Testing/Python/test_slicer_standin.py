"""The stand-in itself behaves as Slicer does where the modules rely on it (issue 29, item 9); each
test names the Slicer source it follows (see slicer_standin/README.md)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import numpy as np
import pytest

import slicer_standin
from conftest import make_volume

slicer = slicer_standin.install()

from slicer.ScriptedLoadableModule import vtkMRMLScriptedModuleNode  # noqa: E402
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper  # noqa: E402
from VolumetricSRLib.logic import SuperResolutionLogic  # noqa: E402
from VolumetricSRTrainingLib.plot import LossPlot  # noqa: E402


@pytest.fixture(autouse=True)
def clean_scene():
    slicer_standin.reset()
    yield
    slicer_standin.reset()


def test_generate_unique_name_never_gives_a_name_twice():
    """vtkMRMLScene::GenerateUniqueName remembers the last index per base name (UniqueNames), so a name
    is not given again even when no node took it; Clear forgets them (Libs/MRML/Core/vtkMRMLScene.cxx)."""
    scene = slicer.mrmlScene
    assert scene.GenerateUniqueName("out") == "out"
    assert scene.GenerateUniqueName("out") == "out_1"          # no node named "out": still not reused
    scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "out_2")
    assert scene.GenerateUniqueName("out") == "out_3"          # and names in the scene are skipped
    scene.Clear()
    assert scene.GenerateUniqueName("out") == "out"


def test_the_modules_output_names_are_unique_across_runs():
    """Each run names its output once through GenerateUniqueName; a removed output's name is not reused."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "thick")
    v = make_volume()
    node.ijk_to_ras = np.diag(list(v.spacing) + [1.0])
    slicer.util.updateVolumeFromArray(node, v.array)
    first = SuperResolutionLogic().run(node, "linear", show=False)
    assert first.GetName() == "thick SR linear"
    slicer.mrmlScene.RemoveNode(first)
    second = SuperResolutionLogic().run(node, "linear", show=False)
    assert second.GetName() == "thick SR linear_1"


def test_vector_volumes_are_tensor_volumes():
    """vtkMRMLVectorVolumeNode.h: class vtkMRMLVectorVolumeNode : public vtkMRMLTensorVolumeNode."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    assert node.IsA("vtkMRMLTensorVolumeNode") and node.IsA("vtkMRMLScalarVolumeNode")
    assert node in slicer.util.getNodesByClass("vtkMRMLTensorVolumeNode")


def test_plot_type_scatter_is_slicers_value_and_the_loss_plot_uses_it():
    """vtkMRMLPlotSeriesNode.h: enum { PlotTypeLine, PlotTypeBar, PlotTypeScatter, PlotTypeScatterBar }."""
    series = slicer.vtkMRMLPlotSeriesNode
    assert (series.PlotTypeLine, series.PlotTypeBar, series.PlotTypeScatter, series.PlotTypeScatterBar) == (0, 1, 2, 3)
    assert LossPlot("tvsrn-mine").series.plot_type == 2


def test_update_volume_from_array_takes_1d_2d_and_4d_arrays_as_slicer_does():
    """Base/Python/slicer/util.py updateVolumeFromArray: 1-D is a line, 2-D a slice (single-slice volumes,
    float64), 4-D [k, j, i, c] has c components per voxel; 5-D is refused."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "v")
    slicer.util.updateVolumeFromArray(node, np.arange(5, dtype=np.int16))
    assert node.GetImageData().GetDimensions() == (5, 1, 1)
    assert slicer.util.arrayFromVolume(node).dtype == np.float64
    slicer.util.updateVolumeFromArray(node, np.ones((4, 5), np.float32))
    assert node.GetImageData().GetDimensions() == (5, 4, 1)
    slicer.util.updateVolumeFromArray(node, np.ones((3, 4, 5, 3), np.uint8))
    assert node.GetImageData().GetDimensions() == (5, 4, 3)
    assert node.GetImageData().GetNumberOfScalarComponents() == 3
    with pytest.raises(RuntimeError, match="Unsupported numpy array shape"):
        slicer.util.updateVolumeFromArray(node, np.ones((1, 2, 3, 4, 5)))


def test_a_scalar_volume_with_several_components_per_voxel_is_refused():
    """Found by the stricter stand-in: a scalar volume node may hold a color image (4-D array); the glue
    handed it to the methods as a 4-D volume. It is refused like a vector volume now."""
    from volumetricsr import InputError

    from VolumetricSRLib import scene

    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "rgb")
    slicer.util.updateVolumeFromArray(node, np.ones((3, 4, 5, 3), np.uint8))
    with pytest.raises(InputError, match="3 values per voxel"):
        scene.volume_from_node(node)
    slicer.util.updateVolumeFromArray(node, np.ones((3, 4, 5), np.float32))
    assert scene.volume_from_node(node).array.shape == (3, 4, 5)


def test_try_with_error_display_shows_no_dialog_in_testing_mode(monkeypatch):
    """Base/Python/slicer/util.py tryWithErrorDisplay: ``if show and not slicer.app.testingEnabled()``
    it shows the error; it always re-raises."""
    for testing, show, shown in ((False, True, True), (True, True, False), (False, False, False)):
        monkeypatch.setattr(slicer.app, "testing", testing)
        slicer.util.calls.clear()
        with pytest.raises(ValueError):
            with slicer.util.tryWithErrorDisplay("It failed.", show=show):
                raise ValueError("bad")
        assert (("errorDisplay", "It failed.\n\nbad") in slicer.util.calls) is shown


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
@pytest.mark.parametrize("extra, ok", [("WITH_GENERIC_TESTS", True), ("WITH_GENERIC_TEST", False), ("", True)])
def test_the_cmake_macro_rejects_unknown_keywords(tmp_path, extra, ok):
    """CMake/SlicerMacroBuildScriptedModule.cmake: unparsed arguments are a FATAL_ERROR (a misspelt
    keyword would otherwise be ignored silently; after SCRIPTS it would be taken as a file, which the
    stand-in reports as a missing file, Slicer at build time)."""
    use_slicer = Path(slicer_standin.__file__).parent / "cmake" / "UseSlicer.cmake"
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "M.py").write_text("")
    (tmp_path / "src" / "CMakeLists.txt").write_text(
        f'cmake_minimum_required(VERSION 3.16)\nproject(M NONE)\ninclude("{use_slicer.as_posix()}")\n'
        f"slicerMacroBuildScriptedModule(NAME M {extra} SCRIPTS M.py)\n")
    proc = subprocess.run(["cmake", "-S", str(tmp_path / "src"), "-B", str(tmp_path / "build")],
                          capture_output=True, text=True, timeout=120)
    assert (proc.returncode == 0) is ok, proc.stdout + proc.stderr
    if not ok:
        assert "Unknown keywords given to slicerMacroBuildScriptedModule()" in proc.stderr


def test_a_widget_made_without_a_parent_sets_itself_up_and_shows():
    """Base/Python/slicer/ScriptedLoadableModule.py ScriptedLoadableModuleWidget.__init__: without a parent
    it makes one (a qMRMLWidget with a layout), calls self.setup() and shows it; with one (the module
    panel, qSlicerScriptedLoadableModuleWidget) the layout is the panel's and the panel calls setup."""
    from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget, qSlicerScriptedLoadableModuleWidget

    class CountingWidget(ScriptedLoadableModuleWidget):
        def setup(self):
            ScriptedLoadableModuleWidget.setup(self)
            self.setups = getattr(self, "setups", 0) + 1

    alone = CountingWidget()
    assert alone.setups == 1 and alone.parent.visible and alone.layout is alone.parent.layout()
    assert alone.moduleName == "Counting" and not hasattr(alone.parent, "isEntered")
    panel = qSlicerScriptedLoadableModuleWidget()
    panel.setPythonSource(CountingWidget)
    assert not hasattr(panel.self(), "setups") and panel.self().layout is panel.layout()
    panel.setup()
    assert panel.self().setups == 1


def test_parameter_node_fields_are_validated_when_set():
    """slicer/parameterNodeWrapper (validators.py, serializers.py): a value is checked before it is
    written (the type's NotNone and IsInstance: TypeError; WithinRange, Choice: ValueError), defaults
    included; a rejected value leaves the node as it was; numbers are read back as the field's type."""
    @parameterNodeWrapper
    class Parameters:
        count: Annotated[int, WithinRange(0, 10)] = 3
        size: Annotated[float, WithinRange(0.5, 2.0)] = 1
        kind: Annotated[str, Choice(["a", "b"])] = "a"
        flag: bool
        volume: slicer.vtkMRMLScalarVolumeNode

    node = vtkMRMLScriptedModuleNode("Test")
    p = Parameters(node)
    assert (p.count, p.size, p.kind, p.flag, p.volume) == (3, 1.0, "a", False, None) and isinstance(p.size, float)
    heard = []
    node.observers.append(lambda caller, event: heard.append(event))
    for field, value, error in (("count", 11, ValueError), ("count", 2.0, TypeError), ("size", 0.1, ValueError),
                                ("kind", "c", ValueError), ("kind", None, ValueError), ("flag", 1, TypeError),
                                ("volume", "vtkMRMLScalarVolumeNode1", TypeError)):
        with pytest.raises(error):
            setattr(p, field, value)
    assert (p.count, p.size, p.kind, p.flag, p.volume) == (3, 1.0, "a", False, None) and heard == []
    p.count, p.kind = 10, "b"
    assert (p.count, p.kind) == (10, "b") and heard == ["ModifiedEvent"] * 2

    @parameterNodeWrapper
    class BadDefault:
        count: Annotated[int, WithinRange(1, 10)] = 0

    with pytest.raises(ValueError, match="within range"):
        BadDefault(vtkMRMLScriptedModuleNode("Bad"))


def test_ctest_runs_the_self_tests_in_testing_mode(tmp_path, monkeypatch):
    """ctest runs ``Slicer --testing --python-code "slicer.testing.runUnitTest(...)"``
    (CMake/SlicerMacroPythonTesting.cmake): every test sees slicer.app.testingEnabled() True."""
    import sys

    import slicer.testing

    (tmp_path / "standin_testing_probe.py").write_text(
        "import unittest\nimport slicer\nseen = []\n\n"
        "class ProbeTest(unittest.TestCase):\n"
        "    def test_mode(self):\n        seen.append(slicer.app.testingEnabled())\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    slicer.testing.runUnitTest([str(tmp_path)], "standin_testing_probe")
    assert sys.modules.pop("standin_testing_probe").seen == [True] and not slicer.app.testingEnabled()


def test_message_boxes_in_testing_mode_and_without_a_main_window(monkeypatch, caplog):
    """Base/Python/slicer/util.py _messageDisplay: the text is always logged; in testing mode nothing is
    shown and ``testingReturnValue`` is returned, which confirmOkCancelDisplay/confirmYesNoDisplay then
    compare with qt.QMessageBox.Ok/Yes (True == 0x400 is False); without a main window errorDisplay,
    warningDisplay and infoDisplay only log, while a confirmation still asks."""
    import logging

    caplog.set_level(logging.INFO)
    monkeypatch.setattr(slicer.util, "confirm_answer", True)
    shown = {"errorDisplay": slicer.util.errorDisplay, "warningDisplay": slicer.util.warningDisplay,
             "infoDisplay": slicer.util.infoDisplay}
    monkeypatch.setattr(slicer.app, "testing", True)
    for kind, display in shown.items():
        display(f"{kind} text")
    assert not slicer.util.confirmOkCancelDisplay("Install?") and not slicer.util.confirmYesNoDisplay("Restart?")
    assert slicer.util.calls == []
    levels = {r.getMessage(): r.levelno for r in caplog.records}
    assert (levels["errorDisplay text"], levels["warningDisplay text"], levels["infoDisplay text"]) == \
        (logging.ERROR, logging.WARNING, logging.INFO) and "Install?" in levels
    monkeypatch.setattr(slicer.app, "testing", False)
    monkeypatch.setattr(type(slicer.app.commandOptions()), "noMainWindow", True)
    for kind, display in shown.items():
        display(f"{kind} text")
    assert slicer.util.calls == [] and slicer.util.confirmOkCancelDisplay("Install?")
    assert slicer.util.calls == [("confirmOkCancelDisplay", "Install?")]
    monkeypatch.setattr(type(slicer.app.commandOptions()), "noMainWindow", False)
    monkeypatch.setattr(slicer.util, "confirm_answer", False)
    assert not slicer.util.confirmYesNoDisplay("Restart?")
    slicer.util.errorDisplay("It failed.")
    assert slicer.util.calls[1:] == [("confirmYesNoDisplay", "Restart?"), ("errorDisplay", "It failed.")]

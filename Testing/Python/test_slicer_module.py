"""The module files against the stand-in: they import, the console API works, and the parameter
nodes' fields and defaults match the settings the Lib packages use."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import slicer_standin
from conftest import make_volume
from test_slicer_scene import add_node

slicer = slicer_standin.install()

import VolumetricSR  # noqa: E402
import VolumetricSRTraining  # noqa: E402
from VolumetricSRLib.settings import RunSettings, settings_from  # noqa: E402
from VolumetricSRTrainingLib.command import TrainingSettings  # noqa: E402


@pytest.fixture(autouse=True)
def clean_scene():
    slicer_standin.reset()


def test_loading_the_modules_does_not_import_the_core():
    """Slicer imports every module file at startup: the core (and PyTorch, which it tries) is imported
    only when a module is used."""
    import subprocess
    import sys

    code = ("import sys, slicer_standin; slicer_standin.install(); import VolumetricSR, VolumetricSRTraining; "
            "print(sorted(m for m in ('volumetricsr', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=slicer_standin.HERE.parent, capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_console_api_returns_the_new_node():
    node = add_node(make_volume(size_ijk=(16, 14, 6), spacing=(0.9, 0.9, 4.5)))
    out = VolumetricSR.VolumetricSRLogic().run(node, method="bspline", spacing=1.5, device="auto")
    assert out.GetName() == "thick SR bspline"
    assert slicer.util.arrayFromVolume(out).shape == (16, 14, 16)
    assert np.allclose(np.linalg.norm(out.ijk_to_ras[:3, 2]), 1.5)


def test_batch_example_from_the_readme():
    for i in range(2):
        add_node(make_volume(seed=i), name=f"case{i}")
    logic = VolumetricSR.VolumetricSRLogic()
    for node in list(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")):
        logic.run(node, method="linear", spacing=1.0, show=False)
    names = sorted(n.GetName() for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"))
    assert names == ["case0", "case0 SR linear", "case1", "case1 SR linear"]


def test_parameter_node_defaults_are_the_run_settings_defaults():
    params = VolumetricSR.VolumetricSRLogic().getParameterNode()
    assert settings_from(params) == RunSettings()
    assert {f.name for f in dataclasses.fields(RunSettings)} <= set(type(params).fields)
    assert params.inputVolume is None and params.outputVolume is None


def test_training_parameter_node_matches_training_settings():
    params = VolumetricSRTraining.VolumetricSRTrainingLogic().getParameterNode()
    assert set(type(params).fields) == {f.name for f in dataclasses.fields(TrainingSettings)}
    defaults = TrainingSettings(**{name: getattr(params, name) for name in type(params).fields})
    assert defaults == TrainingSettings()


def test_the_training_data_browse_picks_a_folder():
    """ctkPathLineEdit opens a file dialog whenever Files is among its filters: with Dirs|Files no
    folder (the usual training data) could be picked."""
    import xml.etree.ElementTree as ET

    ui = ET.parse(slicer_standin.REPO / "VolumetricSRTraining/Resources/UI/VolumetricSRTraining.ui")
    edit = next(w for w in ui.iter("widget") if w.get("name") == "dataPathLineEdit")
    filters = next(p for p in edit.iter("property") if p.get("name") == "filters").find("set").text
    assert "Dirs" in filters and "Files" not in filters


def test_the_parameter_node_is_a_scene_singleton_that_keeps_its_values():
    """As in Slicer: every logic of a module gets the same node, set values survive a new wrapper,
    and closing the scene resets them."""
    first = VolumetricSRTraining.VolumetricSRTrainingLogic().getParameterNode()
    first.modelId, first.epochs = "mine", 7
    again = VolumetricSRTraining.VolumetricSRTrainingLogic().getParameterNode()
    assert (again.modelId, again.epochs) == ("mine", 7) and again.parameterNode is first.parameterNode
    slicer.mrmlScene.Clear(0)
    assert VolumetricSRTraining.VolumetricSRTrainingLogic().getParameterNode().modelId == ""


def test_a_dicom_series_stated_thickness_reaches_the_run_and_the_panel_can_override_it():
    from volumetricsr.compute.consistency import consistency
    from volumetricsr.data.profiles import PROFILES
    from VolumetricSRLib import scene, settings

    assert settings.offered()["sliceProfile"].choices == ("auto",) + PROFILES
    node = add_node(make_volume(size_ijk=(16, 14, 6), spacing=(0.9, 0.9, 4.5)))
    node.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4 1.2.5 1.2.6 1.2.7 1.2.8")   # as Slicer's DICOM plugin
    slicer.dicomDatabase.instances["1.2.3"] = {"0018,0050": "7.0"}                  # 7 mm slices, 4.5 mm apart
    from VolumetricSRLib.panel import geometry_summary

    assert geometry_summary(node).endswith("; slices 7 mm thick (DICOM)")
    logic = VolumetricSR.VolumetricSRLogic()
    job = logic.prepare(node, "sinc", 1.5, enforce_consistency=True)
    assert job.options["thickness"] == 7.0           # explicit, so that a child process (no tags) has it too
    results = {}
    out = logic.run(node, method="sinc", spacing=1.5, enforce_consistency=True, results=results, show=False)
    thick = scene.volume_from_node(node)
    assert consistency(scene.volume_from_node(out), thick, 7.0).summary()["rms"] < 1e-3 * thick.array.std()
    picked = settings.RunSettings(method="sinc", sliceThickness=5.0, sliceProfile="rect")
    job = logic.prepare_from_settings(node, picked, interactive=False)
    assert job.options["thickness"] == 5.0 and job.options["profile"] == "rect"
    slicer.dicomDatabase.instances.clear()

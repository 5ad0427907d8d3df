"""The stand-in itself behaves as Slicer does where the modules rely on it (issue 29, item 9); each
test names the Slicer source it follows (see slicer_standin/README.md)."""
from __future__ import annotations

import numpy as np
import pytest

import slicer_standin
from conftest import make_volume

slicer = slicer_standin.install()

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

"""Sequences (cine MR, multi-phase CT, DCE): the stand-in's Sequence and Sequence browser nodes as
Slicer's C++ behaves, and a sequence super-resolved frame by frame from the console API and the
panel (through the child process), Stop keeping nothing."""
from __future__ import annotations

import numpy as np
import pytest

import slicer_standin
from conftest import make_volume
from test_slicer_scene import add_node, clean_scene  # noqa: F401  (an autouse fixture)

slicer = slicer_standin.install()

import vtk  # noqa: E402

from VolumetricSRLib import scene  # noqa: E402


def make_sequence(volumes, name="cine", values=None, unit="ms", browse=True):
    """A sequence of ``volumes`` as Slicer loads a 4-D file: the sequence, its browser and the browser's
    proxy volume (with a window/level); returns (sequence, browser or None, proxy or None)."""
    sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit(unit)
    scratch = slicer.vtkMRMLScalarVolumeNode()
    for t, volume in enumerate(volumes):
        scene.write_to_node(volume, scratch)
        sequence.SetDataNodeAtValue(scratch, values[t] if values else str(t))
    if not browse:
        return sequence, None, None
    browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    proxy = browser.GetProxyNode(sequence)
    proxy.GetDisplayNode().SetWindowLevel(400.0, 40.0)
    return sequence, browser, proxy


def frames(n=3, **kwargs):
    base = make_volume(**kwargs)
    return [base.with_array((base.array + 50.0 * t).astype(np.float32)) for t in range(n)]


# --- the stand-in, as Slicer's C++ (Libs/MRML/Core/vtkMRMLSequenceNode.cxx, Modules/Loadable/Sequences) ----
def test_a_sequence_holds_deep_copies_outside_the_scene_sorted_by_numeric_index():
    sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "s")
    assert (sequence.GetIndexName(), sequence.GetIndexUnit(), sequence.GetIndexType()) == ("time", "s", 0)
    assert sequence.GetDataNodeClassName() == "" and sequence.GetNthDataNode(0) is None
    node = add_node(make_volume(), "source")
    for value in ("10", "2", "2.0004"):            # numeric: sorted; within the tolerance: the same item
        copy = sequence.SetDataNodeAtValue(node, value)
    assert [sequence.GetNthIndexValue(i) for i in range(sequence.GetNumberOfDataNodes())] == ["2", "10"]
    assert copy is sequence.GetNthDataNode(0) and copy is not node and copy not in slicer.mrmlScene.nodes
    assert copy.GetName() == "source" and copy.GetAttribute("Sequences.BaseName") == "source"
    slicer.util.arrayFromVolume(node)[:] = 7                      # a deep copy: the item keeps its voxels
    assert not np.all(slicer.util.arrayFromVolume(copy) == 7) and copy.GetDisplayNode() is None
    assert sequence.GetAttribute("DataNodeClassName") == "vtkMRMLScalarVolumeNode" == sequence.GetDataNodeClassName()
    with pytest.raises(TypeError):
        sequence.SetDataNodeAtValue(node, 3)       # an index value is a string (std::string)


def test_a_browser_shows_each_item_in_its_proxy_volume():
    (sequence, browser, proxy) = make_sequence(frames(3), values=["0", "40", "80"])
    assert browser.GetMasterSequenceNode() is sequence and browser.GetNumberOfItems() == 3
    assert proxy in slicer.mrmlScene.nodes and proxy.GetName() == "cine" and proxy.GetDisplayNode() is not None
    assert browser.GetSelectedItemNumber() == 0 and np.allclose(
        slicer.util.arrayFromVolume(proxy), slicer.util.arrayFromVolume(sequence.GetNthDataNode(0)))
    proxy.SetAndObserveTransformNodeID("vtkMRMLLinearTransformNode1")
    browser.SetSelectedItemNumber(2)               # the proxy follows; its transform and display stay
    assert np.allclose(slicer.util.arrayFromVolume(proxy), slicer.util.arrayFromVolume(sequence.GetNthDataNode(2)))
    assert proxy.GetTransformNodeID() == "vtkMRMLLinearTransformNode1" and proxy.GetDisplayNode().GetWindow() == 400
    logic = slicer.modules.sequences.logic()
    assert logic.GetFirstBrowserNodeForProxyNode(proxy) is browser and browser.GetSequenceNode(proxy) is sequence
    assert logic.GetFirstBrowserNodeForSequenceNode(sequence) is browser
    assert logic.GetFirstBrowserNodeForProxyNode(add_node(make_volume())) is None
    collection = vtk.vtkCollection()
    browser.GetSynchronizedSequenceNodes(collection, True)
    assert list(collection) == [sequence]


def test_a_browser_leaves_its_proxy_in_the_scene_and_forgets_a_removed_sequence():
    """CopyContent replaces the proxy's attributes with the item's (vtkMRMLNode::CopyContent), so the
    browser's mark of its own copies ("proxyNodeCopy") is gone after the first update, and
    RemoveSynchronizedSequenceNode leaves the proxy; a sequence removed from the scene leaves the
    browser (vtkMRMLScene::RemoveNodeReferences)."""
    (sequence, browser, proxy) = make_sequence(frames(2))
    (other, _, _) = make_sequence(frames(2), name="other", browse=False)
    browser.AddSynchronizedSequenceNodeID(other.GetID())
    other_proxy = browser.GetProxyNode(other)
    assert other_proxy.GetName() == "other" and other_proxy.GetAttribute("proxyNodeCopy") is None
    browser.RemoveSynchronizedSequenceNode(other.GetID())
    assert other_proxy in slicer.mrmlScene.nodes and browser.GetProxyNode(other) is None
    slicer.mrmlScene.RemoveNode(sequence)
    assert browser.GetMasterSequenceNode() is None and proxy in slicer.mrmlScene.nodes

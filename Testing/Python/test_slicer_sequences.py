"""Sequences (cine MR, multi-phase CT, DCE): the stand-in's Sequence and Sequence browser nodes as
Slicer's C++ behaves, and a sequence super-resolved frame by frame from the console API and the
panel (through the child process), Stop keeping nothing."""
from __future__ import annotations

import re
import time

import numpy as np
import pytest

import slicer_standin
from conftest import make_volume
from test_slicer_scene import add_node, clean_scene, oblique_volume, ras_of_voxel  # noqa: F401  (a fixture)

slicer = slicer_standin.install()

import vtk  # noqa: E402

from VolumetricSRLib.logic import SuperResolutionLogic  # noqa: E402
from VolumetricSRLib.processtask import ProcessTask  # noqa: E402
from volumetricsr import super_resolve  # noqa: E402
from volumetricsr.common.errors import InputError  # noqa: E402

try:      # the panel's tests need PySide6 (test_slicer_widget skips itself without it; qt_slicer: conftest)
    from test_slicer_widget import apply_a_long_child_run, run_until_idle, sr_widget, visible
except pytest.skip.Exception:
    sr_widget = None
needs_qt = pytest.mark.skipif(sr_widget is None, reason="PySide6 is not installed")


def make_sequence(volumes, name="cine", values=None, unit="ms", browse=True):
    """A sequence of ``volumes`` as Slicer loads a 4-D file: the sequence (each frame's geometry written
    independently of the glue, by add_node), its browser and the browser's proxy volume (window/level
    80/35); returns (sequence, browser, proxy), the last two None unless ``browse``."""
    sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    sequence.SetIndexName("time")
    sequence.SetIndexUnit(unit)
    for t, volume in enumerate(volumes):
        source = add_node(volume, f"{name}_{t:04d}")
        sequence.SetDataNodeAtValue(source, values[t] if values else str(t))
        slicer.mrmlScene.RemoveNode(source)
    if not browse:
        return sequence, None, None
    browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    proxy = browser.GetProxyNode(sequence)
    proxy.GetDisplayNode().SetAutoWindowLevel(False)
    proxy.GetDisplayNode().SetWindowLevel(80.0, 35.0)
    return sequence, browser, proxy


def frames(n=3, base=None, **kwargs):
    """``n`` frames on one grid, each brighter than the one before."""
    base = base if base is not None else make_volume(**kwargs)
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
    proxy.GetDisplayNode().SetWindowLevel(400.0, 40.0)
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


# --- the glue and the console API ---------------------------------------------------------------
def assert_frames_super_resolved(output, sequence, inputs, spacing=1.0):
    """Each frame of ``output``: the core's result for that input frame, at the input frame's index value,
    on the input frame's grid made thin (4 mm slices to ``spacing``)."""
    assert output.GetNumberOfDataNodes() == sequence.GetNumberOfDataNodes() == len(inputs)
    assert (output.GetIndexName(), output.GetIndexUnit(), output.GetIndexType()) == (
        sequence.GetIndexName(), sequence.GetIndexUnit(), sequence.GetIndexType())
    for t, volume in enumerate(inputs):
        assert output.GetNthIndexValue(t) == sequence.GetNthIndexValue(t)
        node, source = output.GetNthDataNode(t), sequence.GetNthDataNode(t)
        assert node.GetClassName() == "vtkMRMLScalarVolumeNode"
        assert np.allclose(node.ijk_to_ras[:3, 3], source.ijk_to_ras[:3, 3])           # same origin
        assert np.allclose(node.ijk_to_ras[:3, :2], source.ijk_to_ras[:3, :2])         # same in-plane axes
        assert np.allclose(node.ijk_to_ras[:3, 2], source.ijk_to_ras[:3, 2] * spacing / 4.0)
        assert np.allclose(ras_of_voxel(node, (3, 2, 4 / spacing)), ras_of_voxel(source, (3, 2, 1)))
        expected = super_resolve(volume, "bspline", spacing)
        assert np.allclose(slicer.util.arrayFromVolume(node), expected.array, atol=1e-3)


def test_the_console_api_super_resolves_every_frame_into_a_sequence_browsed_with_the_input():
    inputs = frames(3, base=oblique_volume(seed=5))        # 6 slices at 4 mm along K, oblique
    (sequence, browser, proxy) = make_sequence(inputs, values=["0", "40", "80"])
    proxy.SetAndObserveTransformNodeID("vtkMRMLLinearTransformNode3")
    browser.SetSelectedItemNumber(1)
    results = {}
    output = SuperResolutionLogic().run(proxy, "bspline", 1.0, all_frames=True, results=results,
                                        consistency_map=True)
    assert output.IsA("vtkMRMLSequenceNode") and output.GetName() == "cine SR bspline"
    assert_frames_super_resolved(output, sequence, inputs)
    # in the input's browser, as Slicer's Crop Volume Sequence puts its output: one player for both
    assert browser.IsSynchronizedSequenceNodeID(output.GetID()) and browser.GetSelectedItemNumber() == 1
    shown = browser.GetProxyNode(output)
    assert shown.GetName() == "cine SR bspline" and np.allclose(
        slicer.util.arrayFromVolume(shown), slicer.util.arrayFromVolume(output.GetNthDataNode(1)))
    display = shown.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel()) == (80.0, 35.0)
    assert shown.GetTransformNodeID() == "vtkMRMLLinearTransformNode3"
    assert ("setSliceViewerLayers", shown, None, True) in slicer.util.calls
    assert ("showSequenceBrowser", browser.GetID()) in slicer.util.calls
    maps = results["map_nodes"]
    assert list(maps) == ["consistency_map"] and maps["consistency_map"].GetName() == "cine SR bspline consistency"
    assert browser.IsSynchronizedSequenceNodeID(maps["consistency_map"].GetID())
    assert browser.GetProxyNode(maps["consistency_map"]).GetDisplayNode().GetLevel() == 0.0   # styled as a map
    assert results["consistency"]["frame"] in (0, 1, 2) and len(results["frames"]) == 3


def test_a_sequence_without_a_browser_gets_its_own_and_a_single_frame_run_stays_a_volume():
    inputs = frames(3, size_ijk=(12, 10, 6), spacing=(0.8, 0.8, 4.0))
    (sequence, _, _) = make_sequence(inputs, browse=False)
    logic = SuperResolutionLogic()
    output = logic.run(sequence, "bspline", 1.0)             # a sequence node: every frame
    browser = slicer.modules.sequences.logic().GetFirstBrowserNodeForSequenceNode(output)
    assert browser.GetName() == "cine SR bspline browser" and browser.GetMasterSequenceNode() is output
    assert_frames_super_resolved(output, sequence, inputs)
    (_, _, proxy) = make_sequence(inputs, name="other")
    single = logic.run(proxy, "bspline", 1.0, show=False)   # the proxy alone: the frame shown
    assert single.GetClassName() == "vtkMRMLScalarVolumeNode" and single.GetName() == "other SR bspline"


def scene_state():
    return [(n.GetID(), n.GetName()) for n in slicer.mrmlScene.nodes]


def test_a_sequence_the_methods_cannot_take_is_refused_before_any_work(monkeypatch):
    logic = SuperResolutionLogic()
    (sequence, _, proxy) = make_sequence(frames(3, size_ijk=(12, 10, 6), spacing=(0.8, 0.8, 4.0)))
    label = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "mask")
    slicer.util.updateVolumeFromArray(label, np.zeros((6, 10, 12), np.uint8))
    sequence.SetDataNodeAtValue(label, "5")
    moved = make_volume(size_ijk=(12, 10, 6), spacing=(0.8, 0.8, 4.0), origin=(0.0, 0.0, 0.0))
    (shifted, _, _) = make_sequence(frames(2, size_ijk=(12, 10, 6), spacing=(0.8, 0.8, 4.0)) + [moved],
                                    name="shifted", browse=False)
    empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "empty")
    monkeypatch.setattr(SuperResolutionLogic, "compute", lambda *a, **k: pytest.fail("no work"))
    before = scene_state()
    for node, kwargs, said in ((proxy, {"all_frames": True}, "The sequence cine, frame 3 (time 5 ms): mask is a "
                                                             "vtkMRMLLabelMapVolumeNode, not a scalar volume"),
                               (shifted, {}, "frame 2 (time 2 ms) lies on another grid"),
                               (empty, {}, "The sequence empty has no frames."),
                               (shifted, {"outputNode": proxy}, "makes a new sequence of results")):
        with pytest.raises(InputError, match=re.escape(said)):
            logic.run(node, "bspline", **kwargs)
    assert scene_state() == before


def test_a_failure_while_making_the_nodes_leaves_none(monkeypatch):
    from VolumetricSRLib import scene

    (sequence, browser, proxy) = make_sequence(frames(3, size_ijk=(12, 10, 6), spacing=(0.8, 0.8, 4.0)))
    before = scene_state()

    def broken(*args):
        raise RuntimeError("no colour table")

    monkeypatch.setattr(scene, "style_map", broken)         # the last step: the map's proxy
    with pytest.raises(RuntimeError, match="no colour table"):
        SuperResolutionLogic().run(sequence, "bspline", consistency_map=True)
    assert scene_state() == before and browser.GetNumberOfSynchronizedSequenceNodes(True) == 1
    (bare, _, _) = make_sequence(frames(2, size_ijk=(12, 10, 6), spacing=(0.8, 0.8, 4.0)), name="bare",
                                 browse=False)
    before = scene_state()
    with pytest.raises(RuntimeError, match="no colour table"):          # its own browser goes too
        SuperResolutionLogic().run(bare, "bspline", consistency_map=True)
    assert scene_state() == before


def test_a_failing_map_leaves_no_node_of_a_single_volume_run_either(monkeypatch):
    """One volume: the result and the first map are made, the second map fails: neither volume stays.
    (The first map's colour legend, a display node, is not checked: whether Slicer removes a removed
    node's display nodes with it is not modelled by the stand-in.)"""
    from VolumetricSRLib import scene

    node = add_node(make_volume(size_ijk=(12, 10, 6), spacing=(0.8, 0.8, 4.0)))
    before, calls = scene_state(), []
    real = scene.style_map

    def second_fails(*args):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("no colour table")
        return real(*args)

    monkeypatch.setattr(scene, "style_map", second_fails)
    with pytest.raises(RuntimeError, match="no colour table"):
        SuperResolutionLogic().run(node, "bspline", consistency_map=True, confidence_map=True)
    volumes = lambda state: [n for n in state if "VolumeNode" in n[0] or "DisplayNode" in n[0]  # noqa: E731
                             and "ColorLegend" not in n[0]]
    assert len(calls) == 2 and volumes(scene_state()) == volumes(before)


def test_stop_during_a_sequence_run_keeps_nothing():
    """A per-volume method in the child process, stopped while it trains: no sequence, browser, proxy
    or volume is made, the temporary folder is removed and the child is gone."""
    import os

    (sequence, browser, proxy) = make_sequence(frames(3, size_ijk=(40, 40, 8), spacing=(1.0, 1.0, 4.0)))
    logic = SuperResolutionLogic()
    before, outcome, progress = scene_state(), [], []
    task = logic.start(logic.prepare(proxy, "selfsr", all_frames=True, iterations=100000),
                       on_progress=lambda f, m, eta: progress.append(m), on_done=lambda n: outcome.append("done"),
                       on_cancelled=lambda: outcome.append("cancelled"), on_error=lambda e, tb: outcome.append(tb))
    assert isinstance(task, ProcessTask)
    deadline = time.monotonic() + 60
    while task.poll() and not any("training" in m for m in progress) and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = task.child.child_pid
    task.cancel()
    task.wait(30)
    assert outcome == ["cancelled"] and scene_state() == before and not task.folder.exists()
    assert browser.GetNumberOfSynchronizedSequenceNodes(True) == 1
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_time_estimate_counts_every_frame():
    from VolumetricSRLib.panel import run_time_text
    from volumetricsr import get_method
    from volumetricsr.app.api import REUSED_FRAME_COST

    def seconds(text):
        return sum(int(n) * {"h": 3600, "min": 60, "s": 1}[unit] for n, unit in re.findall(r"(\d+) (h|min|s)\b", text))

    volume = make_volume(size_ijk=(64, 64, 10), spacing=(0.8, 0.8, 4.0))
    one, ten = (run_time_text(get_method("tvsrn"), volume, frames=n) for n in (1, 10))
    assert "for the 10 frames" in ten and "for the" not in one
    assert seconds(ten) == pytest.approx(10 * seconds(one), rel=0.25)            # every frame in full (rounded)
    one, ten = (run_time_text(get_method("selfsr"), volume, frames=n) for n in (1, 10))
    assert "for the 10 frames" in ten                           # trained once, its network reused for the rest
    assert seconds(ten) == pytest.approx(seconds(one) * (1 + 9 * REUSED_FRAME_COST), rel=0.25)


# --- the panel ------------------------------------------------------------------------------------
@needs_qt
def test_the_panel_offers_every_frame_of_a_sequence_and_runs_them_in_the_child(qt_slicer, monkeypatch):
    """The input list shows the sequence's proxy volume (what loading a 4-D file gives); the panel then
    offers all its frames (on by default), the method line counts them, and Apply runs every frame in
    one child process (forced here for B-spline, which Apply runs in Slicer's main thread), with
    progress across the frames; the result is a sequence browsed with the input, Compare shows its
    proxy beside the input's."""
    inputs = frames(3, base=oblique_volume(seed=5))
    (sequence, browser, proxy) = make_sequence(inputs, values=["0", "40", "80"])
    w, p = sr_widget()
    assert p.inputVolume is proxy and p.allFrames
    assert visible(w.ui.allFramesCheckBox) and w.ui.allFramesCheckBox.text == "All 3 frames of cine"
    p.method, p.isotropic, p.spacing = "bspline", False, 1.0
    assert "for the 3 frames" in w.ui.methodDescriptionLabel.text
    prepare = SuperResolutionLogic.prepare_from_settings

    def in_child(self, *args, **kwargs):
        job = prepare(self, *args, **kwargs)
        job.in_process = False
        return job

    monkeypatch.setattr(SuperResolutionLogic, "prepare_from_settings", in_child)
    shown, progress = w._onProgress, []
    w._onProgress = lambda f, m, eta: (progress.append(f), shown(f, m, eta))
    w.onApply()
    task = w._task
    assert isinstance(task, ProcessTask) and (task.folder / "input.nrrd").is_file()
    run_until_idle(w._poll, lambda: w._task is not None, timeout=120)
    assert not task.folder.exists() and progress == sorted(progress) and progress[-1] > 0.9
    (output,) = [n for n in slicer.mrmlScene.nodes_of("vtkMRMLSequenceNode") if n is not sequence]
    assert output.GetName() == "cine SR bspline" and browser.IsSynchronizedSequenceNodeID(output.GetID())
    assert_frames_super_resolved(output, sequence, inputs)
    assert w.ui.statusLabel.text.startswith("Done: cine SR bspline (3 frames). Consistency")
    w.onCompare()
    widgets = slicer.app.layoutManager().widgets
    assert widgets["Red"].composite.background == proxy.GetID()
    assert widgets["Yellow"].composite.background == browser.GetProxyNode(output).GetID()
    p.allFrames = False                                  # untick: the frame shown only
    assert visible(w.ui.allFramesCheckBox) and "frames" not in w.ui.methodDescriptionLabel.text


@needs_qt
def test_the_panel_runs_a_short_self_supervised_sequence(qt_slicer):
    """selfsr on every frame through the panel: trained on one frame, its network reused for the others."""
    inputs = frames(3, size_ijk=(32, 32, 8), spacing=(1.0, 1.0, 4.0))
    (sequence, browser, proxy) = make_sequence(inputs)
    w, p = sr_widget()
    p.method, p.iterations = "selfsr", 20
    w.onApply()
    run_until_idle(w._poll, lambda: w._task is not None, timeout=120)
    (output,) = [n for n in slicer.mrmlScene.nodes_of("vtkMRMLSequenceNode") if n is not sequence]
    assert w.ui.statusLabel.text.startswith("Done: cine SR selfsr (3 frames; trained on frame 1, its network reused "
                                            "for the others)."), w.ui.statusLabel.text
    assert output.GetNumberOfDataNodes() == 3 and browser.IsSynchronizedSequenceNodeID(output.GetID())
    for t in range(3):
        node, source = output.GetNthDataNode(t), sequence.GetNthDataNode(t)
        assert slicer.util.arrayFromVolume(node).shape == (29, 32, 32)
        assert np.allclose(node.ijk_to_ras[:3, 3], source.ijk_to_ras[:3, 3])
        assert np.allclose(node.ijk_to_ras[:3, 2], source.ijk_to_ras[:3, 2] / 4)
    means = [slicer.util.arrayFromVolume(output.GetNthDataNode(t)).mean() for t in range(3)]
    assert means == sorted(means)                        # each frame its own (50 brighter than the one before)


def test_an_interpolation_of_every_frame_runs_in_slicers_main_thread_with_progress_across_frames():
    from VolumetricSRLib.runner import InlineTask

    (sequence, browser, proxy) = make_sequence(frames(3, size_ijk=(12, 10, 6), spacing=(0.8, 0.8, 4.0)))
    logic = SuperResolutionLogic()
    progress, done = [], []
    task = logic.start(logic.prepare(proxy, "linear", all_frames=True),
                       on_progress=lambda f, m, eta: progress.append(f), on_done=done.append)
    assert isinstance(task, InlineTask)
    task.wait(30)
    assert done[0].GetNumberOfDataNodes() == 3 and browser.IsSynchronizedSequenceNodeID(done[0].GetID())
    assert progress == sorted(progress) and progress[0] < 1 / 3 and progress[-1] > 0.9     # across the frames


@needs_qt
def test_close_scene_during_a_sequence_run_keeps_nothing(qt_slicer):
    """File > Close Scene while the child runs every frame: the child is stopped, its temporary folder
    (the 4-D input) removed at once, and nothing reaches the new scene."""
    import os

    (sequence, browser, proxy) = make_sequence(frames(3, size_ijk=(40, 40, 8), spacing=(1.0, 1.0, 4.0)))
    w, task = apply_a_long_child_run()
    pid, folder = task.child.child_pid, task.folder
    assert (folder / "input.nrrd").is_file()
    slicer.mrmlScene.Clear(0)
    assert not folder.exists() and w._task is None and slicer.mrmlScene.nodes_of("vtkMRMLSequenceNode") == []
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)

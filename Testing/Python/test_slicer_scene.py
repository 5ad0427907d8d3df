"""VolumetricSRLib scene glue and logic against the Slicer stand-in: geometry, new node, cancel, failure."""
from __future__ import annotations

import numpy as np
import pytest

import slicer_standin
from conftest import make_volume, random_rotation

slicer = slicer_standin.install()

from VolumetricSRLib import scene  # noqa: E402
from VolumetricSRLib.geometry import geometry_from_ijk_to_ras, ijk_to_ras_from_geometry  # noqa: E402
from VolumetricSRLib.logic import SuperResolutionLogic  # noqa: E402
from VolumetricSRLib.settings import RunSettings  # noqa: E402
from volumetricsr.common.errors import InputError  # noqa: E402


@pytest.fixture(autouse=True)
def clean_scene():
    """An empty scene; afterwards, every collection the scene handed out was released (as Slicer needs)."""
    slicer_standin.reset()
    yield
    leaked = slicer.mrmlScene.leaked_collections()
    slicer_standin.reset()
    assert not leaked, "a GetNodesByClass collection was not released (use slicer.util.getNodesByClass)"


def add_node(volume, name="thick", window=(400.0, 40.0)):
    """A volume node as Slicer would hold ``volume`` (geometry written independently of the glue)."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    m = np.eye(4)
    flip = np.diag([-1.0, -1.0, 1.0])
    m[:3, :3] = flip @ volume.direction @ np.diag(volume.spacing)
    m[:3, 3] = flip @ np.asarray(volume.origin)
    node.ijk_to_ras = m
    slicer.util.updateVolumeFromArray(node, volume.array)
    node.CreateDefaultDisplayNodes()
    node.GetDisplayNode().SetAutoWindowLevel(False)
    node.GetDisplayNode().SetWindowLevel(*window)
    return node


def ras_of_voxel(node, ijk):
    return (node.ijk_to_ras @ np.append(np.asarray(ijk, float), 1.0))[:3]


def oblique_volume(seed=3):
    return make_volume(size_ijk=(12, 10, 6), spacing=(0.7, 0.9, 4.0), origin=(-30.0, 12.5, 80.0),
                       direction=random_rotation(np.random.default_rng(seed)), seed=seed)


def test_matrix_round_trip_keeps_oblique_geometry():
    v = oblique_volume()
    spacing, origin, direction = geometry_from_ijk_to_ras(ijk_to_ras_from_geometry(v.spacing, v.origin, v.direction))
    assert np.allclose(spacing, v.spacing) and np.allclose(origin, v.origin) and np.allclose(direction, v.direction)


def test_ras_and_lps_place_every_voxel_at_the_same_point():
    """A voxel's LPS position from the core equals its RAS position from the node with x, y negated."""
    v = oblique_volume()
    node = add_node(v)
    back = scene.volume_from_node(node)
    for ijk in [(0, 0, 0), (11, 0, 5), (3, 7, 2)]:
        lps = back.index_to_physical(np.array(ijk, float))
        assert np.allclose(lps * [-1, -1, 1], ras_of_voxel(node, ijk))
    assert np.array_equal(back.array, v.array)


def test_node_volume_node_round_trip_oblique():
    v = oblique_volume(seed=5)
    node = add_node(v)
    copy = scene.volume_from_node(node)
    out = scene.create_output_node(copy, node, "copy")
    assert np.allclose(out.ijk_to_ras, node.ijk_to_ras)
    assert np.array_equal(slicer.util.arrayFromVolume(out), slicer.util.arrayFromVolume(node))


def test_volume_from_node_copies_unless_asked():
    node = add_node(make_volume())
    copied, shared = scene.volume_from_node(node), scene.volume_from_node(node, copy=False)
    slicer.util.arrayFromVolume(node)[0, 0, 0] = 12345.0
    assert copied.array[0, 0, 0] != 12345.0 and shared.array[0, 0, 0] == 12345.0


SUBCLASSES = ("vtkMRMLLabelMapVolumeNode", "vtkMRMLVectorVolumeNode", "vtkMRMLDiffusionWeightedVolumeNode",
              "vtkMRMLDiffusionTensorVolumeNode")


def test_label_maps_vectors_diffusion_volumes_and_empty_nodes_are_refused():
    from volumetricsr import InputError

    for cls in SUBCLASSES:
        node = slicer.mrmlScene.AddNewNodeByClass(cls, "other")
        slicer.util.updateVolumeFromArray(node, np.zeros((3, 4, 5), np.float32))
        assert node.IsA("vtkMRMLScalarVolumeNode")             # as in Slicer: all are scalar volume nodes
        with pytest.raises(InputError, match=f"is a {cls}, not a scalar volume"):
            scene.volume_from_node(node)
    with pytest.raises(InputError, match="no voxels"):
        scene.volume_from_node(slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"))


def test_run_makes_a_placed_node_with_the_right_geometry():
    v = oblique_volume(seed=7)            # K is the through-plane axis: 6 slices at 4 mm
    node = add_node(v, window=(80.0, 35.0))
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    folder = sh.CreateFolderItem(1, "Study")
    sh.SetItemParent(sh.GetItemByDataNode(node), folder)
    node.SetAndObserveTransformNodeID("vtkMRMLLinearTransformNode7")

    out = SuperResolutionLogic().run(node, method="bspline", spacing=1.0)

    assert out.GetName() == "thick SR bspline"
    assert slicer.util.arrayFromVolume(out).shape == ((6 - 1) * 4 + 1, 10, 12)
    # same directions and origin; K spacing 1 mm; first and last slices where the input's are
    assert np.allclose(out.ijk_to_ras[:3, 3], node.ijk_to_ras[:3, 3])
    assert np.allclose(out.ijk_to_ras[:3, :2], node.ijk_to_ras[:3, :2])
    assert np.allclose(out.ijk_to_ras[:3, 2], node.ijk_to_ras[:3, 2] / 4)
    assert np.allclose(ras_of_voxel(out, (11, 9, 20)), ras_of_voxel(node, (11, 9, 5)))
    # thick slices are reproduced by the interpolating spline at their own positions
    assert np.allclose(slicer.util.arrayFromVolume(out)[::4], v.array, atol=1e-3)
    assert sh.GetItemParent(sh.GetItemByDataNode(out)) == folder
    display = out.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel(), display.auto) == (80.0, 35.0, False)
    assert out.GetTransformNodeID() == "vtkMRMLLinearTransformNode7"
    assert ("setSliceViewerLayers", out, None, True) in slicer.util.calls


def test_run_into_an_existing_output_node_and_unique_names():
    node = add_node(make_volume())
    first = SuperResolutionLogic().run(node, "linear", show=False)
    second = SuperResolutionLogic().run(node, "linear", show=False)
    assert second.GetName() == "thick SR linear_1"
    target = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "mine")
    assert SuperResolutionLogic().run(node, "sinc", outputNode=target, show=False) is target
    assert slicer.util.arrayFromVolume(target).shape == slicer.util.arrayFromVolume(first).shape
    assert target.GetDisplayNode() is not None


def node_count():
    return len(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"))


def test_output_equal_to_input_is_refused():
    from volumetricsr import InputError

    node = add_node(make_volume())
    with pytest.raises(InputError, match="must differ"):
        SuperResolutionLogic().run(node, outputNode=node)


def test_cancel_in_background_leaves_the_scene_as_it_was():
    node = add_node(make_volume(size_ijk=(64, 64, 12)))
    before = (list(slicer.mrmlScene.nodes), node.ijk_to_ras.copy())
    logic = SuperResolutionLogic()
    job = logic.prepare(node, "sinc", 0.25)
    outcome = []
    job.cancel.cancel()                   # cancelled before the first step: nothing may be made
    task = logic.start(job, on_done=lambda n: outcome.append(("done", n)),
                       on_cancelled=lambda: outcome.append(("cancelled",)),
                       on_error=lambda e, tb: outcome.append(("error", e)))
    task.wait(30)
    assert outcome == [("cancelled",)]
    assert slicer.mrmlScene.nodes == before[0] and np.array_equal(node.ijk_to_ras, before[1])


def test_background_run_reports_progress_then_makes_the_node():
    node = add_node(make_volume())
    logic = SuperResolutionLogic()
    events, done = [], []
    task = logic.start(logic.prepare(node, "bspline"), on_progress=lambda f, m, eta: events.append(f),
                       on_done=done.append, on_error=lambda e, tb: pytest.fail(tb))
    task.wait(30)
    assert len(done) == 1 and done[0].GetName() == "thick SR bspline"
    assert events and events[-1] == 1.0 and events == sorted(events)


def test_failure_while_making_the_node_leaves_no_half_made_node(monkeypatch):
    node = add_node(make_volume())
    n = node_count()

    def broken(target, array):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(slicer.util, "updateVolumeFromArray", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        SuperResolutionLogic().run(node, "linear")
    assert node_count() == n
    assert len(slicer.util.getNodesByClass("vtkMRMLScalarVolumeDisplayNode")) == 1


def test_failure_in_the_core_reports_an_error_and_makes_nothing():
    node = add_node(make_volume())
    logic = SuperResolutionLogic()
    job = logic.prepare(node, "linear")
    job.method = "no-such-method"
    errors = []
    logic.start(job, on_error=lambda e, tb: errors.append(e), on_done=lambda n: pytest.fail("no node")).wait(30)
    assert "no-such-method" in str(errors[0]) and node_count() == 1


def test_failed_overwrite_restores_the_existing_output(monkeypatch):
    node = add_node(make_volume())
    target = add_node(make_volume(size_ijk=(5, 5, 5), spacing=(1, 1, 1), seed=9), name="old")
    old_array, old_matrix = slicer.util.arrayFromVolume(target).copy(), target.ijk_to_ras.copy()
    real = slicer.util.updateVolumeFromArray
    calls = []

    def fail_first(n, a):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk full")
        real(n, a)

    monkeypatch.setattr(slicer.util, "updateVolumeFromArray", fail_first)
    with pytest.raises(RuntimeError, match="disk full"):
        SuperResolutionLogic().run(node, "linear", outputNode=target)
    assert np.array_equal(slicer.util.arrayFromVolume(target), old_array)
    assert np.array_equal(target.ijk_to_ras, old_matrix)


def test_already_isotropic_input_fails_before_computing():
    from volumetricsr import AlreadyIsotropicError

    node = add_node(make_volume(spacing=(1.0, 1.0, 1.0)))
    with pytest.raises(AlreadyIsotropicError):
        SuperResolutionLogic().prepare(node, "bspline")
    assert node_count() == 1


def test_settings_reach_the_core():
    node = add_node(make_volume())
    settings = RunSettings(method="linear", isotropic=False, spacing=1.5, axis="K")
    job = SuperResolutionLogic().prepare_from_settings(node, settings)
    assert (job.method, job.spacing, job.axis, job.options) == ("linear", 1.5, "K", {})
    # the core checks the values, with the command line's messages
    with pytest.raises(InputError, match=r"spacing \(--spacing\) must be a number above 0"):
        SuperResolutionLogic().prepare_from_settings(node, RunSettings(isotropic=False, spacing=0.0))
    with pytest.raises(InputError, match=r"seed \(--seed\) must be a whole number from 0"):
        SuperResolutionLogic().prepare_from_settings(node, RunSettings(method="selfsr", seed=-1))
    assert node_count() == 1


def test_compare_links_input_and_output_side_by_side():
    node = add_node(make_volume())
    out = SuperResolutionLogic().run(node, "linear")
    scene.compare(node, out)
    lm = slicer.app.layoutManager()
    assert lm.layout == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    red, yellow = lm.sliceWidget("Red"), lm.sliceWidget("Yellow")
    assert (red.composite.background, yellow.composite.background) == (node.GetID(), out.GetID())
    assert red.composite.linked and yellow.composite.linked
    assert yellow.slice_node.GetOrientation() == red.slice_node.GetOrientation()
    side_by_side = slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView
    assert red.logic.fitted == yellow.logic.fitted == [side_by_side]      # fitted to the new views' size


def test_compare_links_its_views_only_while_they_are_shown():
    """Slicer's link button links every view (qMRMLSliceControllerWidget::setSliceLink): Compare links its
    two views for the comparison, and when the user changes the layout (qMRMLLayoutManager's
    layoutChanged) they get back the linking they had, however often Compare was pressed."""
    node = add_node(make_volume())
    out = SuperResolutionLogic().run(node, "linear", show=False)
    lm = slicer.app.layoutManager()
    views = [lm.sliceWidget(name).composite for name in ("Red", "Yellow", "Green")]
    scene.compare(node, out)
    scene.compare(node, out)
    assert [v.linked for v in views] == [True, True, False]
    lm.layoutChanged.emit(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)    # a view maximized and back
    assert [v.linked for v in views] == [True, True, False]
    lm.setLayout(3)                                                                 # four-up
    assert [v.linked for v in views] == [False, False, False] and lm.layoutChanged.slots == []
    for v in views:                                                                 # the user's link button
        v.SetLinkedControl(True)
    scene.compare(node, out)
    lm.setLayout(2)
    assert [v.linked for v in views] == [True, True, True]


def test_compare_without_views_does_nothing(monkeypatch):
    """Slicer --no-main-window has no layout manager: Compare shows nothing and fails nothing."""
    node = add_node(make_volume())
    out = SuperResolutionLogic().run(node, "linear", show=False)
    monkeypatch.setattr(type(slicer.app.commandOptions()), "noMainWindow", True)
    assert slicer.app.layoutManager() is None
    assert scene.compare(node, out) is False


def test_the_default_input_is_found_without_leaking_the_scenes_collection():
    node = add_node(make_volume())
    assert scene.first_scalar_volume(slicer.mrmlScene) is node
    assert slicer.mrmlScene.leaked_collections() == []


def test_geometry_summary_names_axis_and_factor():
    from VolumetricSRLib.panel import geometry_summary

    node = add_node(make_volume(size_ijk=(20, 18, 8), spacing=(0.8, 0.8, 3.0)))
    text = geometry_summary(node)
    assert "axis K: 8 slices at 3 mm -> 27 slices" in text and "(x3.714)" in text
    assert "coarser" in geometry_summary(node, spacing=5.0)


@pytest.mark.realdata
def test_real_oblique_mri_lands_where_simpleitk_puts_it(data_dir):
    """A real oblique sagittal MRI: the node's RAS voxel positions are SimpleITK's LPS ones, x and y negated."""
    import SimpleITK as sitk

    from volumetricsr import read_volume

    path = data_dir / "brain_mri_t1_0p9mm_sag.nii.gz"
    image = sitk.ReadImage(str(path))
    assert not np.allclose(np.abs(np.reshape(image.GetDirection(), (3, 3))), np.eye(3), atol=1e-3)  # oblique
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "sag")
    scene.write_to_node(read_volume(path), node)
    for ijk in [(0, 0, 0), (255, 0, 0), (17, 200, 150), (255, 255, 191)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        assert np.allclose(ras_of_voxel(node, ijk), lps * [-1, -1, 1], atol=1e-3)
    back = scene.volume_from_node(node)
    assert np.array_equal(back.array, sitk.GetArrayViewFromImage(image))


def test_core_that_cannot_import_is_offered_its_packages_first(monkeypatch):
    """First use in a fresh Slicer: the core imports torch; prepare asks for it, then goes on."""
    import VolumetricSRLib.logic as logic_module
    from VolumetricSRLib.dependencies import DependencyInstaller

    real, attempts, asked = logic_module.import_core, [], []

    def first_fails():
        attempts.append(1)
        if len(attempts) == 1:
            raise ImportError("No module named 'torch'")
        return real()

    monkeypatch.setattr(logic_module, "import_core", first_fails)
    installer = DependencyInstaller(interactive=True, confirm=lambda text: asked.append(text) or True,
                                    find_spec=lambda name: None if not asked else object(),
                                    pip_install=lambda r: None, install_torch=lambda: None)
    node = add_node(make_volume())
    job = SuperResolutionLogic(installer).prepare_from_settings(node, RunSettings(method="bspline"))
    assert job.method == "bspline" and len(attempts) == 3      # failed, then after installing: twice
    assert len(asked) == 1 and "torch>=2.1" in asked[0] and "einops" in asked[0]


def test_the_default_input_is_a_volume_the_input_list_can_show():
    """The input list shows plain scalar volumes only (showChildNodeTypes false); a DWI or vector
    volume loaded first must not become the default input."""
    for cls in SUBCLASSES:
        slicer.mrmlScene.AddNewNodeByClass(cls, cls)
    assert scene.first_scalar_volume(slicer.mrmlScene) is None
    node = add_node(make_volume(), name="ct")
    assert scene.first_scalar_volume(slicer.mrmlScene) is node

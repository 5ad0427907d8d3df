"""Scene glue: volume node <-> core :class:`Volume`, and placing and showing a result node.

Slicer calls made here (and faked by Testing/Python/slicer_standin): ``slicer.util.arrayFromVolume``,
``updateVolumeFromArray``, ``setSliceViewerLayers``, ``slicer.mrmlScene.AddNewNodeByClass/RemoveNode/
GenerateUniqueName``, the subject hierarchy node, volume and display node getters/setters, and the
layout manager for Compare, the colour legend of a map (``slicer.modules.colors.logic()``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import slicer
import vtk

from .geometry import geometry_from_ijk_to_ras, ijk_to_ras_from_geometry


def matrix_to_array(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def array_to_matrix(array) -> "vtk.vtkMatrix4x4":
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r][c]))
    return matrix


def ijk_to_ras_of(node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return matrix_to_array(matrix)


def is_scalar_volume(node) -> bool:
    """A plain scalar volume: label maps, vector, diffusion-weighted and tensor volumes are subclasses
    of Slicer's scalar volume node, and none of them can be super-resolved (nor shown in the input list)."""
    return node is not None and node.GetClassName() == "vtkMRMLScalarVolumeNode"


def first_scalar_volume(scene):
    """The scene's first plain scalar volume (the panel's default input), or None. (Through
    ``slicer.util.getNodesByClass``: the scene's own ``GetNodesByClass`` returns a collection the
    caller must release.)"""
    return next((n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode", scene) if is_scalar_volume(n)),
                None)


def check_input_node(node) -> None:
    """Raise ``InputError`` unless ``node`` is a plain scalar volume with voxels."""
    from volumetricsr.common.errors import InputError

    if node is None:
        raise InputError("Select an input volume.")
    if not is_scalar_volume(node):
        raise InputError(f"{node.GetName()} is a {node.GetClassName()}, not a scalar volume (label maps, vector, "
                         "diffusion-weighted and tensor volumes are not supported).")
    if node.GetImageData() is None:
        raise InputError(f"{node.GetName()} has no voxels.")
    if node.GetImageData().GetNumberOfScalarComponents() != 1:
        # a scalar volume node can hold several components per voxel (slicer.util.updateVolumeFromArray
        # with a 4-D array does that); the methods take one value per voxel
        raise InputError(f"{node.GetName()} has {node.GetImageData().GetNumberOfScalarComponents()} values per "
                         "voxel (a color or vector image); only single-component volumes are supported.")


def volume_from_node(node, copy: bool = True):
    """The node's voxels and geometry as a core ``Volume`` (LPS), with the DICOM tags the core
    reads (:func:`dicom_tags`). ``copy=False`` shares the voxels."""
    from volumetricsr import Volume

    check_input_node(node)
    array = slicer.util.arrayFromVolume(node)
    spacing, origin, direction = geometry_from_ijk_to_ras(ijk_to_ras_of(node))
    tags = dicom_tags(node)
    metadata = {"name": node.GetName(), **({"dicom": tags} if tags else {})}
    return Volume(np.array(array) if copy else array, spacing, origin, direction, metadata=metadata)


#: DICOM tags of a loaded series the core uses: the slice thickness (consistency, selfsr).
DICOM_TAGS = ("0018|0050",)


def dicom_tags(node) -> dict:
    """Those tags of a volume loaded from DICOM (its first instance, in Slicer's DICOM database)."""
    uids = (node.GetAttribute("DICOM.instanceUIDs") or "").split()
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return {}
    values = {tag: database.instanceValue(uids[0], tag.replace("|", ",")) for tag in DICOM_TAGS}
    return {tag: value for tag, value in values.items() if value}


def write_to_node(volume, node) -> None:
    """Put a core ``Volume``'s voxels and geometry into an existing volume node."""
    node.SetIJKToRASMatrix(array_to_matrix(ijk_to_ras_from_geometry(volume.spacing, volume.origin, volume.direction)))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(volume.array))


def output_name(input_node, method: str) -> str:
    return f"{input_node.GetName()} SR {method}"


def new_volume_node(volume, name: str, setup):
    """A new scalar volume node (``name`` made unique) holding ``volume``, with display nodes, then
    ``setup(node)``; nothing is left on failure."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", slicer.mrmlScene.GenerateUniqueName(name))
    try:
        write_to_node(volume, node)
        node.CreateDefaultDisplayNodes()
        setup(node)
    except BaseException:
        slicer.mrmlScene.RemoveNode(node)
        raise
    return node


def create_output_node(volume, input_node, name: str):
    """A new scalar volume node holding ``volume``, set up like ``input_node``; nothing is left on failure."""
    return new_volume_node(volume, name, lambda node: match_input(node, input_node))


def replace_node_content(volume, node, input_node) -> None:
    """Overwrite an existing output node; on failure its voxels and geometry are restored."""
    old_matrix = ijk_to_ras_of(node)
    old_array = np.array(slicer.util.arrayFromVolume(node)) if node.GetImageData() is not None else None
    try:
        write_to_node(volume, node)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        match_input(node, input_node)
    except BaseException:
        node.SetIJKToRASMatrix(array_to_matrix(old_matrix))
        if old_array is not None:
            slicer.util.updateVolumeFromArray(node, old_array)
        raise


def match_input(node, input_node) -> None:
    """Same parent transform, subject-hierarchy folder and window/level as the input."""
    node.SetAndObserveTransformNodeID(input_node.GetTransformNodeID())
    copy_window_level(input_node, node)
    place_beside(input_node, node)


def copy_window_level(source, target) -> None:
    src, dst = source.GetDisplayNode(), target.GetDisplayNode()
    if src is None or dst is None:
        return
    dst.SetAutoWindowLevel(False)
    dst.SetWindowLevel(src.GetWindow(), src.GetLevel())
    if src.GetColorNodeID():
        dst.SetAndObserveColorNodeID(src.GetColorNodeID())


def place_beside(source, target) -> None:
    """Put ``target`` in the subject-hierarchy folder (or study) that holds ``source``."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    parent = sh.GetItemParent(sh.GetItemByDataNode(source))
    sh.SetItemParent(sh.GetItemByDataNode(target), parent)


#: Each map a run can make: (name suffix, colour table, legend title, signed). Colour tables are
#: Slicer's default file colour nodes.
MAP_STYLES = {
    "consistency_map": ("consistency", "vtkMRMLColorTableNodeFileDivergingBlueRed.txt",
                        "acquired - re-thickened result", True),
    "confidence_map": ("confidence", "vtkMRMLColorTableNodeFileInferno.txt", "spread of the predictions", False),
}


def create_map_node(volume, output_node, key: str):
    """A node for the map ``key`` of ``output_node``'s run, in its folder, styled by :func:`style_map`."""
    top = map_top([volume])
    return new_volume_node(volume, f"{output_node.GetName()} {MAP_STYLES[key][0]}",
                           lambda node: style_map(node, output_node, key, top))


def map_top(volumes) -> float:
    """The 99th percentile of the maps' magnitudes (1 where it is 0): where their colour table ends."""
    return float(np.percentile(np.abs(np.concatenate([v.array.ravel() for v in volumes])), 99)) or 1.0


def style_map(node, output_node, key: str, top: float) -> None:
    """The map ``key``'s node beside ``output_node`` (its transform and folder): a colour table from 0
    (or symmetric about 0 for a signed map) to ``top``, and a colour legend."""
    _, colors, title, signed = MAP_STYLES[key]
    node.SetAndObserveTransformNodeID(output_node.GetTransformNodeID())
    place_beside(output_node, node)
    display = node.GetDisplayNode()
    display.SetAutoWindowLevel(False)
    window, level = (2 * top, 0.0) if signed else (top, top / 2)
    display.SetWindowLevel(window, level)
    display.SetAndObserveColorNodeID(colors)
    legend = slicer.modules.colors.logic().AddDefaultColorLegendDisplayNode(node)
    if legend is not None:
        legend.SetTitleText(title)


def show(node) -> None:
    slicer.util.setSliceViewerLayers(background=node, foreground=None, fit=True)


#: Overlay opacity of a map over the image it belongs to.
MAP_OPACITY = 0.5


def compare(input_node, output_node, map_nodes: Optional[dict] = None) -> bool:
    """Input left, output right, in slice views linked while they are shown (scrolling one moves the
    other; :func:`link_while_compared`); with ``map_nodes`` (from a run), a map in colour over the
    result: the confidence map, or the consistency map when it is the only one; with both, the
    consistency map goes over the input (it lies on the acquired grid). False, showing nothing, where
    Slicer has no views (``--no-main-window``: no layout manager)."""
    maps = map_nodes or {}
    over_result = maps.get("confidence_map") or maps.get("consistency_map")
    over_input = maps.get("consistency_map") if "confidence_map" in maps else None
    layout = slicer.app.layoutManager()
    if layout is None:
        return False
    layout.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    slicer.app.processEvents()       # the new views get their sizes: fitting before would fit the old ones
    orientation = layout.sliceWidget("Red").mrmlSliceNode().GetOrientation()
    for view, node, overlay in (("Red", input_node, over_input), ("Yellow", output_node, over_result)):
        widget = layout.sliceWidget(view)
        widget.mrmlSliceNode().SetOrientation(orientation)
        composite = widget.mrmlSliceCompositeNode()
        composite.SetBackgroundVolumeID(node.GetID())
        composite.SetForegroundVolumeID(overlay.GetID() if overlay is not None else None)
        composite.SetForegroundOpacity(MAP_OPACITY if overlay is not None else 0.0)
        widget.sliceLogic().FitSliceToBackground()
    link_while_compared(layout, [layout.sliceWidget(v).mrmlSliceCompositeNode() for v in ("Red", "Yellow")])
    return True


#: While Compare's views are linked: (the layout manager, its layoutChanged slot that unlinks them).
_compared = None


def link_while_compared(layout, composites) -> None:
    """Link Compare's views until the layout changes to another than side by side; then each gets back
    the linking it had before. Slicer's link button links every view at once, and CompareVolumes links
    only views of its own layout: Compare should not leave two of the user's views linked."""
    global _compared
    if _compared is None or _compared[0] is not layout:
        before = [(c, c.GetLinkedControl()) for c in composites]

        def give_back(new_layout) -> None:
            global _compared
            if new_layout == slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView:
                return                      # still the comparison (a view maximized and back)
            for composite, linked in before:
                composite.SetLinkedControl(linked)
            layout.layoutChanged.disconnect(give_back)
            _compared = None

        layout.layoutChanged.connect(give_back)
        _compared = (layout, give_back)
    for composite in composites:
        composite.SetLinkedControl(True)

"""Stand-in for ``slicer``: a scene of volume nodes with the calls VolumetricSRLib makes (see README.md)."""
from __future__ import annotations

import itertools
import tempfile

import numpy as np

IS_STANDIN = True


class ImageData:
    """Holds the voxels ``[k, j, i]`` (real Slicer: vtkImageData)."""

    def __init__(self, array):
        self.array = array

    def GetDimensions(self):
        return tuple(reversed(self.array.shape[:3]))

    def GetNumberOfScalarComponents(self):
        """A 4-D array ``[k, j, i, c]`` holds c components per voxel (updateVolumeFromArray's vectors)."""
        return self.array.shape[3] if self.array.ndim == 4 else 1


class vtkMRMLNode:
    _ids = itertools.count(1)
    classes = ("vtkMRMLNode",)

    def __init__(self, name=""):
        self._name, self._id = name, f"{self.classes[0]}{next(self._ids)}"
        self._attributes = {}

    def GetName(self):
        return self._name

    def GetAttribute(self, name):
        """As VTK/MRML: the value, or None where the attribute is not set."""
        return self._attributes.get(name)

    def SetAttribute(self, name, value):
        self._attributes[name] = str(value)

    def SetName(self, name):
        self._name = name

    def GetID(self):
        return self._id

    def IsA(self, class_name):
        return class_name in self.classes

    def GetClassName(self):
        return self.classes[0]

    def CreateNodeInstance(self):
        """A new node of the same class, in no scene (vtkMRMLNode::CreateNodeInstance)."""
        return type(self)()

    def CopyContent(self, node, deepCopy=True):
        """vtkMRMLNode::CopyContent: the attributes; not the name, ID nor references."""
        self._attributes = dict(node._attributes)


class vtkMRMLScalarVolumeDisplayNode(vtkMRMLNode):
    classes = ("vtkMRMLScalarVolumeDisplayNode", "vtkMRMLNode")

    def __init__(self, name=""):
        super().__init__(name)
        self.window, self.level, self.auto, self.color = 256.0, 128.0, True, "vtkMRMLColorTableNodeGrey"

    def GetWindow(self):
        return self.window

    def GetLevel(self):
        return self.level

    def SetWindowLevel(self, window, level):
        self.window, self.level = float(window), float(level)

    def SetAutoWindowLevel(self, auto):
        self.auto = bool(auto)

    def GetColorNodeID(self):
        return self.color

    def SetAndObserveColorNodeID(self, color):
        self.color = color


class vtkMRMLScalarVolumeNode(vtkMRMLNode):
    classes = ("vtkMRMLScalarVolumeNode", "vtkMRMLVolumeNode", "vtkMRMLNode")

    def __init__(self, name=""):
        super().__init__(name)
        self.image, self.display, self.transform_id = None, None, None
        self.ijk_to_ras = np.eye(4)

    def GetImageData(self):
        return self.image

    def CopyContent(self, node, deepCopy=True):
        """vtkMRMLVolumeNode::CopyContent: the voxels (copied, or shared when not ``deepCopy``) and the
        IJK-to-RAS (CopyOrientation), with the attributes; the transform and display nodes stay."""
        super().CopyContent(node, deepCopy)
        image = node.GetImageData()
        self.image = None if image is None else ImageData(np.array(image.array)) if deepCopy else image
        self.ijk_to_ras = np.array(node.ijk_to_ras)

    def GetIJKToRASMatrix(self, matrix):
        for r in range(4):
            for c in range(4):
                matrix.SetElement(r, c, self.ijk_to_ras[r, c])

    def SetIJKToRASMatrix(self, matrix):
        self.ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])

    def GetSpacing(self):
        return tuple(float(s) for s in np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0))

    def GetOrigin(self):
        return tuple(float(o) for o in self.ijk_to_ras[:3, 3])

    def GetDisplayNode(self):
        return self.display

    def CreateDefaultDisplayNodes(self):
        if self.display is None:
            self.display = mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")

    def GetTransformNodeID(self):
        return self.transform_id

    def SetAndObserveTransformNodeID(self, node_id):
        self.transform_id = node_id


class vtkMRMLLabelMapVolumeNode(vtkMRMLScalarVolumeNode):
    classes = ("vtkMRMLLabelMapVolumeNode",) + vtkMRMLScalarVolumeNode.classes


# Slicer's diffusion volumes are scalar volume nodes too (vtkMRMLDiffusionWeightedVolumeNode and
# vtkMRMLTensorVolumeNode derive from vtkMRMLScalarVolumeNode), so GetNodesByClass finds them.
class vtkMRMLDiffusionWeightedVolumeNode(vtkMRMLScalarVolumeNode):
    classes = ("vtkMRMLDiffusionWeightedVolumeNode",) + vtkMRMLScalarVolumeNode.classes


class vtkMRMLTensorVolumeNode(vtkMRMLScalarVolumeNode):
    classes = ("vtkMRMLTensorVolumeNode",) + vtkMRMLScalarVolumeNode.classes


# vtkMRMLVectorVolumeNode.h: "class VTK_MRML_EXPORT vtkMRMLVectorVolumeNode : public vtkMRMLTensorVolumeNode"
class vtkMRMLVectorVolumeNode(vtkMRMLTensorVolumeNode):
    classes = ("vtkMRMLVectorVolumeNode",) + vtkMRMLTensorVolumeNode.classes


class vtkMRMLDiffusionTensorVolumeNode(vtkMRMLTensorVolumeNode):
    classes = ("vtkMRMLDiffusionTensorVolumeNode", "vtkMRMLDiffusionImageVolumeNode") + vtkMRMLTensorVolumeNode.classes


class vtkMRMLTableNode(vtkMRMLNode):
    classes = ("vtkMRMLTableNode", "vtkMRMLNode")
    columns = None     # {name: numpy array}, set by util.updateTableFromArray


class vtkMRMLPlotSeriesNode(vtkMRMLNode):
    classes = ("vtkMRMLPlotSeriesNode", "vtkMRMLNode")
    # vtkMRMLPlotSeriesNode.h: enum { PlotTypeLine, PlotTypeBar, PlotTypeScatter, PlotTypeScatterBar }
    PlotTypeLine, PlotTypeBar, PlotTypeScatter, PlotTypeScatterBar = 0, 1, 2, 3

    def SetAndObserveTableNodeID(self, node_id):
        self.table_id = node_id

    def SetXColumnName(self, name):
        self.x = name

    def SetYColumnName(self, name):
        self.y = name

    def SetPlotType(self, plot_type):
        self.plot_type = plot_type


class vtkMRMLPlotChartNode(vtkMRMLNode):
    classes = ("vtkMRMLPlotChartNode", "vtkMRMLNode")

    def __init__(self, name=""):
        super().__init__(name)
        self.series_ids = []

    def AddAndObservePlotSeriesNodeID(self, node_id):
        self.series_ids.append(node_id)

    def SetXAxisTitle(self, title):
        self.x_title = title

    def SetYAxisTitle(self, title):
        self.y_title = title


_CLASSES = {c.__name__: c for c in (vtkMRMLScalarVolumeNode, vtkMRMLLabelMapVolumeNode, vtkMRMLVectorVolumeNode,
                                         vtkMRMLDiffusionWeightedVolumeNode, vtkMRMLTensorVolumeNode,
                                         vtkMRMLDiffusionTensorVolumeNode,
                                    vtkMRMLScalarVolumeDisplayNode, vtkMRMLTableNode, vtkMRMLPlotSeriesNode,
                                    vtkMRMLPlotChartNode)}


class _DICOMDatabase:
    """``slicer.dicomDatabase.instanceValue(uid, "gggg,eeee")``: a tag of one stored instance, '' if absent."""

    def __init__(self):
        self.instances = {}       # uid -> {"gggg,eeee": value}; tests fill it as DICOM import would

    def instanceValue(self, uid, tag):
        return self.instances.get(uid, {}).get(tag, "")


dicomDatabase = _DICOMDatabase()


class vtkMRMLScene:
    # vtkMRMLScene.h: StateEvent | StartEvent | CloseState, StateEvent | EndEvent | CloseState
    StartCloseEvent, EndCloseEvent = 0x2000 | 0x0100 | 0x0003, 0x2000 | 0x0200 | 0x0003

    def __init__(self):
        self.nodes = []
        self.singletons = {}      # parameter nodes by module: they survive Clear, their values do not
        self.observers = {}       # tag -> (event, callback)
        self.collections = []     # every GetNodesByClass result
        self.unique_names = {}    # base name -> last index GenerateUniqueName gave (vtkMRMLScene::UniqueNames)
        self._tags = itertools.count(1)

    def GetFirstNodeByClass(self, class_name):
        return next(iter(self.nodes_of(class_name)), None)

    def AddObserver(self, event, callback, priority=0.0):
        tag = next(self._tags)
        self.observers[tag] = (event, callback)
        return tag

    def RemoveObserver(self, tag):
        self.observers.pop(tag, None)

    def InvokeEvent(self, event):
        for observed, callback in list(self.observers.values()):
            if observed == event:
                callback(self, event)

    def Clear(self, *_):
        """As vtkMRMLScene::Clear (File > Close Scene): StartCloseEvent, the nodes removed, EndCloseEvent."""
        self.InvokeEvent(self.StartCloseEvent)
        self.nodes.clear()
        for node in self.singletons.values():     # Clear(0) resets singletons rather than removing them
            node.parameters.clear()
        vtkMRMLSubjectHierarchyNode.instance = vtkMRMLSubjectHierarchyNode()
        self.unique_names.clear()                 # vtkMRMLScene::Clear: UniqueNames.clear()
        self.InvokeEvent(self.EndCloseEvent)

    def AddNewNodeByClass(self, class_name, name=""):
        node = _CLASSES[class_name](name)
        self.nodes.append(node)
        vtkMRMLSubjectHierarchyNode.instance.add(node)
        return node

    def RemoveNode(self, node):
        self.nodes.remove(node)
        vtkMRMLSubjectHierarchyNode.instance.remove(node)
        if getattr(node, "display", None) in self.nodes:
            self.nodes.remove(node.display)
        for other in list(self.nodes):      # vtkMRMLScene::RemoveNodeReferences: references to it go
            if hasattr(other, "_node_removed"):
                other._node_removed(node)

    def GetNodeByID(self, node_id):
        return next((n for n in self.nodes if n.GetID() == node_id), None)

    def GenerateUniqueName(self, name):
        """As vtkMRMLScene::GenerateUniqueName (GetUniqueNameIndex, BuildName): the first index after the
        last one given for ``name`` whose name no node has, remembered, so a name once given is never
        given again even if no node took it (until Clear); index 0 is ``name`` itself, n is ``name_n``."""
        names = {n.GetName() for n in self.nodes}
        index = self.unique_names.get(name, -1) + 1
        while (f"{name}_{index}" if index else name) in names:
            index += 1
        self.unique_names[name] = index
        return f"{name}_{index}" if index else name

    def nodes_of(self, class_name):
        """The nodes of ``class_name`` (a list; for the stand-in itself and tests' checks)."""
        return [n for n in self.nodes if n.IsA(class_name)]

    def GetNodesByClass(self, class_name):
        """As vtkMRMLScene::GetNodesByClass: a new vtkCollection the caller owns and must UnRegister
        (slicer.util.getNodesByClass does); every one handed out is kept in ``collections``."""
        import vtk

        collection = vtk.vtkCollection(self.nodes_of(class_name))
        self.collections.append(collection)
        return collection

    def leaked_collections(self):
        return [c for c in self.collections if not c.released]

    def GetNumberOfNodes(self):
        return len(self.nodes)


class vtkMRMLSubjectHierarchyNode:
    """Items are integers; 1 is the scene root. Every added data node gets an item under the root."""

    instance = None

    def __init__(self):
        self.parent, self.item_of, self._next = {}, {}, itertools.count(2)

    @classmethod
    def GetSubjectHierarchyNode(cls, scene):
        return cls.instance

    def add(self, node):
        item = next(self._next)
        self.item_of[node.GetID()] = item
        self.parent[item] = 1

    def remove(self, node):
        self.parent.pop(self.item_of.pop(node.GetID(), None), None)

    def CreateFolderItem(self, parent, name):
        item = next(self._next)
        self.parent[item] = parent
        return item

    def GetItemByDataNode(self, node):
        return self.item_of.get(node.GetID(), 0)

    def GetItemParent(self, item):
        return self.parent.get(item, 0)

    def SetItemParent(self, item, parent):
        self.parent[item] = parent


class vtkMRMLLayoutNode:
    SlicerLayoutFourUpView, SlicerLayoutSideBySideView = 3, 29


class _SliceNode:
    def __init__(self, orientation):
        self.orientation = orientation

    def GetOrientation(self):
        return self.orientation

    def SetOrientation(self, orientation):
        self.orientation = orientation


class _SliceComposite:
    def __init__(self):
        self.background = self.foreground = None
        self.linked, self.foreground_opacity = False, 0.0

    def SetBackgroundVolumeID(self, node_id):
        self.background = node_id

    def SetForegroundVolumeID(self, node_id):
        self.foreground = node_id

    def SetForegroundOpacity(self, opacity):
        self.foreground_opacity = float(opacity)

    def SetLinkedControl(self, linked):
        self.linked = bool(linked)

    def GetLinkedControl(self):
        return int(self.linked)


class _SliceLogic:
    def __init__(self, manager):
        self.manager, self.fitted = manager, []

    def FitSliceToBackground(self):
        """Fits to the view's size now: records the layout the views had then (``fitted``)."""
        self.fitted.append(self.manager.applied)


class _SliceWidget:
    def __init__(self, orientation, manager):
        self.slice_node, self.composite = _SliceNode(orientation), _SliceComposite()
        self.logic = _SliceLogic(manager)

    def mrmlSliceNode(self):
        return self.slice_node

    def mrmlSliceCompositeNode(self):
        return self.composite

    def sliceLogic(self):
        return self.logic


class _Signal:
    """A Qt signal as PythonQt shows it: ``connect``/``disconnect`` a callable; ``emit`` calls them."""

    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def disconnect(self, slot):
        self.slots.remove(slot)

    def emit(self, *args):
        for slot in list(self.slots):
            slot(*args)


class _LayoutManager:
    """``layout``: the one set; ``applied``: the one the views have their sizes for. As in Slicer, a
    new layout's views get their sizes only when Qt processes its events (``slicer.app.processEvents``),
    so a slice fitted before that is fitted to the old size. ``setLayout`` to another layout emits
    ``layoutChanged(layout)`` (qMRMLLayoutManager::setLayout: nothing for the same one)."""

    def __init__(self):
        self.layout = self.applied = 2
        self.layoutChanged = _Signal()
        self.widgets = {name: _SliceWidget(orientation, self)
                        for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal"))}

    def setLayout(self, layout):
        if layout != self.layout:
            self.layout = layout
            self.layoutChanged.emit(layout)

    def sliceWidget(self, name):
        return self.widgets[name]


class _PlotsLogic:
    def __init__(self):
        self.shown = []

    def ShowChartInLayout(self, chart):
        self.shown.append(chart.GetID())


class vtkMRMLColorLegendDisplayNode(vtkMRMLNode):
    classes = ("vtkMRMLColorLegendDisplayNode", "vtkMRMLDisplayNode", "vtkMRMLNode")

    def __init__(self, name=""):
        super().__init__(name)
        self.title, self.primary = "", None

    def SetTitleText(self, text):
        self.title = str(text)


_CLASSES["vtkMRMLColorLegendDisplayNode"] = vtkMRMLColorLegendDisplayNode


class _ColorsLogic:
    def AddDefaultColorLegendDisplayNode(self, displayable):
        """As vtkSlicerColorLogic: a legend for the node's first display node, or None without one."""
        display = displayable.GetDisplayNode()
        if display is None:
            return None
        legend = next((n for n in mrmlScene.nodes_of("vtkMRMLColorLegendDisplayNode") if n.primary is display),
                      None)
        if legend is None:
            legend = mrmlScene.AddNewNodeByClass("vtkMRMLColorLegendDisplayNode")
            legend.primary = display
        return legend


class modules:
    """``slicer.modules.plots.logic()``, ``slicer.modules.colors.logic()`` and ``slicer.modules.sequences``
    (its ``logic()`` and ``showSequenceBrowser``; set below) only."""

    class plots:
        _logic = _PlotsLogic()

        @classmethod
        def logic(cls):
            return cls._logic

    class colors:
        _logic = _ColorsLogic()

        @classmethod
        def logic(cls):
            return cls._logic


class _CommandOptions:
    noMainWindow = False      # tests set it: Slicer --no-main-window


class _App:
    majorVersion, minorVersion = 5, 10      # tests set others (slicer.packaging since 5.12)

    def __init__(self):
        self.layout_manager = _LayoutManager()
        self.temporaryPath = tempfile.gettempdir()

    def layoutManager(self):
        """The views' layout manager; None under ``--no-main-window``, as in Slicer (the main window
        makes it: qSlicerApplication::layoutManager)."""
        return None if self.commandOptions().noMainWindow else self.layout_manager

    def commandOptions(self):
        return _CommandOptions()

    testing = False     # Slicer started with --testing (ctest does); tests set it

    def testingEnabled(self):
        return self.testing

    def processEvents(self):
        """Real Slicer runs the Qt event loop here; in the stand-in the only pending event is a new
        layout's resize (see _LayoutManager)."""
        self.layout_manager.applied = self.layout_manager.layout


vtkMRMLSubjectHierarchyNode.instance = vtkMRMLSubjectHierarchyNode()
mrmlScene = vtkMRMLScene()
app = _App()

from . import util  # noqa: E402
from .sequences import vtkMRMLSequenceBrowserNode, vtkMRMLSequenceNode, vtkSlicerSequencesLogic  # noqa: E402

_CLASSES.update({c.__name__: c for c in (vtkMRMLSequenceNode, vtkMRMLSequenceBrowserNode)})


class _SequencesModule:
    """``slicer.modules.sequences``: its logic, and ``showSequenceBrowser`` (qSlicerSequencesModule: the
    browser in the toolbar; recorded in ``util.calls``)."""

    _logic = vtkSlicerSequencesLogic()

    @classmethod
    def logic(cls):
        return cls._logic

    @staticmethod
    def showSequenceBrowser(browser):
        util.calls.append(("showSequenceBrowser", browser.GetID()))
        return True


modules.sequences = _SequencesModule

"""Panel plumbing shared by the VolumetricSR and VolumetricSRTraining module widgets.

The parameter-node lifecycle of Slicer's scripted-module template (enter/exit, connect the GUI,
observe the node), combo boxes whose items carry values, and a polling timer for background work.
"""


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
        import vtk

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

    def pollTimer(self, interval_ms: int, poll):
        """A stopped timer that calls ``poll`` every ``interval_ms`` once started."""
        import qt

        timer = qt.QTimer()
        timer.setInterval(interval_ms)
        timer.timeout.connect(poll)
        return timer

"""The live loss curve: a table node and a plot chart in Slicer's plot view."""
from __future__ import annotations

import numpy as np
import slicer


class LossPlot:
    """Creates the table, series and chart nodes once; :meth:`update` rewrites the table."""

    def __init__(self, name: str):
        scene = slicer.mrmlScene
        self.table = scene.AddNewNodeByClass("vtkMRMLTableNode", f"{name} training loss")
        self.series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{name} loss")
        self.series.SetAndObserveTableNodeID(self.table.GetID())
        self.series.SetXColumnName("step")
        self.series.SetYColumnName("loss")
        self.series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
        self.chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{name} training")
        self.chart.AddAndObservePlotSeriesNodeID(self.series.GetID())
        self.chart.SetXAxisTitle("step")
        self.chart.SetYAxisTitle("training loss")
        self._shown = False

    def update(self, history) -> None:
        if not history.loss:
            return
        steps, losses = (np.array(c, dtype=float) for c in zip(*history.loss))
        slicer.util.updateTableFromArray(self.table, [steps, losses], ["step", "loss"])
        if not self._shown:
            slicer.modules.plots.logic().ShowChartInLayout(self.chart)
            self._shown = True

"""Render the modules' .ui files with PySide6 (dev tool, not needed by Slicer): screenshot and load test.

Slicer's custom widgets are replaced by plain Qt stand-ins that accept the same Designer properties
(qMRMLWidget -> QWidget, ctkCollapsibleButton -> a titled QGroupBox, qMRMLNodeComboBox -> QComboBox,
ctkPathLineEdit -> QLineEdit); :func:`child_widget_variables` shows the widgets as PythonQt does, for
the tests. Usage: ``python Testing/Python/ui_preview.py`` writes
Resources/Screenshots/VolumetricSR.png and VolumetricSRTraining.png from real core output (methods,
device list, the geometry of a real thick CT when ../shared/data is present).
"""
from __future__ import annotations

import os
import sys
import types
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Property, QFile, Signal, Slot  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402
from PySide6.QtWidgets import QApplication, QComboBox, QGroupBox, QLineEdit, QStyleFactory, QWidget  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


class qMRMLWidget(QWidget):
    @Slot(object)
    def setMRMLScene(self, scene):
        pass


class ctkCollapsibleButton(QGroupBox):
    """Header like ctk's (an arrow and the title); collapsed hides the contents."""

    def _get_text(self):
        return self.title()[2:]

    def _set_text(self, text):
        self.setTitle(f"\u25be {text}")

    def _get_collapsed(self):
        return getattr(self, "_collapsed", False)

    def _set_collapsed(self, collapsed):
        self._collapsed = bool(collapsed)
        self.setTitle(("\u25b8 " if collapsed else "\u25be ") + self.title()[2:])

    def fold(self):
        """After loading: a collapsed button shows its header only."""
        if self._get_collapsed():
            for c in self.findChildren(QWidget):
                c.setVisible(False)
            self.setFlat(True)
            self.setFixedHeight(self.fontMetrics().height() + 6)

    text = Property(str, _get_text, _set_text)
    collapsed = Property(bool, _get_collapsed, _set_collapsed)


class qMRMLNodeComboBox(QComboBox):
    def _get(self):
        return None

    def _set(self, value):
        pass

    nodeTypes = Property("QStringList", lambda self: [], _set)
    showChildNodeTypes = addEnabled = removeEnabled = noneEnabled = renameEnabled = Property(bool, lambda self: False, _set)
    noneDisplay = Property(str, lambda self: "", _set)
    currentNodeChanged = Signal(object)

    @Slot(object)
    def setMRMLScene(self, scene):
        pass

    def currentNode(self):
        return getattr(self, "_node", None)

    def setCurrentNode(self, node):
        """Shows ``node`` (no scene here: any node) and emits currentNodeChanged when it is another."""
        if node is not self.currentNode():
            self._node = node
            self.currentNodeChanged.emit(node)


class ctkPathLineEdit(QLineEdit):
    currentPathChanged = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.textChanged.connect(self.currentPathChanged)

    currentPath = Property(str, lambda self: self.text(), lambda self, path: self.setText(path), notify=currentPathChanged)


def load_ui(path: Path) -> QWidget:
    QApplication.instance() or QApplication([])
    loader = QUiLoader()
    for cls in (qMRMLWidget, ctkCollapsibleButton, qMRMLNodeComboBox, ctkPathLineEdit):
        loader.registerCustomWidget(cls)
    f = QFile(str(path))
    f.open(QFile.ReadOnly)
    widget = loader.load(f)
    f.close()
    if widget is None:
        raise RuntimeError(f"{path}: {loader.errorString()}")
    return widget


class PythonQtStyle:
    """A PySide6 widget seen as PythonQt shows it: Qt properties read and written as attributes."""

    def __init__(self, widget):
        object.__setattr__(self, "_w", widget)

    def _property(self, name):
        return self._w.metaObject().indexOfProperty(name) >= 0

    def __getattr__(self, name):
        if self._property(name):
            return self._w.property(name)
        attr = getattr(self._w, name)
        if isinstance(attr, (types.BuiltinMethodType, types.MethodType)):     # PythonQt passes the widgets themselves
            return lambda *args: attr(*(a._w if isinstance(a, PythonQtStyle) else a for a in args))
        return attr

    def __setattr__(self, name, value):
        if not self._property(name):
            raise AttributeError(f"{type(self._w).__name__} has no Qt property {name!r}")
        self._w.setProperty(name, value)


def child_widget_variables(root):
    """As ``slicer.util.childWidgetVariables``: the named child widgets as attributes, PythonQt style."""
    return types.SimpleNamespace(**{w.objectName(): PythonQtStyle(w) for w in root.findChildren(QWidget)
                                    if w.objectName()})


def child(widget, name):
    return widget.findChild(QWidget, name)


def fill_volumetricsr(w) -> None:
    """Show what the panel shows after a run: real method texts, device list and geometry summary."""
    sys.path[:0] = [str(REPO / "VolumetricSR")]
    from volumetricsr import get_method, read_volume
    from volumetricsr.data.geometry import plan_grid
    from VolumetricSRLib.devices import device_choices
    from VolumetricSRLib.panel import default_method, method_html, method_items, run_time_text
    from VolumetricSRLib.settings import BACKEND_TITLES, offered

    data = REPO.parent / "shared" / "data" / "chest_ct_8mm_lungpetctdx.nii.gz"
    name = "Lung-PET-CT-Dx A0002 8 mm"
    if data.is_file():
        volume = read_volume(data)
        summary = f"{volume.describe()}\nThrough-plane {plan_grid(volume, 1.0).describe()}"
    else:
        from volumetricsr import Volume
        import numpy as np

        volume = Volume(np.zeros((30, 512, 512), np.int16), (0.647, 0.647, 8.0))
        name, summary = "thick CT", "512 x 512 x 30 voxels, spacing 0.647 x 0.647 x 8 mm, int16"
    child(w, "inputSelector").addItem(name)
    child(w, "geometryLabel").setText(summary)
    methods = child(w, "methodComboBox")
    for key, title in method_items():
        methods.addItem(title, key)
    name_default, why = default_method()          # what a new panel opens on
    method = get_method(name_default)
    methods.setCurrentIndex(methods.findData(method.name))
    child(w, "methodDescriptionLabel").setText(method_html(method, why, run_time_text(method, volume, 1.0)))
    for n in ("modelLabel", "modelComboBox", "importModelButton", "modelCardLabel"):
        child(w, n).setVisible(False)
    child(w, "isotropicCheckBox").setChecked(False)
    child(w, "spacingSpinBox").setValue(1.0)
    for n, field in (("axisComboBox", "axis"), ("precisionComboBox", "precision"), ("sliceProfileComboBox", "sliceProfile")):
        child(w, n).addItems(list(offered()[field].choices))
    child(w, "outputSelector").addItem("Create new volume")
    for value, label in device_choices():
        child(w, "deviceComboBox").addItem(label, value)
    child(w, "deviceNoticeLabel").setVisible(False)
    child(w, "backendComboBox").addItems([BACKEND_TITLES.get(v, v) for v in offered()["backend"].choices])
    for n in ("backendComboBoxLabel", "backendComboBox"):          # selfsr takes no backend
        child(w, n).setVisible("backend" in method.options)
    child(w, "applyButton").setEnabled(True)
    child(w, "cancelButton").setVisible(False)
    child(w, "progressBar").setVisible(False)
    child(w, "statusLabel").setText(f"Done: {name} SR {method.name}")


def fill_training(w) -> None:
    from volumetricsr import available_methods
    from VolumetricSRLib.devices import device_choices

    for m in available_methods():
        if m.needs_model:
            child(w, "methodComboBox").addItem(m.title or m.name, m.name)
    child(w, "dataPathLineEdit").setText("/data/RPLHR-CT")
    child(w, "modelIdLineEdit").setText("tvsrn-ct-x5-mine")
    for value, label in device_choices():
        child(w, "deviceComboBox").addItem(label, value)
    child(w, "progressBar").setVisible(False)
    child(w, "stopButton").setEnabled(False)


def render(module: str, fill, out: Path, width: int = 420) -> Path:
    app = QApplication.instance() or QApplication([])
    app.setStyle(QStyleFactory.create("Fusion"))
    w = load_ui(REPO / module / "Resources" / "UI" / f"{module}.ui")
    fill(w)
    for button in w.findChildren(ctkCollapsibleButton):
        button.fold()
    w.resize(width, w.sizeHint().height())
    w.adjustSize()
    w.resize(width, w.sizeHint().height())
    out.parent.mkdir(parents=True, exist_ok=True)
    w.grab().save(str(out))
    return out


if __name__ == "__main__":
    shots = REPO / "Resources" / "Screenshots"
    print(render("VolumetricSR", fill_volumetricsr, shots / "VolumetricSR.png"))
    print(render("VolumetricSRTraining", fill_training, shots / "VolumetricSRTraining.png"))

"""Stand-in for ``slicer.util``: the functions VolumetricSRLib calls (see ../README.md).

``calls`` records the calls that have effects outside the scene (views, dialogs, pip) for tests.
"""
import contextlib
import logging
import os

import numpy as np

calls = []
#: The environment Slicer started with (``slicer.util.startupEnvironment()``): taken when the stand-in loads.
STARTUP_ENVIRONMENT = dict(os.environ)


def startupEnvironment():
    return dict(STARTUP_ENVIRONMENT)


class VTKObservationMixin:
    """As Slicer's: an object with ``AddObserver`` (the scene) is observed through it (its tag kept
    for ``RemoveObserver``); the stand-in parameter nodes keep an ``observers`` list; others are ignored."""

    def __init__(self):
        self.Observations = []

    def addObserver(self, obj, event, callback):
        tag = obj.AddObserver(event, callback, 0.0) if hasattr(obj, "AddObserver") else None
        self.Observations.append((obj, event, callback, tag))
        if tag is None and hasattr(obj, "observers"):
            obj.observers.append(callback)

    def removeObserver(self, obj, event, callback):
        tag = next(t for o, e, c, t in self.Observations if (o, e, c) == (obj, event, callback))
        self.Observations.remove((obj, event, callback, tag))
        if tag is not None:
            obj.RemoveObserver(tag)
        elif hasattr(obj, "observers"):
            obj.observers.remove(callback)

    def removeObservers(self):
        for obj, event, callback, _ in list(self.Observations):
            self.removeObserver(obj, event, callback)
#: What the user answers a confirmation (True: OK or Yes); tests set it.
confirm_answer = True
#: qt.QMessageBox.Ok, Cancel, Yes, No (QMessageBox::StandardButton; PythonQt's enum values are ints).
_OK, _CANCEL, _YES, _NO = 0x00000400, 0x00400000, 0x00004000, 0x00010000


def loadUI(path):
    """Real Slicer builds the widget from the .ui file; widget tests set this (see test_slicer_widget.py)."""
    raise NotImplementedError("slicer_standin: a widget test must provide loadUI")


def childWidgetVariables(widget):
    raise NotImplementedError("slicer_standin: a widget test must provide childWidgetVariables")


#: The modules' panels made so far, by module name (Slicer makes one per module, when first needed).
module_panels = {}


def _module_panel(module):
    """The module's panel, made once as qSlicerScriptedLoadableModule makes it: a
    qSlicerScriptedLoadableModuleWidget given the module's ``<module>Widget`` class, then set up."""
    if module not in module_panels:
        import importlib

        from slicer.ScriptedLoadableModule import qSlicerScriptedLoadableModuleWidget

        panel = qSlicerScriptedLoadableModuleWidget()
        panel.setPythonSource(getattr(importlib.import_module(module), module + "Widget"))
        panel.setup()
        module_panels[module] = panel
    return module_panels[module]


def getModuleWidget(module):
    """As Slicer's: the module's Python widget (``widgetRepresentation().self()``), its panel made if needed."""
    return _module_panel(module).self()


def selectModule(module):
    """As the module selector: the shown module's panel is left (``exit``), ``module``'s is made if
    needed and entered."""
    for name, panel in module_panels.items():
        if panel.isEntered and name != module:
            panel.exit()
    panel = _module_panel(module)
    if not panel.isEntered:
        panel.enter()


@contextlib.contextmanager
def tryWithErrorDisplay(message=None, show=True, waitCursor=False):
    """As in Slicer (Base/Python/slicer/util.py): show the error, unless ``show`` is False or Slicer
    runs in testing mode (``slicer.app.testingEnabled()``: no dialog), then re-raise."""
    import slicer

    try:
        yield
    except Exception as exc:
        if show and not slicer.app.testingEnabled():
            errorDisplay(f"{message}\n\n{exc}" if message is not None else str(exc))
        raise


def mainWindow():
    """The main window, or None under ``--no-main-window`` (only its existence matters here)."""
    import slicer

    return None if slicer.app.commandOptions().noMainWindow else "qSlicerMainWindow"


def _messageDisplay(kind, logLevel, text, testingReturnValue, mainWindowNeeded=False, answer=None):
    """As Slicer's (Base/Python/slicer/util.py): the text is logged; in testing mode
    (``slicer.app.testingEnabled()``) no dialog, ``testingReturnValue`` is returned; a message that
    needs the main window is only logged without one; else the dialog (recorded in ``calls``) returns
    the button the user clicks (``answer``)."""
    import slicer

    logging.log(logLevel, text)
    if slicer.app.testingEnabled():
        logging.info(f"Testing mode is enabled: Returning {testingReturnValue} and skipping message box [{kind}].")
        return testingReturnValue
    if mainWindowNeeded and mainWindow() is None:
        return None
    calls.append((kind, text))
    return answer


def errorDisplay(text, **kwargs):
    _messageDisplay("errorDisplay", logging.ERROR, text, None, mainWindowNeeded=True)


def warningDisplay(text, **kwargs):
    _messageDisplay("warningDisplay", logging.WARNING, text, None, mainWindowNeeded=True)


def infoDisplay(text, **kwargs):
    _messageDisplay("infoDisplay", logging.INFO, text, None, mainWindowNeeded=True)


def getNodesByClass(className, scene=None):
    """As Slicer's: a list of the scene's nodes of ``className``, the collection released."""
    import slicer

    nodes = slicer.mrmlScene.GetNodesByClass(className)
    nodes.UnRegister(slicer.mrmlScene)
    return list(nodes)


def arrayFromVolume(node):
    """A view of the voxels, as in Slicer (writes go to the node)."""
    if node.GetImageData() is None:
        raise RuntimeError("volume has no image data")
    return node.GetImageData().array


def updateVolumeFromArray(node, array):
    """Deep copy of ``array`` into the node, as in Slicer (Base/Python/slicer/util.py): a 1-D array is
    one line and a 2-D one one slice of a single-slice volume, both copied into float64 (Slicer's
    ``np.zeros``); a 4-D array ``[k, j, i, c]`` gives c components per voxel; other shapes, and
    int64, are rejected as Slicer does."""
    from slicer import ImageData

    array = np.asarray(array)
    if array.ndim == 1:
        array = np.array(array, dtype=np.float64).reshape(1, 1, -1)
    elif array.ndim == 2:
        array = np.array(array, dtype=np.float64)[np.newaxis]
    elif array.ndim not in (3, 4):
        raise RuntimeError(f"Unsupported numpy array shape: {array.shape}")
    if array.dtype == np.int64:
        raise RuntimeError("Unsupported numpy array type: long long")
    node.image = ImageData(np.array(array, copy=True))


def setSliceViewerLayers(background="keep-current", foreground="keep-current", fit=False, **kwargs):
    calls.append(("setSliceViewerLayers", background, foreground, fit))


def confirmOkCancelDisplay(text, windowTitle=None, **kwargs):
    """As Slicer's: ``_messageDisplay(..., True, ...) == qt.QMessageBox.Ok``, so in testing mode, where
    ``_messageDisplay`` returns True without asking, the answer is False (True is not 0x400), whatever
    its docstring says (Slicer 5.0 to main)."""
    return _messageDisplay("confirmOkCancelDisplay", logging.INFO, text, True,
                           answer=_OK if confirm_answer else _CANCEL) == _OK


def confirmYesNoDisplay(text, windowTitle=None, **kwargs):
    """As Slicer's, and as :func:`confirmOkCancelDisplay`: False in testing mode."""
    return _messageDisplay("confirmYesNoDisplay", logging.INFO, text, True,
                           answer=_YES if confirm_answer else _NO) == _YES


def pip_install(requirements, **kwargs):
    """As Slicer's: from 5.12 on it hands everything to ``slicer.packaging.pip_install`` (which records
    the call); older versions take the requirements only (a keyword fails) and record the call here."""
    import slicer

    if (slicer.app.majorVersion, slicer.app.minorVersion) >= (5, 12):
        from slicer.packaging import pip_install as _pip_install

        return _pip_install(requirements, **kwargs)
    if kwargs:
        raise TypeError(f"pip_install() got an unexpected keyword argument {next(iter(kwargs))!r}")
    calls.append(("pip_install", requirements))


def updateTableFromArray(table, narrays, columnNames=None):
    """Columns of ``table`` from a list of 1-D arrays (deep copies), as in Slicer."""
    table.columns = {name: np.array(a, copy=True) for name, a in zip(columnNames, narrays)}
    return table


def launchConsoleProcess(args, useStartupEnvironment=True, updateEnvironment=None, cwd=None):
    """As Slicer's: text output with stderr merged, in Slicer's startup environment (variables set in
    Slicer's own process since it started are not passed on) plus ``updateEnvironment``. A Python the
    modules start is ``PythonSlicer``, a CTK launcher that runs the real Python as its child and
    forwards no signals: here every command runs under ``launcher.py``, which behaves the same."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    calls.append(("launchConsoleProcess", list(args)))
    env = dict(STARTUP_ENVIRONMENT if useStartupEnvironment else os.environ)
    env.update(updateEnvironment or {})
    launcher = Path(__file__).resolve().parents[1] / "launcher.py"
    return subprocess.Popen([sys.executable, str(launcher), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, env=env, cwd=cwd)
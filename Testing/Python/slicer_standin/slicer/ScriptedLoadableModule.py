"""Stand-in for ``slicer.ScriptedLoadableModule``: the base classes' members the module files use."""
import importlib
import logging
import os
import sys
import unittest


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent, self.moduleName = parent, type(self).__name__

    def runTest(self, msec=100, **kwargs):
        """*Reload and Test*, as Slicer's: the module's ``<ModuleName>Test().runTest()``."""
        testCase = getattr(importlib.import_module(self.__module__), self.moduleName + "Test")()
        testCase.messageDelay = msec
        testCase.runTest(**kwargs)


class _Layout:
    """Collects the widgets the module adds (real Slicer: the module panel's QVBoxLayout)."""

    def __init__(self):
        self.widgets = []

    def addWidget(self, widget):
        self.widgets.append(widget)


class qMRMLWidget:
    """The parent a widget made without one gets: a plain widget, shown, with no ``isEntered``."""

    def __init__(self):
        self._layout, self.visible = None, False

    def setLayout(self, layout):
        self._layout = layout

    def layout(self):
        return self._layout

    def setMRMLScene(self, scene):
        pass

    def show(self):
        self.visible = True


class qSlicerScriptedLoadableModuleWidget:
    """A module's panel (Base/QTGUI/qSlicerScriptedLoadableModuleWidget.cxx): it has a QVBoxLayout;
    ``setPythonSource`` makes the module's widget class with the panel as parent and ``setup()`` calls
    its ``setup``; ``enter``/``exit`` as the module is shown and left (``isEntered``); ``self()`` is the
    Python widget. (Here ``setPythonSource`` takes the class rather than the file.)"""

    def __init__(self):
        self._layout, self.isEntered, self._self = _Layout(), False, None

    def layout(self):
        return self._layout

    def setPythonSource(self, widget_class):
        self._self = widget_class(self)

    def setup(self):
        self._self.setup()

    def self(self):
        return self._self

    def enter(self):
        self.isEntered = True
        self._self.enter()

    def exit(self):
        self._self.exit()
        self.isEntered = False


class ScriptedLoadableModuleWidget:
    """As Slicer's (Base/Python/slicer/ScriptedLoadableModule.py): the layout is the parent's; made
    without a parent, the widget makes its own (a qMRMLWidget with a layout), calls ``self.setup()``
    itself and shows it. ``setup`` adds nothing (the Reload and Test section is for developer mode)."""

    def __init__(self, parent=None):
        super().__init__()
        self.moduleName = type(self).__name__[:-len("Widget")] if type(self).__name__.endswith("Widget") \
            else type(self).__name__
        if not parent:
            self.parent = qMRMLWidget()
            self.parent.setLayout(_Layout())
        else:
            self.parent = parent
        self.layout = self.parent.layout()
        if not parent:
            self.setup()
            self.parent.show()

    def setup(self):
        pass

    def resourcePath(self, filename):
        module_dir = os.path.dirname(os.path.abspath(sys.modules[type(self).__module__].__file__))
        return os.path.join(module_dir, "Resources", filename)


class vtkMRMLScriptedModuleNode:
    """The raw parameter node: string parameters by name (real Slicer: a MRML node in the scene)."""

    def __init__(self, module_name):
        self.module_name, self.parameters, self.observers = module_name, {}, []


class ScriptedLoadableModuleLogic:
    def __init__(self, parent=None):
        self.moduleName = type(self).__name__[: -len("Logic")]

    def getParameterNode(self):
        """The module's parameter node: a scene singleton, the same node for every logic (as in Slicer)."""
        import slicer

        return slicer.mrmlScene.singletons.setdefault(self.moduleName, vtkMRMLScriptedModuleNode(self.moduleName))


class ScriptedLoadableModuleTest(unittest.TestCase):
    """As Slicer's (5.8 and later): ``runTest`` (*Reload and Test*) calls every method with "test" in
    its name, each after ``setUp``; an exception from one, a skip included, ends it. ctest does not
    call ``runTest``: see ``slicer.testing.runUnitTest``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.moduleTestNames = [m for m in dir(self) if "test" in m and callable(getattr(self, m))]

    def delayDisplay(self, message, requestedDelay=None, msec=None):
        pass

    def runTest(self):
        if not self.moduleTestNames:
            logging.warning("No test is defined in " + self.__class__.__name__)
            return
        self.setUpClass()
        for test_name in self.moduleTestNames:
            self.setUp()
            logging.info(f"Running {test_name}")
            getattr(self, test_name)()
            self.tearDown()
        self.tearDownClass()

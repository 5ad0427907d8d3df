"""Stand-in for ``slicer.ScriptedLoadableModule``: the base classes' members the module files use."""
import os
import sys
import unittest


class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent


class _Layout:
    """Collects the widgets the module adds (real Slicer: the module panel's QVBoxLayout)."""

    def __init__(self):
        self.widgets = []

    def addWidget(self, widget):
        self.widgets.append(widget)


class _ModuleParent:
    isEntered = True


class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        self.parent = parent or _ModuleParent()

    def setup(self):
        self.layout = _Layout()

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
    def delayDisplay(self, message, msec=None):
        pass

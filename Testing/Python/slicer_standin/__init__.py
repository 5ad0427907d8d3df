"""Stand-in for the few 3D Slicer calls VolumetricSRLib makes (see README.md); for tests only."""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


REPO = HERE.parents[2]
#: The scripted-module folders, which Slicer puts on sys.path itself.
MODULE_DIRS = (REPO / "VolumetricSR", REPO / "VolumetricSRTraining")


def install():
    """Make ``import slicer`` and ``import vtk`` load the stand-ins, and the module folders importable
    as Slicer makes them; returns the fake ``slicer``."""
    for path in (HERE, *MODULE_DIRS):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    import slicer

    if not getattr(slicer, "IS_STANDIN", False):
        raise RuntimeError(f"A real 'slicer' module ({slicer.__file__}) shadows the stand-in.")
    return slicer


def reset():
    """A fresh Slicer: no module panels and no observers left from earlier tests' widgets, an empty
    scene with no parameter nodes, the default views, no recorded calls."""
    import slicer

    slicer.util.module_panels.clear()
    slicer.mrmlScene.observers.clear()
    slicer.mrmlScene.singletons.clear()
    slicer.mrmlScene.Clear()
    slicer.mrmlScene.collections.clear()
    slicer.app.layout_manager = slicer._LayoutManager()
    slicer.util.calls.clear()

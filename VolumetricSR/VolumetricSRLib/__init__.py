"""Glue between 3D Slicer and the plain-Python ``volumetricsr`` core.

Modules here that do not name Slicer (geometry, runner, settings, dependencies, devices, modelstore)
import without it; ``scene`` and ``logic`` use ``slicer``/``vtk`` and are tested against the stand-in in
Testing/Python/slicer_standin.
"""

HOMEPAGE = "https://github.com/volumetricsr/VolumetricSR"   # the planned public repository (see CMakeLists.txt)

"""Glue between 3D Slicer and the plain-Python ``volumetricsr`` core.

Modules here that do not name Slicer (geometry, runner, settings, dependencies, devices, modelstore,
childprocess, processtask) import without it; ``scene``, ``logic``, ``widget`` (the panel) and
``selftest`` (the module's self-test) use ``slicer``/``vtk`` and are tested against the stand-in in
Testing/Python/slicer_standin.
"""
import os
import sys

# Huge pages for PyTorch's large CPU tensors: TVSRN runs 1.5x faster in the panel's worker thread
# (volumetricsr/cpu_memory.py). PyTorch reads the switch once, at its first allocation, so it is set
# here, when Slicer loads the module, before anything imports torch. Set it to 0 beforehand to opt out.
if sys.platform.startswith("linux"):
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

HOMEPAGE = "https://github.com/volumetricsr/VolumetricSR"   # the planned public repository (see CMakeLists.txt)

"""Glue between 3D Slicer and the plain-Python ``volumetricsr`` core.

Modules here that do not name Slicer (geometry, runner, settings, dependencies, devices, modelstore,
childprocess, processtask) import without it; ``scene``, ``logic``, ``widget`` (the panel) and
``selftest`` (the module's self-test) use ``slicer``/``vtk`` and are tested against the stand-in in
Testing/Python/slicer_standin.

Loading it changes nothing in Slicer's process: the network runs go to a child process, where the
core sets what speeds them up (volumetricsr.compute.threads, cpu_memory) when it loads there.
"""
HOMEPAGE = "https://github.com/volumetricsr/VolumetricSR"   # the planned public repository (see CMakeLists.txt)

"""Glue of the VolumetricSRTraining module: the trainer command line, the trainer as a
``VolumetricSRLib.processtask.ProcessTask`` (progress from its events, stop = its stop file), the
loss history and its plot in the scene.

``command``, ``logic`` and ``history`` do not import Slicer; ``plot`` does and is tested against
Testing/Python/slicer_standin.
"""

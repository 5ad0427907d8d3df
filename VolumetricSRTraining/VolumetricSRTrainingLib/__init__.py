"""Glue of the VolumetricSRTraining module: the trainer command line, the trainer process (progress
read from its JSON lines, stop = terminate), the loss history and its plot in the scene.

``command``, ``process`` and ``history`` do not import Slicer; ``plot`` does and is tested against
Testing/Python/slicer_standin.
"""

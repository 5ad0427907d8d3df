"""Data layer: volumes, reading and writing files, geometry, resampling, slice profiles, normalisation."""

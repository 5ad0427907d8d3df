"""Shared by every layer: the version, errors, the option declarations, progress events."""
__version__ = "0.1.0"

"""Entry points: the Python API, the command line, batch runs, the demo."""

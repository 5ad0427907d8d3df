"""Stand-in for PythonQt's ``qt`` module: the module files import it; only their widgets use it."""

"""TVSRN (RPLHR-CT paper): the method, its training task."""

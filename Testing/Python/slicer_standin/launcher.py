"""Stand-in for CTK's launcher (``PythonSlicer``, ``Slicer``): it starts the real program as its
child and waits for it. Like the real one it forwards no signals: terminating or killing the
launcher leaves the child running, still writing to the same output.

    python launcher.py PROGRAM [ARGS...]
"""
import subprocess
import sys

sys.exit(subprocess.Popen(sys.argv[1:]).wait())

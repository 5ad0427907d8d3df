"""Stand-in for ``slicer.packaging``, which Slicer has from 5.12 on (and 5.11 previews built since
commit 2cf12e60e4, 'ENH: Add slicer.packaging module', April 2026): importing it where
``slicer.app`` says an older version fails, as there. Only ``pip_install``, which records the call
(Base/Python/slicer/packaging.py: ``show_progress`` True by default shows a modal progress dialog;
``requester`` names who asks)."""
import slicer

if (slicer.app.majorVersion, slicer.app.minorVersion) < (5, 12):
    raise ModuleNotFoundError("No module named 'slicer.packaging'", name="slicer.packaging")


def pip_install(requirements, constraints=None, no_deps_requirements=None, skip_packages=None, blocking=True,
                show_progress=True, requester=None, parent=None, logCallback=None, completedCallback=None):
    slicer.util.calls.append(("pip_install", requirements, f"show_progress={show_progress}", f"requester={requester}"))

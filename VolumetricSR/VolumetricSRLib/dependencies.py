"""First-use Python dependencies: detect without importing, ask once, install, obey ``interactive``.

``torch`` comes only from the PyTorch extension (its PyTorchUtils picks the build that matches the
NVIDIA driver), as SlicerTotalSegmentator does: without the extension, or with a torch older than
the core needs (another extension's), the user is told to install PyTorch with the PyTorch Utils
module rather than given a pip build (CPU-only on Windows) or a failure at run time. Everything else
comes from pip, upgraded where older than needed. Nothing here prompts when ``interactive`` is False
(``Slicer --no-main-window``, scripts): missing packages are then installed without asking, or
reported, as the caller chooses. In Slicer's testing mode (ctest) nobody can be asked: an interactive
caller gets nothing installed, as ``slicer.packaging.pip_ensure`` does there.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

#: The core's lower bounds (pyproject.toml's dependencies; Testing/Python/test_slicer_dependencies.py
#: holds them equal).
TORCH_REQUIREMENT = ">=2.1"


@dataclass(frozen=True)
class Requirement:
    module: str        # import name, checked with importlib.util.find_spec
    pip: str           # pip requirement specifier: the name, then ">=" and the lowest version that works
    purpose: str

    @property
    def minimum(self) -> str:
        return self.pip.partition(">=")[2]


TORCH = Requirement("torch", "torch" + TORCH_REQUIREMENT, "network methods and training")
EINOPS = Requirement("einops", "einops>=0.7", "network methods")
ONNXRUNTIME = Requirement("onnxruntime", "onnxruntime>=1.17", "the ONNX Runtime backend")
ONNX = Requirement("onnx", "onnx>=1.15", "exporting models for the ONNX Runtime backend")
ALL = (TORCH, EINOPS, ONNXRUNTIME, ONNX)


class MissingDependencies(RuntimeError):
    """Packages are missing and were not installed (declined, or installing not allowed)."""


def requirements_for(needs_network: bool, backend: str = "torch") -> list[Requirement]:
    """What a run needs beyond Slicer's own Python (numpy, scipy, SimpleITK)."""
    if not needs_network:
        return []
    reqs = [TORCH, EINOPS]
    if backend == "onnx":
        reqs += [ONNXRUNTIME, ONNX]
    return reqs


def version_tuple(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version: '2.1.0+cu121' -> (2, 1, 0)."""
    match = re.match(r"\d+(\.\d+)*", version.strip())
    return tuple(int(p) for p in match.group().split(".")) if match else ()


def installed_version(module: str) -> Optional[str]:
    """The installed version of the distribution named like ``module`` (read without importing it),
    or None where there is no such distribution (e.g. onnxruntime-gpu provides onnxruntime)."""
    try:
        return importlib.metadata.version(module)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def _testing_mode() -> bool:
    """Slicer runs with ``--testing`` (ctest): no dialog is shown, and its confirmations answer without
    a user (False, though their docstrings say True); ``slicer.packaging.pip_ensure`` installs nothing then."""
    import slicer

    return bool(slicer.app.testingEnabled())


def _default_confirm(text: str) -> bool:
    import slicer

    return bool(slicer.util.confirmOkCancelDisplay(text, windowTitle="VolumetricSR: install Python packages"))


def _slicer_packaging():
    """``slicer.packaging`` where this Slicer has it (5.12; 5.11 previews built since April 2026), else None."""
    try:
        import slicer.packaging
    except ImportError:
        return None
    return slicer.packaging


def _default_pip_install(requirement: str, show_progress: bool = True) -> None:
    """pip through Slicer. Where Slicer has ``slicer.packaging``, its ``pip_install`` shows a modal
    progress dialog unless told not to, which a script (``interactive`` False) must not get; it came
    with ``show_progress`` and ``requester`` (commit 2cf12e60e4, 'Add slicer.packaging module'), so
    those are passed only there. Older Slicers' ``slicer.util.pip_install`` takes the requirement only."""
    import slicer

    packaging = _slicer_packaging()
    if packaging is not None:
        packaging.pip_install(requirement, show_progress=show_progress, requester="VolumetricSR")
    else:
        slicer.util.pip_install(requirement)


def _pytorch_utils():
    """The PyTorch extension's ``PyTorchUtils`` module, or None where the extension is not installed."""
    try:
        import PyTorchUtils
    except ImportError:
        return None
    return PyTorchUtils


#: What to do about PyTorch that installing here cannot do (SlicerTotalSegmentator's advice).
PYTORCH_UTILS_ADVICE = ("use the PyTorch Utils module (PyTorch extension) to install PyTorch with the version "
                        f"requirement {TORCH_REQUIREMENT}, then restart Slicer")


NEEDS_EXTENSION = ("VolumetricSR needs the PyTorch extension for PyTorch: install it from the Extensions Manager, "
                   "restart Slicer, and try again.")


def _install_torch_with_pytorch_utils() -> None:
    """PyTorchUtils installs the torch build that matches the NVIDIA driver (CPU where there is none)."""
    utils = _pytorch_utils()
    if utils is None:
        raise MissingDependencies(NEEDS_EXTENSION)
    if utils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT) is None:
        raise MissingDependencies("PyTorch was not installed (see the PyTorch Utils module).")


class DependencyInstaller:
    """Checks and installs :class:`Requirement` lists; asks at most once per session for a package."""

    #: Packages the user declined this session: not asked again until ``ask_again=True``.
    declined: set[str] = set()

    def __init__(self, interactive: bool = True, install_without_asking: bool = True, *,
                 confirm: Optional[Callable[[str], bool]] = None,
                 pip_install: Optional[Callable[[str], None]] = None,
                 install_torch: Optional[Callable[[], None]] = None,
                 find_spec: Callable = importlib.util.find_spec,
                 version_of: Callable[[str], Optional[str]] = installed_version):
        self.interactive, self.install_without_asking = interactive, install_without_asking
        self.confirm = confirm or _default_confirm
        self.pip_install = pip_install or (lambda r: _default_pip_install(r, show_progress=interactive))
        self.install_torch = install_torch       # None: the PyTorch extension's PyTorchUtils
        self.find_spec, self.version_of = find_spec, version_of

    def found(self, r: Requirement) -> bool:
        """``r``'s module can be found (without importing it)."""
        try:
            return self.find_spec(r.module) is not None
        except (ImportError, ValueError):
            return False

    def too_old(self, r: Requirement) -> Optional[str]:
        """The installed version of ``r`` where it is older than ``r`` needs, else None."""
        version = self.version_of(r.module) if r.minimum else None
        return version if version and version_tuple(version) < version_tuple(r.minimum) else None

    def missing(self, reqs: Iterable[Requirement]) -> list[Requirement]:
        """Requirements whose module cannot be found, or is older than needed."""
        return [r for r in reqs if not self.found(r) or self.too_old(r)]

    def check_torch(self, todo: list[Requirement]) -> None:
        """Raise where installing cannot give PyTorch: an older torch is there (another extension's;
        it may be loaded already), or there is no PyTorch extension to install it with."""
        if TORCH not in todo:
            return
        old = self.too_old(TORCH) if self.found(TORCH) else None
        if old:
            raise MissingDependencies(f"PyTorch {old} is installed, older than VolumetricSR needs "
                                      f"({TORCH.minimum}): {PYTORCH_UTILS_ADVICE}.")
        if self.install_torch is None and _pytorch_utils() is None:
            raise MissingDependencies(NEEDS_EXTENSION)

    @staticmethod
    def describe(reqs: Iterable[Requirement]) -> str:
        return "\n".join(f"  {r.pip}  ({r.purpose})" for r in reqs)

    def ensure(self, reqs: Iterable[Requirement], ask_again: bool = False) -> list[Requirement]:
        """Install what is missing; returns what was installed. Raises :class:`MissingDependencies`."""
        todo = self.missing(reqs)
        if not todo:
            return []
        self.check_torch(todo)
        listing = self.describe(todo)
        if self.interactive:
            if _testing_mode():
                raise MissingDependencies("Slicer runs in testing mode, where nobody can be asked: not installing "
                                          f"these Python packages:\n{listing}")
            if not ask_again and any(r.module in self.declined for r in todo):
                raise MissingDependencies("VolumetricSR needs these Python packages, which you chose not to "
                                          f"install this session:\n{listing}\nUse 'Install dependencies' to install them.")
            text = ("VolumetricSR needs these Python packages, not installed yet or older than it needs:\n"
                    f"{listing}\n\nDownload and install them now? This can take several minutes "
                    "(PyTorch is large), and Slicer may need a restart afterwards.")
            if not self.confirm(text):
                DependencyInstaller.declined.update(r.module for r in todo)
                raise MissingDependencies(f"Not installed (declined):\n{listing}")
        elif not self.install_without_asking:
            raise MissingDependencies(f"VolumetricSR needs these Python packages:\n{listing}\n"
                                      "Install them (for example with slicer.util.pip_install) and run again.")
        for r in todo:
            logging.info(f"VolumetricSR: installing {r.pip}")
            (self.install_torch or _install_torch_with_pytorch_utils)() if r is TORCH else self.pip_install(r.pip)
        importlib.invalidate_caches()
        still = self.missing(todo)
        if still:
            raise MissingDependencies(f"Installing did not make these importable:\n{self.describe(still)}\n"
                                      "Restart Slicer and try again; see the Python console for pip's messages.")
        return todo

"""First-use Python dependencies: detect without importing, ask once, install, obey ``interactive``.

``torch`` goes through the PyTorch extension's PyTorchUtils when it is present (it picks the CUDA build
that matches the NVIDIA driver) and plain pip otherwise; everything else through pip. Nothing here
prompts when ``interactive`` is False (``Slicer --no-main-window``, scripts): missing packages are then
installed without asking, or reported, as the caller chooses.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

TORCH_REQUIREMENT = ">=2.1"


@dataclass(frozen=True)
class Requirement:
    module: str        # import name, checked with importlib.util.find_spec
    pip: str           # pip requirement specifier
    purpose: str


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


def _default_confirm(text: str) -> bool:
    import slicer

    return bool(slicer.util.confirmOkCancelDisplay(text, windowTitle="VolumetricSR: install Python packages"))


def _default_pip_install(requirement: str, show_progress: bool = True) -> None:
    """``slicer.util.pip_install``; from Slicer 5.12 on it shows a modal progress dialog unless told
    not to, which a script (``interactive`` False) must not get."""
    import slicer

    if (slicer.app.majorVersion, slicer.app.minorVersion) >= (5, 12):
        slicer.util.pip_install(requirement, show_progress=show_progress)
    else:
        slicer.util.pip_install(requirement)


def _default_install_torch() -> None:
    """PyTorchUtils when the PyTorch extension is installed, else pip (CPU or default CUDA build)."""
    try:
        import PyTorchUtils  # the PyTorch extension, declared in EXTENSION_DEPENDS
    except ImportError:
        logging.info("PyTorch extension not found; installing torch with pip.")
        _default_pip_install(TORCH.pip)
        return
    if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                     torchVersionRequirement=TORCH_REQUIREMENT) is None:
        raise MissingDependencies("PyTorch was not installed (see the PyTorch Utils module).")


class DependencyInstaller:
    """Checks and installs :class:`Requirement` lists; asks at most once per session for a package."""

    #: Packages the user declined this session: not asked again until ``ask_again=True``.
    declined: set[str] = set()

    def __init__(self, interactive: bool = True, install_without_asking: bool = True, *,
                 confirm: Optional[Callable[[str], bool]] = None,
                 pip_install: Optional[Callable[[str], None]] = None,
                 install_torch: Optional[Callable[[], None]] = None,
                 find_spec: Callable = importlib.util.find_spec):
        self.interactive, self.install_without_asking = interactive, install_without_asking
        self.confirm = confirm or _default_confirm
        self.pip_install = pip_install or (lambda r: _default_pip_install(r, show_progress=interactive))
        self.install_torch = install_torch or _default_install_torch
        self.find_spec = find_spec

    def missing(self, reqs: Iterable[Requirement]) -> list[Requirement]:
        """Requirements whose module cannot be found (found without importing it)."""
        out = []
        for r in reqs:
            try:
                found = self.find_spec(r.module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                out.append(r)
        return out

    @staticmethod
    def describe(reqs: Iterable[Requirement]) -> str:
        return "\n".join(f"  {r.pip}  ({r.purpose})" for r in reqs)

    def ensure(self, reqs: Iterable[Requirement], ask_again: bool = False) -> list[Requirement]:
        """Install what is missing; returns what was installed. Raises :class:`MissingDependencies`."""
        todo = self.missing(reqs)
        if not todo:
            return []
        listing = self.describe(todo)
        if self.interactive:
            if not ask_again and any(r.module in self.declined for r in todo):
                raise MissingDependencies("VolumetricSR needs these Python packages, which you chose not to "
                                          f"install this session:\n{listing}\nUse 'Install dependencies' to install them.")
            text = ("VolumetricSR needs these Python packages, which are not installed yet:\n"
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
            self.install_torch() if r is TORCH else self.pip_install(r.pip)
        importlib.invalidate_caches()
        still = self.missing(todo)
        if still:
            raise MissingDependencies(f"Installing did not make these importable:\n{self.describe(still)}\n"
                                      "Restart Slicer and try again; see the Python console for pip's messages.")
        return todo

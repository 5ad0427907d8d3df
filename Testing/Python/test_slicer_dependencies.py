"""First-use dependency logic: find without importing, ask once, obey ``interactive``; device list."""
from __future__ import annotations

import sys
import types

import pytest

import slicer_standin

slicer = slicer_standin.install()

from VolumetricSRLib import dependencies as deps  # noqa: E402
from VolumetricSRLib.devices import device_choices, gpu_notice  # noqa: E402


@pytest.fixture(autouse=True)
def fresh():
    slicer_standin.reset()
    deps.DependencyInstaller.declined.clear()
    slicer.util.confirm_answer = True
    yield
    deps.DependencyInstaller.declined.clear()


class FakeEnv:
    """Which modules 'exist', and at which versions (``present``: names, or name -> version);
    installing one makes it exist at the version it asked for."""

    def __init__(self, present=()):
        self.present = dict(present) if isinstance(present, dict) else {name: None for name in present}
        self.installed = []

    def find_spec(self, name):
        return object() if name in self.present else None

    def version(self, name):
        return self.present.get(name)

    def pip(self, requirement):
        self.installed.append(requirement)
        name, _, version = requirement.partition(">=")
        self.present[name] = version

    def torch(self):
        self.installed.append("torch via PyTorchUtils")
        self.present["torch"] = deps.TORCH.minimum


def installer(env, **kw):
    return deps.DependencyInstaller(pip_install=env.pip, find_spec=env.find_spec, version_of=env.version,
                                    **{"install_torch": env.torch, **kw})


def test_nothing_missing_means_no_prompt_and_no_install():
    env = FakeEnv({"torch", "einops"})
    assert installer(env).ensure(deps.requirements_for(True)) == []
    assert slicer.util.calls == [] and env.installed == []


def test_interactive_asks_once_listing_everything_then_installs():
    env = FakeEnv()
    done = installer(env, interactive=True).ensure(deps.requirements_for(True, "onnx"))
    prompts = [c for c in slicer.util.calls if c[0] == "confirmOkCancelDisplay"]
    assert len(prompts) == 1
    for pkg in ("torch>=2.1", "einops>=0.7", "onnxruntime>=1.17", "onnx>=1.15"):
        assert pkg in prompts[0][1]
    assert [r.module for r in done] == ["torch", "einops", "onnxruntime", "onnx"]
    assert env.installed[0] == "torch via PyTorchUtils" and "einops>=0.7" in env.installed


def test_declining_installs_nothing_and_is_not_asked_again():
    env = FakeEnv()
    slicer.util.confirm_answer = False
    with pytest.raises(deps.MissingDependencies, match="declined"):
        installer(env, interactive=True).ensure([deps.EINOPS])
    with pytest.raises(deps.MissingDependencies, match="chose not to install"):
        installer(env, interactive=True).ensure([deps.EINOPS])
    assert len([c for c in slicer.util.calls if c[0] == "confirmOkCancelDisplay"]) == 1 and env.installed == []
    slicer.util.confirm_answer = True
    installer(env, interactive=True).ensure([deps.EINOPS], ask_again=True)
    assert env.installed == ["einops>=0.7"]


def test_non_interactive_never_prompts():
    env = FakeEnv()
    installer(env, interactive=False).ensure([deps.TORCH, deps.EINOPS])
    assert slicer.util.calls == [] and env.installed == ["torch via PyTorchUtils", "einops>=0.7"]
    env2 = FakeEnv()
    with pytest.raises(deps.MissingDependencies, match="einops"):
        installer(env2, interactive=False, install_without_asking=False).ensure([deps.EINOPS])
    assert slicer.util.calls == [] and env2.installed == []


def test_in_testing_mode_nobody_is_asked_and_nothing_is_installed(monkeypatch):
    """Slicer --testing (ctest): confirmOkCancelDisplay shows nothing and answers by itself (False, in
    Slicer's code), and slicer.packaging.pip_ensure installs nothing. The panel's way (interactive)
    then installs nothing and says why, whatever the answer would have been; a script's way
    (not interactive) is unchanged."""
    monkeypatch.setattr(slicer.app, "testing", True)
    env = FakeEnv()
    with pytest.raises(deps.MissingDependencies, match="testing mode"):
        installer(env, interactive=True).ensure([deps.EINOPS])
    assert slicer.util.calls == [] and env.installed == [] and not deps.DependencyInstaller.declined
    installer(env, interactive=False).ensure([deps.EINOPS])
    assert env.installed == ["einops>=0.7"]


def test_install_that_does_not_take_effect_is_reported():
    env = FakeEnv()
    inst = deps.DependencyInstaller(interactive=False, pip_install=lambda r: None, install_torch=lambda: None,
                                    find_spec=env.find_spec)
    with pytest.raises(deps.MissingDependencies, match="Restart Slicer"):
        inst.ensure([deps.EINOPS])


@pytest.fixture
def slicer_version(monkeypatch):
    """Set the stand-in Slicer's version; ``slicer.packaging`` is imported anew under it."""
    def set_version(major, minor):
        monkeypatch.setattr(type(slicer.app), "majorVersion", major)
        monkeypatch.setattr(type(slicer.app), "minorVersion", minor)
        sys.modules.pop("slicer.packaging", None)

    yield set_version
    sys.modules.pop("slicer.packaging", None)


@pytest.mark.parametrize("version, call", [
    ((5, 10), ("pip_install", "einops>=0.7")),
    ((5, 12), ("pip_install", "einops>=0.7", "show_progress=False", "requester=VolumetricSR"))])
def test_default_pip_path_shows_no_dialog_in_scripts_where_slicer_can(version, call, slicer_version):
    """``show_progress`` (and ``requester``) came with ``slicer.packaging``: passed only where it exists."""
    slicer_version(*version)
    inst = deps.DependencyInstaller(interactive=False, find_spec=FakeEnv().find_spec)
    with pytest.raises(deps.MissingDependencies):      # the stand-in's pip installs nothing
        inst.ensure([deps.EINOPS])
    assert slicer.util.calls == [call]


def test_an_older_torch_is_not_used_nor_replaced_by_pip():
    """Another extension's torch 1.13 fails at run time: the user is told to use PyTorch Utils, before
    any question or install."""
    env = FakeEnv({"torch": "1.13.1+cu117", "einops": "0.8.0"})
    with pytest.raises(deps.MissingDependencies, match=r"PyTorch 1\.13\.1\+cu117 is installed, older than "
                                                       r"VolumetricSR needs \(2\.1\): use the PyTorch Utils module"):
        installer(env, interactive=True).ensure(deps.requirements_for(True))
    assert slicer.util.calls == [] and env.installed == []
    assert installer(FakeEnv({"torch": "2.5.1+cpu", "einops": "0.8.0"})).ensure(deps.requirements_for(True)) == []


def test_without_the_pytorch_extension_pytorch_is_asked_of_it_not_of_pip(monkeypatch):
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)          # not installed
    env = FakeEnv()
    with pytest.raises(deps.MissingDependencies, match="needs the PyTorch extension"):
        installer(env, install_torch=None, interactive=True).ensure(deps.requirements_for(True))
    assert slicer.util.calls == [] and env.installed == []


def test_with_the_pytorch_extension_its_pytorch_utils_installs_torch(monkeypatch):
    asked = []

    class PyTorchUtilsLogic:
        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):
            asked.append(torchVersionRequirement)
            return None                        # the user cancelled there

    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    with pytest.raises(deps.MissingDependencies, match="PyTorch Utils"):
        installer(FakeEnv({"einops": "0.8"}), install_torch=None, interactive=False).ensure([deps.TORCH])
    assert asked == [">=2.1"]


def test_an_older_pip_package_is_upgraded():
    env = FakeEnv({"torch": "2.4.0", "einops": "0.6.1"})
    assert [r.module for r in installer(env, interactive=False).ensure(deps.requirements_for(True))] == ["einops"]
    assert env.installed == ["einops>=0.7"]


def test_the_requirements_are_the_cores():
    """Each package's lower bound is pyproject.toml's (what the core is tested with)."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert {r.pip for r in deps.ALL} <= set(project["project"]["dependencies"])


def test_interpolation_needs_nothing_extra():
    assert deps.requirements_for(False, "onnx") == []
    assert [r.module for r in deps.requirements_for(True)] == ["torch", "einops"]


def fake_torch(cuda_devices=(), cuda_version="12.4", mps=False):
    def mem_get_info(i):
        raise AssertionError("mem_get_info creates a CUDA context on that GPU: not from the panel")

    cuda = types.SimpleNamespace(is_available=lambda: bool(cuda_devices), device_count=lambda: len(cuda_devices),
                                 get_device_name=lambda i: cuda_devices[i], mem_get_info=mem_get_info,
                                 get_device_properties=lambda i: types.SimpleNamespace(name=cuda_devices[i],
                                                                                       total_memory=24 * 2**30))
    return types.SimpleNamespace(__version__="2.5.0", cuda=cuda, version=types.SimpleNamespace(cuda=cuda_version),
                                 device=lambda d: types.SimpleNamespace(index=int(d.split(":")[1]) if ":" in d else None),
                                 backends=types.SimpleNamespace(mps=types.SimpleNamespace(is_available=lambda: mps)))


def test_device_list_names_gpus_without_making_cuda_contexts(monkeypatch):
    torch = fake_torch(["NVIDIA RTX A5000", "NVIDIA T4"])
    monkeypatch.setitem(__import__("sys").modules, "torch", torch)
    choices = dict(device_choices(torch))
    assert list(choices) == ["auto", "cuda:0", "cuda:1", "cpu"]
    assert choices["cuda:1"] == "CUDA 1: NVIDIA T4 (24 GiB)"
    assert "mps" in dict(device_choices(fake_torch(mps=True)))


def test_gpu_notices():
    assert "CPU-only build" in gpu_notice(fake_torch(cuda_version=None), nvidia_smi="/usr/bin/nvidia-smi")
    assert "driver" in gpu_notice(fake_torch(cuda_version="12.4"), nvidia_smi="/usr/bin/nvidia-smi")
    assert gpu_notice(fake_torch(["A100"])) == ""
    assert gpu_notice(fake_torch(), nvidia_smi=None) == ""


def test_without_torch_only_auto_and_cpu_and_a_notice(monkeypatch):
    import VolumetricSRLib.devices as devices

    monkeypatch.setattr(devices, "_torch", lambda: None)
    assert devices.device_choices() == [("auto", "Auto (best available)"), ("cpu", "CPU")]
    assert "PyTorch is not installed" in devices.gpu_notice(nvidia_smi=None)

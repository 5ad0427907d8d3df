"""First use, in a process where PyTorch does not import (a new Slicer): the network methods are
listed as needing an install, Apply installs it and they work in the same session; a PyTorch that
is there but fails to load is a reason shown to the user, never a broken panel."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

COMMON = textwrap.dedent('''
    import sys
    sys.path.insert(0, {here!r})
    import slicer_standin
    slicer = slicer_standin.install()
    from conftest import make_volume
    from test_slicer_scene import add_node
    from VolumetricSRLib.dependencies import DependencyInstaller
    from VolumetricSRLib.logic import SuperResolutionLogic
    from VolumetricSRLib.panel import method_items, pending_html
    items = dict(method_items())
    assert "needs PyTorch" in items["selfsr"] and "needs PyTorch" in items["tvsrn"] and "bspline" in items, items
    installed = []
    def install_torch():
        installed.append("torch")
        sys.modules.pop("torch", None)          # what pip does: torch imports from now on
    logic = SuperResolutionLogic(installer=DependencyInstaller(interactive=False, install_torch=install_torch,
                                                               pip_install=installed.append))
    node = add_node(make_volume(size_ijk=(20, 20, 6), spacing=(1.0, 1.0, 4.0)))
''')

MISSING = COMMON + textwrap.dedent('''
    job = logic.prepare(node, "selfsr", iterations=2)          # Apply on a listed, not yet usable method
    assert installed == ["torch"] and job.method == "selfsr" and not job.in_process
    assert "needs PyTorch" not in dict(method_items())["selfsr"]   # usable now, without a restart
    print("OK")
''')

BROKEN = COMMON + textwrap.dedent('''
    assert "OSError" in pending_html("tvsrn")
    try:
        logic.prepare(node, "selfsr", iterations=2)
    except Exception as exc:
        assert "Restart Slicer" in str(exc) and "OSError" in str(exc), exc
    else:
        raise AssertionError("a PyTorch that fails to load cannot run")
    out = logic.run(node, "bspline", show=False)                # interpolation still works
    print("OK", installed)
''')


@pytest.mark.parametrize("torch_is", ["missing", "broken"])
def test_first_use_without_a_working_pytorch(torch_is, tmp_path):
    if torch_is == "missing":
        head = "import sys; sys.modules['torch'] = None\n"
        script = head + MISSING.format(here=str(HERE))
    else:
        fake = tmp_path / "torch"
        fake.mkdir()
        (fake / "__init__.py").write_text("raise OSError('[WinError 126] c10.dll could not be loaded')\n")
        head = f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        script = head + BROKEN.format(here=str(HERE))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("OK"), done.stdout + done.stderr[-3000:]


SELF_TESTS = textwrap.dedent('''
    import sys, types
    sys.modules["torch"] = None
    sys.path.insert(0, {here!r})
    import slicer_standin
    slicer = slicer_standin.install()
    from conftest import make_volume
    from test_slicer_scene import add_node
    sample = types.ModuleType("SampleData")
    class SampleDataLogic:
        def downloadMRHead(self):
            return add_node(make_volume(size_ijk=(48, 40, 36), spacing=(1.0, 1.0, 1.3), seed=5), name="MRHead")
    sample.SampleDataLogic = SampleDataLogic
    sys.modules["SampleData"] = sample
    import slicer.testing
    for module in ("VolumetricSR", "VolumetricSRTraining"):       # as ctest runs them
        slicer.testing.runUnitTest([], module)
    import VolumetricSR, VolumetricSRTraining                       # as Reload and Test runs them
    VolumetricSR.VolumetricSR(types.SimpleNamespace()).runTest()
    VolumetricSRTraining.VolumetricSRTraining(types.SimpleNamespace()).runTest()
    print("OK")
''')


def test_the_self_tests_skip_what_needs_pytorch_where_it_does_not_import(tmp_path):
    """On a Slicer without PyTorch (the extension build machines), under ctest (each test_* method on
    its own) and Reload and Test alike, the checks that need it are skipped, and the others pass."""
    env = {**os.environ, "VOLUMETRICSR_MODELS": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", SELF_TESTS.format(here=str(HERE))], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stdout[-2000:] + done.stderr[-3000:]
    skipped = sorted({line.split()[0] for line in done.stderr.splitlines() if "skipped 'PyTorch does not import" in line})
    assert skipped == ["test_tiny_model", "test_tiny_training", "test_trainer_help"], done.stderr[-3000:]
    passed = [line.split()[0] for line in done.stderr.splitlines() if line.startswith("test_") and line.endswith("... ok")]
    assert len(passed) == 2 * 3, done.stderr[-3000:]      # the other three, once each way


EMBEDDED = textwrap.dedent('''
    import os, sys, types
    sys.modules["slicer"] = types.ModuleType("slicer")          # Slicer's process: its module is loaded
    sys.path.insert(0, {modules!r})
    import VolumetricSRLib                                        # what Slicer loads at its start
    import volumetricsr
    from volumetricsr.compute import cpu_memory
    assert "OMP_WAIT_POLICY" not in os.environ and "THP_MEM_ALLOC_ENABLE" not in os.environ, os.environ
    assert cpu_memory._LIBC is None                              # no mallopt on Slicer's heap
    with cpu_memory.keep_freed_memory():
        pass
    print("OK")
''')


def test_importing_the_glue_and_the_core_into_slicers_process_changes_none_of_its_settings():
    """Slicer's GUI process keeps its allocator; the child a run goes to gets the core's settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "THP_MEM_ALLOC_ENABLE")}
    script = EMBEDDED.format(modules=str(HERE.parents[1] / "VolumetricSR"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stdout + done.stderr[-3000:]
    child = ("import os; from volumetricsr.app import cli; "           # what a run's child imports first
             "print(os.environ['THP_MEM_ALLOC_ENABLE'], os.environ['OMP_WAIT_POLICY'])")
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120,
                          env={**env, "PYTHONPATH": str(HERE.parents[1] / "VolumetricSR")})
    assert done.stdout.split() == ["1", "PASSIVE"], done.stdout + done.stderr[-3000:]


HEADLESS = textwrap.dedent('''
    import os, sys, types
    slicer = types.ModuleType("slicer")             # Slicer --no-main-window --python-script: the script's process
    options = types.SimpleNamespace(noMainWindow=True)
    slicer.app = types.SimpleNamespace(commandOptions=lambda: options)
    sys.modules["slicer"] = slicer
    import volumetricsr
    from volumetricsr.compute import cpu_memory, threads
    assert not threads.EMBEDDED and os.environ["OMP_WAIT_POLICY"] == "PASSIVE", os.environ.get("OMP_WAIT_POLICY")
    assert cpu_memory._LIBC is not None or not sys.platform.startswith("linux")
    print("OK")
''')


def test_a_headless_slicer_script_gets_the_settings_plain_python_gets():
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "THP_MEM_ALLOC_ENABLE")}
    done = subprocess.run([sys.executable, "-c", HEADLESS], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "OK", done.stdout + done.stderr[-3000:]

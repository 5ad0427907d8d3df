"""The modules' own Slicer self-tests (VolumetricSRTest, VolumetricSRTrainingTest), run here against the stand-in.

Inside Slicer it downloads MRHead from SampleData; here a small synthetic head-sized volume stands
in for it, so the self-test's own code (geometry checks, background run and cancel, tiny models) is
exercised before anyone runs it in Slicer.
"""
from __future__ import annotations

import sys
import types

import pytest

import slicer_standin
from conftest import make_volume
from test_slicer_scene import add_node

slicer = slicer_standin.install()


@pytest.fixture
def sample_data(monkeypatch):
    """A stand-in SampleData module whose MRHead is a smooth 48x40x36 volume (1 mm x 1 mm x 1.3 mm)."""
    module = types.ModuleType("SampleData")

    class SampleDataLogic:
        def downloadMRHead(self):
            return add_node(make_volume(size_ijk=(48, 40, 36), spacing=(1.0, 1.0, 1.3), seed=5), name="MRHead")

    module.SampleDataLogic = SampleDataLogic
    monkeypatch.setitem(sys.modules, "SampleData", module)


def ran(capsys) -> dict:
    """``{check: outcome}`` from what unittest's runner printed (verbosity 2)."""
    lines = capsys.readouterr().err.splitlines()
    return {line.split()[0]: line.rsplit("... ", 1)[1] for line in lines if line.startswith("test_") and "... " in line}


def test_the_slicer_self_test_passes_against_the_stand_in_as_ctest_runs_it(sample_data, tmp_path, monkeypatch, capsys):
    """As ctest: ``slicer.testing.runUnitTest`` loads each test_* method by name (setUp before each)."""
    import slicer.testing

    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(tmp_path))
    slicer_standin.reset()
    slicer.testing.runUnitTest([], "VolumetricSR")
    assert ran(capsys) == {"test_background_run_and_cancel": "ok", "test_bspline_geometry_and_values": "ok",
                           "test_tiny_model": "ok", "test_trust_maps": "ok"}


def test_the_trust_maps_self_test_passes_without_a_main_window(sample_data, monkeypatch, capsys):
    """ctest on a build machine may run Slicer without views (--no-main-window): no layout manager."""
    import slicer.testing

    monkeypatch.setattr(type(slicer.app.commandOptions()), "noMainWindow", True)
    slicer_standin.reset()
    slicer.testing.runUnitTest([], "VolumetricSR.VolumetricSRTest.test_trust_maps")
    assert ran(capsys) == {"test_trust_maps": "ok"}


def test_the_training_self_test_passes_against_the_stand_in(tmp_path, monkeypatch, capsys):
    """As Reload and Test: the module's runTest."""
    import VolumetricSRTraining

    monkeypatch.setattr(slicer.app, "temporaryPath", str(tmp_path))
    VolumetricSRTraining.VolumetricSRTraining(types.SimpleNamespace()).runTest()
    assert ran(capsys) == {"test_tiny_training": "ok", "test_trainer_help": "ok"}


def test_the_smoke_script_for_a_real_slicer_runs_against_the_stand_in(sample_data, tmp_path, monkeypatch, qt_slicer):
    """Testing/Python/slicer_smoke.py is for users to run in their Slicer; here it runs its checks
    (a few methods, cancel, training stop, Close Scene during a panel run: the panel's real .ui, so
    PySide6 is needed) against the stand-in, so the script itself is known to work."""
    import slicer_smoke

    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(tmp_path))
    lines = []
    failed = slicer_smoke.run_checks(slicer, methods=["bspline", "selfsr", "tvsrn"], out=lines.append)
    assert failed == 0, "\n".join(lines)
    passes = [line for line in lines if line.startswith("PASS")]
    assert [p.split(":")[0] for p in passes] == ["PASS bspline", "PASS selfsr", "PASS tvsrn", "PASS cancel",
                                                 "PASS sequence", "PASS compare", "PASS training stop",
                                                 "PASS close scene"]
    assert "child process" in passes[1] and "main thread" in passes[0] and lines[-1] == "all checks passed"


def test_the_smoke_scripts_compare_check_passes_without_a_main_window(sample_data, monkeypatch):
    """Under --no-main-window the smoke script's compare check passes: Compare returns False, fails nothing."""
    import slicer_smoke
    import VolumetricSR

    monkeypatch.setattr(type(slicer.app.commandOptions()), "noMainWindow", True)
    slicer_standin.reset()
    node = add_node(make_volume())
    lines = []
    slicer_smoke.check_compare(slicer, VolumetricSR.VolumetricSRLogic(), node,
                               lambda ok, text: lines.append(("PASS " if ok else "FAIL ") + text))
    assert lines == ["PASS compare: nothing to show (without a main window)"]

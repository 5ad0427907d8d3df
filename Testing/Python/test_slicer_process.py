"""Panel runs of network and per-volume methods go to a child process through Slicer's launcher
(stand-in: it forwards no signals), with progress, a Cancel that stops the real child, and the node
made only from a complete result; interpolations run in Slicer's main thread."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import slicer_standin
from conftest import make_ct_volume, make_volume
from test_slicer_scene import add_node, clean_scene  # noqa: F401  (an autouse fixture)

slicer = slicer_standin.install()

from VolumetricSRLib.logic import SuperResolutionLogic  # noqa: E402
from VolumetricSRLib.processtask import ProcessTask  # noqa: E402
from VolumetricSRLib.runner import InlineTask  # noqa: E402


def test_a_network_run_goes_to_a_child_and_equals_the_blocking_call():
    thick = make_ct_volume(size_ijk=(24, 20, 5), spacing=(0.8, 0.8, 5.0), seed=3)
    node = add_node(thick.with_array(thick.array.astype("int16")))
    logic = SuperResolutionLogic()
    progress, done = [], []
    task = logic.start(logic.prepare(node, "tvsrn", 1.0, device="cpu"), on_progress=lambda f, m, eta: progress.append(f),
                       on_done=done.append, on_error=lambda e, tb: pytest.fail(f"{e}\n{tb}"))
    assert isinstance(task, ProcessTask)
    task.wait(120)
    assert slicer.util.calls[0][0] == "launchConsoleProcess"            # through Slicer's launcher
    assert task.child.child_pid not in (None, os.getpid())
    assert progress and progress == sorted(progress) and len(done) == 1
    blocking = logic.run(node, "tvsrn", 1.0, device="cpu", show=False)
    a, b = slicer.util.arrayFromVolume(done[0]), slicer.util.arrayFromVolume(blocking)
    assert a.shape == b.shape == (21, 20, 24) and np.allclose(a, b, atol=1e-3)
    assert np.allclose(done[0].ijk_to_ras, blocking.ijk_to_ras)
    assert not task.folder.exists()                                     # the temporary files are gone


def test_a_child_run_brings_back_the_maps_and_the_consistency():
    thick = make_ct_volume(size_ijk=(24, 20, 5), spacing=(0.8, 0.8, 5.0), seed=3)
    node = add_node(thick.with_array(thick.array.astype("int16")))
    logic = SuperResolutionLogic()
    trust = dict(enforce_consistency=True, consistency_map=True, confidence_map=True)
    job = logic.prepare(node, "tvsrn", 1.0, device="cpu", **trust)
    done = []
    task = logic.start(job, on_done=done.append, on_error=lambda e, tb: pytest.fail(f"{e}\n{tb}"))
    task.wait(180)
    maps = job.results["map_nodes"]
    assert set(maps) == {"consistency_map", "confidence_map"} and job.results["consistency"]["rms"] < 1e-2
    blocking = {}
    logic.run(node, "tvsrn", 1.0, device="cpu", show=False, results=blocking, **trust)
    assert job.results["slice_profile"] == blocking["slice_profile"]        # the child's, from its final record
    assert job.results["slice_profile"]["source"] == "estimated"
    for key, m in maps.items():
        a, b = slicer.util.arrayFromVolume(m), slicer.util.arrayFromVolume(blocking["map_nodes"][key])
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-2)
    assert slicer.util.arrayFromVolume(maps["confidence_map"]).shape == slicer.util.arrayFromVolume(done[0]).shape
    assert not task.folder.exists()


def test_cancel_stops_the_child_and_makes_nothing():
    node = add_node(make_volume(size_ijk=(40, 40, 8), spacing=(1.0, 1.0, 4.0)))
    logic = SuperResolutionLogic()
    nodes = len(slicer.mrmlScene.nodes)
    outcome, progress = [], []
    task = logic.start(logic.prepare(node, "selfsr", iterations=100000),
                       on_progress=lambda f, m, eta: progress.append(m), on_done=lambda n: outcome.append("done"),
                       on_cancelled=lambda: outcome.append("cancelled"), on_error=lambda e, tb: outcome.append(tb))
    deadline = time.monotonic() + 60
    while task.poll() and not any("training" in m for m in progress) and time.monotonic() < deadline:
        time.sleep(0.02)
    pid = task.child.child_pid
    start = time.monotonic()
    task.cancel()
    task.wait(30)
    assert outcome == ["cancelled"] and time.monotonic() - start < 10
    assert len(slicer.mrmlScene.nodes) == nodes and not task.folder.exists()
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_closing_the_module_leaves_no_run_behind():
    node = add_node(make_volume(size_ijk=(40, 40, 8), spacing=(1.0, 1.0, 4.0)))
    logic = SuperResolutionLogic()
    task = logic.start(logic.prepare(node, "selfsr", iterations=100000))
    deadline = time.monotonic() + 60
    while task.child.child_pid is None and time.monotonic() < deadline:
        task.poll()
        time.sleep(0.02)
    pid = task.child.child_pid
    task.close(timeout=5)
    time.sleep(0.2)
    assert not task.poll() and not task.folder.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_failure_in_the_child_is_reported_with_its_message():
    node = add_node(make_volume(size_ijk=(20, 20, 6), spacing=(1.0, 1.0, 4.0)))
    logic = SuperResolutionLogic()
    job = logic.prepare(node, "selfsr", iterations=5)
    job.options["iterations"] = -3           # wrong after the checks: the child's own check says so
    errors = []
    logic.start(job, on_error=lambda e, tb: errors.append(e), on_done=lambda n: pytest.fail("no node")).wait(60)
    assert errors and "iterations" in str(errors[0])


def test_interpolations_run_in_slicers_main_thread_with_its_events_processed(monkeypatch):
    """No worker thread (it would crawl under Slicer's GIL-holding main loop), no child (its start-up
    costs more than the interpolation): the polling thread computes, processing events between reports."""
    import threading

    node = add_node(make_volume())
    logic = SuperResolutionLogic()
    events, threads = [], []
    monkeypatch.setattr(slicer.app, "processEvents", lambda: events.append(threading.current_thread()))
    task = logic.start(logic.prepare(node, "bspline"), on_progress=lambda f, m, eta: threads.append(
        threading.current_thread()))
    assert isinstance(task, InlineTask) and not events
    task.wait(30)
    assert len(events) == len(threads) > 5 and set(events) == set(threads) == {threading.current_thread()}

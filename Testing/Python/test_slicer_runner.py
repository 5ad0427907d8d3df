"""BackgroundTask and ETA: progress, outcome delivered on the polling thread, cancel, errors."""
from __future__ import annotations

import threading

import pytest

import slicer_standin

slicer_standin.install()

from VolumetricSRLib.runner import BackgroundTask, EtaEstimator, format_duration  # noqa: E402
from volumetricsr import CancelToken  # noqa: E402


def test_eta_waits_for_evidence_then_extrapolates():
    eta = EtaEstimator(start=100.0)
    assert eta.remaining(0.005, 110.0) is None      # too little done
    assert eta.remaining(0.5, 100.5) is None        # too early
    assert eta.remaining(0.25, 110.0) == pytest.approx(30.0)


@pytest.mark.parametrize("seconds, text", [(4.4, "4 s"), (185, "3 min 05 s"), (3720, "1 h 02 min")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_outcome_and_progress_arrive_only_through_poll():
    release = threading.Event()
    seen = []

    def work(progress, cancel):
        progress(0.5, "half")
        release.wait(5)
        return 42

    task = BackgroundTask(work, CancelToken(), on_progress=lambda f, m, eta: seen.append((f, m, threading.current_thread())),
                          on_done=lambda r: seen.append(("done", r, threading.current_thread())))
    task.start()
    assert seen == []                      # nothing is delivered from the worker thread
    release.set()
    task.wait(10)
    assert [s[:2] for s in seen] == [(0.5, "half"), ("done", 42)]
    assert all(s[2] is threading.current_thread() for s in seen) and task.finished and not task.poll()


def test_cancel_stops_a_cooperative_task():
    started = threading.Event()
    outcome = []

    def work(progress, cancel):
        started.set()
        while True:
            cancel.raise_if_cancelled()

    task = BackgroundTask(work, CancelToken(), on_cancelled=lambda: outcome.append("cancelled"),
                          on_done=lambda r: outcome.append("done")).start()
    started.wait(5)
    task.cancel()
    task.wait(10)
    assert outcome == ["cancelled"]


def test_result_after_cancel_counts_as_cancelled():
    token = CancelToken()

    def work(progress, cancel):
        token.cancel()
        return "late result"

    outcome = []
    BackgroundTask(work, token, on_cancelled=lambda: outcome.append("cancelled"),
                   on_done=outcome.append).start().wait(10)
    assert outcome == ["cancelled"]


def test_errors_and_failing_done_handlers_reach_on_error():
    errors = []

    def boom(progress, cancel):
        raise ValueError("bad voxel")

    BackgroundTask(boom, CancelToken(), on_error=lambda e, tb: errors.append((e, tb))).start().wait(10)
    assert isinstance(errors[0][0], ValueError) and "bad voxel" in errors[0][1]

    def fail_done(result):
        raise RuntimeError("node creation failed")

    BackgroundTask(lambda p, c: 1, CancelToken(), on_done=fail_done,
                   on_error=lambda e, tb: errors.append((e, tb))).start().wait(10)
    assert str(errors[1][0]) == "node creation failed"

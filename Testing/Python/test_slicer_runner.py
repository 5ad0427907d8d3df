"""InlineTask and ETA: run at the first poll in the polling thread, progress, cancel between reports, errors."""
from __future__ import annotations

import threading

import pytest

import slicer_standin

slicer_standin.install()

from VolumetricSRLib.runner import EtaEstimator, InlineTask, format_duration  # noqa: E402
from volumetricsr import CancelToken  # noqa: E402


def test_eta_waits_for_evidence_then_extrapolates():
    eta = EtaEstimator(start=100.0)
    assert eta.remaining(0.005, 110.0) is None      # too little done
    assert eta.remaining(0.5, 100.5) is None        # too early
    assert eta.remaining(0.25, 110.0) == pytest.approx(30.0)


@pytest.mark.parametrize("seconds, text", [(4.4, "4 s"), (185, "3 min 05 s"), (3720, "1 h 02 min")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_it_runs_in_the_polling_thread_at_the_first_poll_with_progress_between():
    seen, between = [], []

    def work(progress, cancel):
        seen.append(("work", threading.current_thread()))
        progress(0.5, "half")
        return 42

    task = InlineTask(work, CancelToken(), on_progress=lambda f, m, eta: seen.append((f, m)),
                      on_done=lambda r: seen.append(("done", r)), between=lambda: between.append(task.poll()))
    assert task.start() is task and seen == []          # nothing runs before the first poll
    assert task.poll() is False and task.finished and not task.poll()
    assert seen == [("work", threading.current_thread()), (0.5, "half"), ("done", 42)]
    assert between == [True]          # a poll from within (the panel's timer, while events run) returns at once


def test_cancel_from_between_progress_reports_stops_a_cooperative_task():
    outcome, token = [], CancelToken()

    def work(progress, cancel):
        for i in range(1000):
            progress(i / 1000)
            cancel.raise_if_cancelled()
        return "all of it"

    clicked = iter([False, False, True])           # the user clicks Cancel while the third report's events run
    InlineTask(work, token, on_cancelled=lambda: outcome.append("cancelled"), on_done=outcome.append,
               between=lambda: next(clicked, True) and token.cancel()).start().wait(10)
    assert outcome == ["cancelled"]
    outcome.clear()
    cancelled = CancelToken()
    cancelled.cancel()                             # before the first poll: it never runs
    InlineTask(lambda p, c: outcome.append("ran"), cancelled, on_cancelled=lambda: outcome.append("cancelled")).wait()
    assert outcome == ["cancelled"]


def test_close_cancels_with_no_callback():
    outcome, token = [], CancelToken()

    def work(progress, cancel):
        progress(0.1)
        cancel.raise_if_cancelled()

    task = InlineTask(work, token, on_cancelled=lambda: outcome.append("cancelled"), on_progress=lambda *a: None)
    task.between = task.close                      # Close Scene, processed between two reports
    task.wait()
    assert outcome == [] and token.cancelled and task.finished


def test_result_after_cancel_counts_as_cancelled():
    token = CancelToken()

    def work(progress, cancel):
        token.cancel()
        return "late result"

    outcome = []
    InlineTask(work, token, on_cancelled=lambda: outcome.append("cancelled"), on_done=outcome.append).start().wait(10)
    assert outcome == ["cancelled"]


def test_errors_and_failing_done_handlers_reach_on_error():
    errors = []

    def boom(progress, cancel):
        raise ValueError("bad voxel")

    InlineTask(boom, CancelToken(), on_error=lambda e, tb: errors.append((e, tb))).start().wait(10)
    assert isinstance(errors[0][0], ValueError) and "bad voxel" in errors[0][1]

    def fail_done(result):
        raise RuntimeError("node creation failed")

    InlineTask(lambda p, c: 1, CancelToken(), on_done=fail_done,
               on_error=lambda e, tb: errors.append((e, tb))).start().wait(10)
    assert str(errors[1][0]) == "node creation failed"

"""Stopping infer-batch: SIGTERM to the parent, or the parent's death, ends every worker (local and
Ray), leaves no staging folder, places nothing more, and report.csv says what finished.

The run is ``slow_batch.py``'s: study v0 finishes at once, v1 and v2 hold with their outputs staged,
one in each of the two workers, so the signal always comes with staging on disk.
"""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import make_volume
from volumetricsr.app.batch import STOP_GRACE_S
from volumetricsr.data.io import write_volume

HERE = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process states in /proc")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _gone_after(pids: list[int], limit: float) -> float:
    """Seconds until no process of ``pids`` runs (failing after ``limit``)."""
    start = time.monotonic()
    while any(_alive(p) for p in pids):
        assert time.monotonic() - start < limit, f"workers {[p for p in pids if _alive(p)]} still run"
        time.sleep(0.01)
    return time.monotonic() - start


def _start(tmp_path: Path, *extra: str, env: dict = {}) -> tuple[subprocess.Popen, list[int]]:
    """The run, once both workers hold a study with its staging on disk; its workers' pids."""
    (tmp_path / "in").mkdir()
    for k in range(3):
        write_volume(make_volume(size_ijk=(10, 8, 5), seed=k), tmp_path / "in" / f"v{k}.nii.gz")
    proc = subprocess.Popen([sys.executable, str(HERE / "slow_batch.py"), "infer-batch", str(tmp_path / "in"),
                             str(tmp_path / "out"), "--workers", "2", "--method", "linear", "--quiet", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})
    held, deadline = tmp_path / "held", time.monotonic() + 180
    while len(list(held.glob("*"))) < 2:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the workers never held their studies"
        time.sleep(0.05)
    assert len(list((tmp_path / "out").glob(".vsr-*.partial"))) == 2        # both studies staged
    return proc, [int(p.name) for p in held.iterdir()]


def _check_stopped(tmp_path: Path, proc: subprocess.Popen, signal_name: str) -> None:
    out = tmp_path / "out"
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.splitlines() == [f"volumetricsr: stopped by {signal_name}: 1 done, 2 not finished (nothing of "
                                f"theirs written); report: {out / 'report.csv'}"], err
    assert not list(out.rglob(".vsr-*")), "staging left"
    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "v0.nii.gz"]
    with open(out / "report.csv") as f:
        report = {row["output"]: (row["status"], row["error"]) for row in csv.DictReader(f)}
    assert report == {"v0.nii.gz": ("done", ""),
                      "v1.nii.gz": ("cancelled", f"not finished: the batch was stopped ({signal_name})"),
                      "v2.nii.gz": ("cancelled", f"not finished: the batch was stopped ({signal_name})")}


@pytest.mark.parametrize("where", [[], ["--ray"]], ids=["local", "ray"])
def test_sigterm_stops_every_worker_removes_their_staging_and_reports_what_finished(where, tmp_path):
    if where:
        pytest.importorskip("ray", reason="Ray is an optional extra (CI installs it)")
    proc, workers = _start(tmp_path, *where)
    if not where:
        assert all(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(proc.pid)
                   for pid in workers)                                       # the parent's own workers
    proc.send_signal(signal.SIGTERM)
    assert _gone_after(workers, 3 * STOP_GRACE_S) < STOP_GRACE_S              # they stopped, not killed
    _check_stopped(tmp_path, proc, "SIGTERM")


def test_workers_that_do_not_stop_are_killed_and_their_staging_removed(tmp_path):
    proc, workers = _start(tmp_path, env={"SLOW_BATCH_DEAF": "1"})          # SIGTERM blocked; 1 s of grace
    proc.send_signal(signal.SIGINT)                                          # as Ctrl-C
    assert 1.0 <= _gone_after(workers, 10) < 5
    _check_stopped(tmp_path, proc, "SIGINT")


def test_no_worker_outlives_its_parent(tmp_path):
    proc, workers = _start(tmp_path)
    proc.kill()
    proc.wait()
    _gone_after(workers, 5)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["report.csv", "v0.nii.gz"]   # no staging, nothing placed

"""Faults: a killed inference or training, a full disk, two writers of one output. Each runs the
real command line in a child process (a few seconds each)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_ct_volume
from test_training import thin_folder  # noqa: F401  (a fixture)
from test_training_core import train_args, tvsrn_args
from volumetricsr import read_volume, super_resolve, write_volume
from volumetricsr.app.cli import main as cli_main
from volumetricsr.training import checkpoint as ckpt

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals and resource limits")


def child(code: str, *args: str, wait: bool = True, env: dict | None = None, **kwargs):
    """Run ``code`` in a fresh Python (the same interpreter), with ``sys.argv[1:] = args``."""
    cmd = [sys.executable, "-c", textwrap.dedent(code), *args]
    env = {**os.environ, **(env or {})}       # the same threads as this process: the same arithmetic
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, **kwargs)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs)


def wait_for(path: Path, proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.fixture
def thick(tmp_path) -> Path:
    v = make_ct_volume(size_ijk=(64, 60, 12), spacing=(0.8, 0.8, 4.0))
    return write_volume(v.with_array(v.array.astype(np.int16)), tmp_path / "thick.nii.gz")


def test_kill_9_while_writing_leaves_no_output_and_the_next_run_works(tmp_path, thick):
    out, ready = tmp_path / "out.nii.gz", tmp_path / "ready"
    proc = child("""
        import sys, time
        from pathlib import Path
        import SimpleITK as sitk
        from volumetricsr.app.cli import main

        def half_then_hang(image, path, *args):        # the process dies in the middle of the write
            Path(path).write_bytes(b"half a volume")
            Path(sys.argv[1]).touch()
            time.sleep(600)

        sitk.WriteImage = half_then_hang
        main(["infer", sys.argv[2], sys.argv[3], "--method", "linear", "--quiet"])
    """, str(ready), str(thick), str(out), wait=False)
    wait_for(ready, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert not out.exists()
    debris = list(tmp_path.glob(".vsr-*.partial"))
    assert len(debris) == 1 and f".vsr-{proc.pid}-" in debris[0].name      # what kill -9 leaves
    assert cli_main(["infer", str(thick), str(out), "--method", "linear", "--quiet"]) == 0
    assert read_volume(out).array.shape == (56, 60, 64)
    assert not list(tmp_path.glob(".vsr-*"))                    # the next write cleared it


def test_kill_9_during_training_resumes_with_only_the_steps_since_lost(thin_folder, tmp_path):
    args = tvsrn_args(thin_folder)
    assert cli_main(train_args(tmp_path, "straight", *args)) == 0
    ready = tmp_path / "ready"
    proc = child("""
        import sys, time
        from pathlib import Path
        from volumetricsr.app.cli import main
        from volumetricsr.methods.tvsrn.task import TVSRNTask

        step = TVSRNTask.train_step

        def hang_in_step_5(self, n, rng):              # after the checkpoint of step 4
            if n == 4:
                Path(sys.argv[1]).touch()
                time.sleep(600)
            return step(self, n, rng)

        TVSRNTask.train_step = hang_in_step_5
        main(sys.argv[2:])
    """, str(ready), *train_args(tmp_path, "killed", *args), wait=False)
    wait_for(ready, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    last = tmp_path / "killed" / "checkpoints" / "last.pt"
    assert ckpt.load(last)["step"] == 4                    # the last checkpoint is whole
    assert not list(last.parent.glob(".vsr-*"))
    assert cli_main(train_args(tmp_path, "killed", "--resume")) == 0
    a, b = (torch.load(tmp_path / "models" / f"{m}.pt", weights_only=True) for m in ("straight", "killed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)   # as if never killed


LIMITED = """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)       # a full disk: writes fail with EFBIG
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from volumetricsr.app.cli import main
    sys.exit(main(sys.argv[2:]))
"""


def test_a_full_disk_gives_one_clear_line_and_no_partial_output(tmp_path, thick):
    out = tmp_path / "out.nii.gz"
    run = child(LIMITED, "20000", "infer", str(thick), str(out), "--method", "linear", "--quiet")
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2, run.stderr
    assert len(lines) == 1 and lines[0].startswith("volumetricsr: error: Could not write"), run.stderr
    assert "disk full" in lines[0] and "NWAD" in lines[0], run.stderr      # the NIfTI library's line, folded in
    assert "Traceback" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thick.nii.gz"]      # no output, no staging


def test_a_full_disk_during_training_keeps_the_last_checkpoint(thin_folder, tmp_path):
    args = train_args(tmp_path, "run", *tvsrn_args(thin_folder))
    assert cli_main(args[:args.index("--max-steps") + 1] + ["2"] + args[args.index("--max-steps") + 2:]) == 0
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    size = last.stat().st_size
    before = last.read_bytes()
    run = child(LIMITED, str(size // 2), *train_args(tmp_path, "run", "--resume", "--max-steps", "4"))
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2, run.stderr
    assert "volumetricsr: error: Could not write" in lines[-1] and "disk full" in lines[-1], run.stderr
    assert "Traceback" not in run.stderr
    assert last.read_bytes() == before and not list(last.parent.glob(".vsr-*"))


def test_two_writers_of_one_output_leave_one_whole_result(tmp_path, thick):
    out = tmp_path / "out.nrrd"
    code = """
        import sys
        from volumetricsr.app.cli import main
        for _ in range(5):
            assert main(["infer", sys.argv[1], sys.argv[2], "--method", sys.argv[3], "--quiet"]) == 0
    """
    procs = [child(code, str(thick), str(out), m, wait=False) for m in ("linear", "sinc")]
    for p in procs:
        assert p.wait(120) == 0, p.communicate()
    result = read_volume(out).array
    expected = [super_resolve(read_volume(thick), m).array for m in ("linear", "sinc")]
    assert any(np.array_equal(result, e) for e in expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nrrd", "thick.nii.gz"]

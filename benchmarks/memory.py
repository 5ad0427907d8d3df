"""Peak memory of ``volumetricsr infer`` against the engine's stated bound, side by side in one run.

    nice -n 10 .venv/bin/python benchmarks/memory.py [--runs bspline:120 selfsr:120 tvsrn:24] [--size 512]

Each run is a fresh child process: ``volumetricsr infer`` on a synthetic thick CT of ``size`` x
``size`` x N slices at 0.7 x 0.7 x 5 mm (int16 HU, air outside a noisy body), upsampled x5 to 1 mm
((N-1)*5+1 slices), written as NRRD. Its peak RSS (``ru_maxrss`` of the child) minus the RSS of a child
that only imports the package and torch is compared with the bound the README states:
2 x (input + output as float32) + the network's working set (for TVSRN measured the same way: a child
that runs one 4x256x256 window). selfsr runs with ``--iterations 20`` (the
training's memory does not grow with the volume; inference does). TVSRN at 512x512 windows of 4x256x256
costs about 6 s a window on 2 CPU cores, so its run is shorter along depth by default.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "VolumetricSR"))

from volumetricsr import Volume, write_volume  # noqa: E402

OPTIONS = {"selfsr": ["--iterations", "20"], "tvsrn": ["--precision", "fp32"]}
#: A child that runs one TVSRN window (4x256x256, fp32): the network's working set.
ONE_WINDOW = """
import torch
from volumetricsr.methods import get_method
m = get_method("tvsrn")
m.predictor(m.load_card(None), (4, 256, 256), "cpu", "torch", "fp32")(torch.rand(1, 1, 4, 256, 256))
"""
MIB = 1 << 20


def thick_ct(size: int, slices: int) -> Volume:
    rng = np.random.default_rng(0)
    array = (rng.normal(0, 150, (slices, size, size)) + 40).astype(np.int16)
    r = np.hypot(*np.meshgrid(*(np.arange(size) - size / 2,) * 2, indexing="ij"))
    array[:, r > 0.45 * size] = -1000
    return Volume(array, (0.7, 0.7, 5.0))


def peak_rss_mib(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of a child process running ``args``."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.read()[-2000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start     # ru_maxrss is in KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=["bspline:120", "selfsr:120", "tvsrn:24"], metavar="METHOD:SLICES")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    base, _ = peak_rss_mib(["-c", "import torch, volumetricsr"])
    print(f"baseline (python + torch + volumetricsr imported): {base:.0f} MiB")
    print(f"{'method':8s} {'input':>14s} {'output':>15s} {'in+out MiB':>10s} {'peak-base MiB':>13s} "
          f"{'/ (in+out)':>10s} {'bound MiB':>9s} {'seconds':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for run in args.runs:
            method, slices = run.split(":")
            n = int(slices)
            src = write_volume(thick_ct(args.size, n), Path(tmp) / f"thick{n}.nrrd")
            n_out = (n - 1) * 5 + 1
            in_out = 4 * args.size * args.size * (n + n_out) / MIB
            working = peak_rss_mib(["-c", ONE_WINDOW])[0] - base if method == "tvsrn" else 0
            peak, seconds = peak_rss_mib(["-m", "volumetricsr.app.cli", "infer", str(src), str(Path(tmp) / "out.nrrd"),
                                          "--method", method, "--spacing", "1", "--quiet", *OPTIONS.get(method, [])])
            used = peak - base
            print(f"{method:8s} {f'{args.size}x{args.size}x{n}':>14s} {f'{args.size}x{args.size}x{n_out}':>15s} "
                  f"{in_out:10.0f} {used:13.0f} {used / in_out:10.2f} {2 * in_out + working:9.0f} {seconds:8.1f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

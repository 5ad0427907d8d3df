"""Two runs sharing the cores: how much slower is each than alone? Side by side in one run.

    nice -n 10 .venv/bin/python benchmarks/concurrency.py [--policies default busy] [--pairs selfsr+selfsr ...]

Jobs (each a fresh ``volumetricsr`` process): ``selfsr`` (infer, fast budget at ``--iterations``, on
the 6.5 mm brain MRI), ``tvsrn`` (infer with the shipped model on a 12-slice 256x256 crop of the 8 mm
chest CT), ``train`` (``--max-steps`` TVSRN training steps on a thin chest CT crop). Each job is timed
alone, then every pair is started together and each member timed; the ratio paired / alone is the
figure (goal: at most 2.3 on 2 cores). Policies: ``default`` is what users get (the package sets
``OMP_WAIT_POLICY=PASSIVE`` and sizes the pools to the usable cores); ``busy`` sets
``OMP_WAIT_POLICY=ACTIVE`` (threads spin while they wait); ``unset`` gives OpenMP an empty policy,
its own default (spin for a while, then sleep): what the package did before. A paired run that takes
more than ``--give-up`` times its alone time is stopped and reported as "> ratio".
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
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "VolumetricSR"))

from volumetricsr import read_volume, write_volume  # noqa: E402

POLICIES = {"default": {}, "busy": {"OMP_WAIT_POLICY": "ACTIVE"}, "unset": {"OMP_WAIT_POLICY": ""}}


def prepare(folder: Path) -> dict:
    """Input files of the jobs, written once into ``folder``."""
    ct = read_volume(DATA / "chest_ct_8mm_lungpetctdx.nii.gz")
    a = ct.array[9:21, 128:384, 128:384]
    write_volume(ct.with_array(a.copy(), origin=tuple(ct.index_to_physical([128, 128, 9]))), folder / "ct8.nii.gz")
    thin = read_volume(DATA / "chest_ct_1p25mm_ricord_a.nii.gz")
    (folder / "train").mkdir()
    write_volume(thin.with_array(thin.array[90:151, 128:384, 128:384].copy()), folder / "train" / "thin.nii.gz")
    return {"mr": DATA / "brain_mri_t1c_6p5mm_pgbm.nii.gz", "ct": folder / "ct8.nii.gz", "train": folder / "train"}


def command(job: str, files: dict, out: Path, args) -> list[str]:
    cli = [sys.executable, "-m", "volumetricsr.app.cli"]
    if job == "selfsr":
        return cli + ["infer", str(files["mr"]), str(out / "selfsr.nii.gz"), "--method", "selfsr", "--quiet",
                      "--iterations", str(args.iterations)]
    if job == "tvsrn":
        return cli + ["infer", str(files["ct"]), str(out / "tvsrn.nii.gz"), "--method", "tvsrn", "--quiet",
                      "--precision", "fp32"]
    if job == "train":
        return cli + ["train", "--method", "tvsrn", "--data", str(files["train"]), "--val-split", "slab",
                      "--val-crop", "64", "--out", "bench", "--models-dir", str(out / "models"),
                      "--max-steps", str(args.steps), "--steps-per-epoch", str(args.steps), "--crop", "64"]
    raise SystemExit(f"unknown job {job}")


def timed(cmds: list[list[str]], env: dict, limit: float) -> list[float]:
    """Start all ``cmds`` together; each one's wall time (inf if stopped at ``limit`` seconds)."""
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
    ends = [None] * len(procs)
    while any(e is None for e in ends):
        for i, p in enumerate(procs):
            if ends[i] is None and p.poll() is not None:
                if p.returncode != 0:
                    raise SystemExit(f"{' '.join(cmds[i])} failed: {p.stderr.read()[-1500:]}")
                ends[i] = time.perf_counter() - start
        if time.perf_counter() - start > limit:
            for i, p in enumerate(procs):
                if ends[i] is None:
                    p.kill()
                    p.wait()
                    ends[i] = float("inf")
        time.sleep(0.1)
    return ends


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", nargs="+", default=["default", "unset"], choices=list(POLICIES))
    ap.add_argument("--pairs", nargs="+", default=["selfsr+selfsr", "tvsrn+tvsrn", "train+selfsr", "train+tvsrn"])
    ap.add_argument("--iterations", type=int, default=400, help="selfsr training iterations")
    ap.add_argument("--steps", type=int, default=8, help="training steps of the train job")
    ap.add_argument("--give-up", type=float, default=6.0, help="stop a paired run at this multiple of its alone time")
    args = ap.parse_args()
    jobs = sorted({j for pair in args.pairs for j in pair.split("+")})
    print(f"{os.cpu_count()} CPUs; jobs {', '.join(jobs)}; selfsr {args.iterations} iterations, train {args.steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = prepare(tmp)
        for policy in args.policies:
            env = {**os.environ, **POLICIES[policy]}
            env.pop("OMP_NUM_THREADS", None)
            alone = {}
            for job in jobs:
                out = tmp / f"{policy}-{job}"
                out.mkdir()
                alone[job] = timed([command(job, files, out, args)], env, 3600)[0]
            print(f"\npolicy {policy}: alone " + ", ".join(f"{j} {alone[j]:.1f} s" for j in jobs))
            print(f"{'pair':16s} {'first s':>8s} {'x alone':>8s} {'second s':>9s} {'x alone':>8s}")
            for n, pair in enumerate(args.pairs):
                members = pair.split("+")
                outs = [tmp / f"{policy}-{n}-{i}" for i in range(len(members))]
                for o in outs:
                    o.mkdir()
                limit = args.give_up * max(alone[m] for m in members)
                times = timed([command(m, files, o, args) for m, o in zip(members, outs)], env, limit)
                cells = []
                for m, t in zip(members, times):
                    cells += [f"{t:8.1f}" if np.isfinite(t) else f"{'>' + format(limit, '.0f'):>8s}",
                              f"{t / alone[m]:8.2f}" if np.isfinite(t) else f"{'>' + format(limit / alone[m], '.1f'):>8s}"]
                print(f"{pair:16s} {cells[0]} {cells[1]} {cells[2]:>9s} {cells[3]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

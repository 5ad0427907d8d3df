"""Runs sharing the cores: how much slower is each than alone? Side by side in one run.

    python benchmarks/concurrency.py [--baseline REV] [--pairs selfsr+selfsr ...] [--policies default unset]

Prints the machine (usable cores, CPU, vector ISA, native bf16), then three tables:

- alone: each job with one thread (``--threads 1``) and as users get it (default threads), and,
  with ``--baseline REV``, the code of git revision REV as users got it: the trade a thread policy
  makes is visible there;
- pairs: every pair started together, each member's time and its ratio to its own alone time
  (goal: at most 2.3 on 2 cores);
- batch: ``infer-batch --workers 2`` against ``--workers 1`` on ``--studies`` copies of the MRI.

Jobs (each a fresh ``volumetricsr`` process): ``selfsr`` (infer at its defaults, or ``--iterations``,
on the 6.5 mm brain MRI, 256x256x26 -> 260x320x218), ``tvsrn`` (infer with the shipped model on a
12-slice 256x256 crop of the 8 mm chest CT), ``train`` (``--steps`` TVSRN training steps on a thin
chest CT crop). Policies: ``default`` is what users get; ``busy`` sets ``OMP_WAIT_POLICY=ACTIVE``
(threads spin while they wait); ``unset`` gives OpenMP an empty policy, its own default (spin for a
while, then sleep). A paired run that takes more than ``--give-up`` times its alone time is stopped
and reported as "> ratio".
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
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
from volumetricsr.compute.threads import usable_cores  # noqa: E402

POLICIES = {"default": {}, "busy": {"OMP_WAIT_POLICY": "ACTIVE"}, "unset": {"OMP_WAIT_POLICY": ""}}


def machine() -> str:
    """Cores, CPU model, vector ISA and native bf16, and the PyTorch build: what the figures depend on."""
    import torch

    flags, model = set(), platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags" and not flags:
                flags = set(value.split())
            elif key.strip() == "model name":
                model = value.strip()
    except OSError:
        pass
    isa = next((name for flag, name in (("amx_tile", "AMX"), ("avx512f", "AVX-512"), ("avx2", "AVX2"),
                                        ("asimd", "NEON")) if flag in flags), "unknown ISA")
    bf16 = "native bf16" if flags & {"avx512_bf16", "amx_bf16"} else "no native bf16"
    return (f"{usable_cores()} usable cores ({os.cpu_count()} CPUs), {model}, {isa}, {bf16}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads by default")


def prepare(folder: Path, studies: int) -> dict:
    """Input files of the jobs, written once into ``folder``."""
    ct = read_volume(DATA / "chest_ct_8mm_lungpetctdx.nii.gz")
    a = ct.array[9:21, 128:384, 128:384]
    write_volume(ct.with_array(a.copy(), origin=tuple(ct.index_to_physical([128, 128, 9]))), folder / "ct8.nii.gz")
    thin = read_volume(DATA / "chest_ct_1p25mm_ricord_a.nii.gz")
    (folder / "train").mkdir()
    write_volume(thin.with_array(thin.array[90:151, 128:384, 128:384].copy()), folder / "train" / "thin.nii.gz")
    mr = DATA / "brain_mri_t1c_6p5mm_pgbm.nii.gz"
    (folder / "batch").mkdir()
    for i in range(studies):
        shutil.copy(mr, folder / "batch" / f"mr{i}.nii.gz")
    return {"mr": mr, "ct": folder / "ct8.nii.gz", "train": folder / "train", "batch": folder / "batch"}


def command(job: str, files: dict, out: Path, args, threads: int = 0) -> list[str]:
    cli = [sys.executable, "-m", "volumetricsr.app.cli"]
    given = ["--threads", str(threads)] if threads else []
    if job == "selfsr":
        budget = ["--iterations", str(args.iterations)] if args.iterations else []
        return cli + ["infer", str(files["mr"]), str(out / "selfsr.nii.gz"), "--method", "selfsr", "--quiet",
                      *budget, *given]
    if job == "tvsrn":
        return cli + ["infer", str(files["ct"]), str(out / "tvsrn.nii.gz"), "--method", "tvsrn", "--quiet",
                      "--precision", "fp32", *given]
    if job == "train":
        return cli + ["train", "--method", "tvsrn", "--data", str(files["train"]), "--val-split", "slab",
                      "--val-crop", "64", "--out", "bench", "--models-dir", str(out / "models"),
                      "--max-steps", str(args.steps), "--steps-per-epoch", str(args.steps), "--crop", "64", *given]
    if job.startswith("batch"):
        return cli + ["infer-batch", str(files["batch"]), str(out), "--method", "selfsr", "--quiet",
                      "--workers", job[len("batch"):], *(["--iterations", str(args.iterations)] if args.iterations else [])]
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


def baseline_env(rev: str, folder: Path, env: dict) -> dict:
    """The environment that runs the core of git revision ``rev`` (exported into ``folder``)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "VolumetricSR", "models"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return {**env, "PYTHONPATH": str(folder / "VolumetricSR")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", nargs="+", default=["default"], choices=list(POLICIES))
    ap.add_argument("--pairs", nargs="+", default=["selfsr+selfsr", "tvsrn+tvsrn", "train+selfsr", "train+tvsrn"])
    ap.add_argument("--iterations", type=int, help="selfsr training iterations (default: its default budget)")
    ap.add_argument("--steps", type=int, default=8, help="training steps of the train job")
    ap.add_argument("--studies", type=int, default=4, help="studies of the batch (0: no batch table)")
    ap.add_argument("--baseline", metavar="REV", help="also time each job alone with the code of this git revision")
    ap.add_argument("--give-up", type=float, default=6.0, help="stop a paired run at this multiple of its alone time")
    args = ap.parse_args()
    jobs = sorted({j for pair in args.pairs for j in pair.split("+")})
    print(machine())
    print(f"jobs {', '.join(jobs)}; selfsr {args.iterations or 'default'} iterations, train {args.steps} steps")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = prepare(tmp, args.studies)
        for policy in args.policies:
            env = {**os.environ, **POLICIES[policy], "PYTHONPATH": str(ROOT / "VolumetricSR")}
            env.pop("OMP_NUM_THREADS", None)
            runs = {"1 thread": (env, 1), "default": (env, 0)}
            if args.baseline:
                (tmp / "baseline").mkdir(exist_ok=True)
                runs[f"{args.baseline} default"] = (baseline_env(args.baseline, tmp / "baseline", env), 0)
            times = {}
            for n, (label, (run_env, threads)) in enumerate(runs.items()):
                for job in jobs:
                    out = tmp / f"{policy}-alone-{n}-{job}"
                    out.mkdir()
                    times[label, job] = timed([command(job, files, out, args, threads)], run_env, 3600)[0]
            alone = {job: times["default", job] for job in jobs}
            print(f"\npolicy {policy}, alone (s):")
            print(f"{'job':8s} " + " ".join(f"{label:>16s}" for label in runs))
            for job in jobs:
                print(f"{job:8s} " + " ".join(f"{times[label, job]:16.1f}" for label in runs))
            print(f"\npolicy {policy}, pairs started together:")
            print(f"{'pair':16s} {'first s':>8s} {'x alone':>8s} {'second s':>9s} {'x alone':>8s}")
            for n, pair in enumerate(args.pairs):
                members = pair.split("+")
                outs = [tmp / f"{policy}-{n}-{i}" for i in range(len(members))]
                for o in outs:
                    o.mkdir()
                limit = args.give_up * max(alone[m] for m in members)
                paired = timed([command(m, files, o, args) for m, o in zip(members, outs)], env, limit)
                cells = []
                for m, t in zip(members, paired):
                    cells += [f"{t:8.1f}" if np.isfinite(t) else f"{'>' + format(limit, '.0f'):>8s}",
                              f"{t / alone[m]:8.2f}" if np.isfinite(t) else f"{'>' + format(limit / alone[m], '.1f'):>8s}"]
                print(f"{pair:16s} {cells[0]} {cells[1]} {cells[2]:>9s} {cells[3]}", flush=True)
            if args.studies:
                batch = {}
                for workers in (1, 2):
                    out = tmp / f"{policy}-batch{workers}"
                    batch[workers] = timed([command(f"batch{workers}", files, out, args)], env, 3600)[0]
                print(f"\npolicy {policy}, infer-batch of {args.studies} selfsr studies: --workers 1 {batch[1]:.1f} s, "
                      f"--workers 2 {batch[2]:.1f} s ({batch[1] / batch[2]:.2f}x the throughput)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Scale-out on one machine: the same work with 1 and 2 workers, side by side in one run (ratios).

    nice -n 10 .venv/bin/python benchmarks/scaling.py [--studies 8] [--steps 40] [--out DIR]

- Cohort inference (``volumetricsr infer-batch``, the shipped TVSRN model) over ``--studies``
  synthetic 5 mm CT studies: studies per minute with 1 and 2 local workers and with 1 and 2 Ray
  workers (a local Ray instance; skipped without Ray). The Ray figures include starting Ray.
- Training (``volumetricsr train --method tvsrn`` on synthetic thin CTs): samples per second with one
  process on every core, one process on one core, and 2 gloo ranks under torchrun with one core each
  (NCCL, one rank per GPU, where 2 GPUs are present and ``--device cuda``). Timed from the rank-0
  progress lines between step 5 and the last, so start-up is left out.

Every figure comes from a fresh process; the table gives each against the 1-worker run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "VolumetricSR"))

from volumetricsr import write_volume  # noqa: E402
from volumetricsr.data.phantom import make_phantom  # noqa: E402
from volumetricsr.data.simulate import simulate_thick  # noqa: E402

CLI = [sys.executable, "-m", "volumetricsr.app.cli"]


def prepare(folder: Path, studies: int) -> tuple[Path, Path]:
    """``folder/thick``: 5 mm studies (from 1 mm phantoms); ``folder/thin``: 1 mm training volumes."""
    (folder / "thick").mkdir(parents=True)
    (folder / "thin").mkdir()
    for k in range(studies):
        thin = make_phantom((160, 128, 61), 1.0, seed=k)
        write_volume(simulate_thick(thin, 5), folder / "thick" / f"study{k:02d}.nii.gz")
        if k < 3:
            write_volume(thin, folder / "thin" / f"case{k}.nii.gz")
    return folder / "thick", folder / "thin"


def infer_batch(thick: Path, out: Path, workers: int, ray: bool) -> float:
    """Studies per minute of one infer-batch run."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    subprocess.run([*CLI, "infer-batch", str(thick), str(out), "--method", "tvsrn", "--device", "cpu", "--quiet",
                    "--workers", str(workers), *(["--ray"] if ray else [])], check=True, capture_output=True)
    seconds = time.perf_counter() - start
    return len(list(out.glob("*.nii.gz"))) / seconds * 60


def train(thin: Path, work: Path, steps: int, ranks: int, threads: int, device: str) -> float:
    """Training samples per second (batch 1 per rank) between step 5 and the last."""
    shutil.rmtree(work, ignore_errors=True)
    args = ["train", "--method", "tvsrn", "--data", str(thin), "--out", "scaling", "--models-dir", str(work),
            "--max-steps", str(steps), "--steps-per-epoch", str(steps), "--crop", "96", "--device", device,
            "--progress-json"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if ranks == 1:
        cmd = [*CLI, *args, "--threads", str(threads)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
               "-m", "volumetricsr", *args]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    steps_at = {}
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event["event"] == "step":
                steps_at[event["step"]] = event["elapsed"]
    last = max(steps_at)
    return (last - 5) * ranks / (steps_at[last] - steps_at[5])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", type=int, default=8)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", type=Path, help="keep the inputs and outputs here (default: a temporary folder)")
    args = p.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="vsr-scaling-"))
    thick, thin = prepare(folder / "data", args.studies) if not (folder / "data").exists() else (
        folder / "data" / "thick", folder / "data" / "thin")
    try:
        import ray  # noqa: F401
        have_ray = True
    except ImportError:
        have_ray = False
    cores = len(os.sched_getaffinity(0))
    rows = []
    for workers in (1, 2):
        rows.append(("infer-batch, local", workers, infer_batch(thick, folder / f"local{workers}", workers, False),
                     "studies/min"))
    for workers in (1, 2) if have_ray else ():
        rows.append(("infer-batch, Ray (local)", workers, infer_batch(thick, folder / f"ray{workers}", workers, True),
                     "studies/min"))
    one_all = train(thin, folder / "train1", args.steps, 1, cores, args.device)
    one_one = train(thin, folder / "train1t", args.steps, 1, 1, args.device)
    two = train(thin, folder / "train2", args.steps, 2, max(1, cores // 2), args.device)
    rows += [(f"training, 1 process x {cores} threads", 1, one_all, "samples/s"),
             ("training, 1 process x 1 thread", 1, one_one, "samples/s"),
             (f"training, 2 {'NCCL' if args.device == 'cuda' else 'gloo'} ranks x {max(1, cores // 2)} thread(s)",
              2, two, "samples/s")]
    print(f"{cores} cores, {args.studies} studies, {args.steps} training steps")
    print("| work | workers | throughput | vs. 1 worker |\n|---|---|---|---|")
    base = {}
    for name, workers, value, unit in rows:
        key = name.split(",")[0] + (name.split(",")[1].split(" x")[0] if "infer" in name else "")
        base.setdefault(key, value)
        print(f"| {name} | {workers} | {value:.3g} {unit} | {value / base[key]:.2f} |")
    (folder / "scaling.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

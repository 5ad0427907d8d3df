"""Peak memory of TVSRN training against the number of training cases: cached (memory-mapped, the
``volumetricsr train`` default) and all in RAM, side by side.

    .venv/bin/python benchmarks/training_memory.py [--cases 2 8 32] [--size 256 256 120] [--steps 20]

Synthetic thin CTs of ``--size`` voxels (int16 on disk) are written once to a temporary folder;
each (cases, mode) pair trains ``--steps`` steps of a small TVSRN (crop 64) in a fresh process,
whose peak resident set (``ru_maxrss``) is reported. The prepared float32 pairs of one case take
``size`` x 4 x 1.2 bytes; in RAM that grows with the cohort, memory-mapped it does not.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "VolumetricSR"))

ARCH = {"channels": 4, "heads": 2, "enc_layers": 1, "tab_layers": 1, "dec_layers": 1}


def child(folder: str, cases: int, cached: bool, steps: int) -> None:
    from volumetricsr.methods.tvsrn.task import TVSRNTask
    from volumetricsr.training.trainer import Trainer

    files = sorted(Path(folder).glob("case*.nii.gz"))[:cases]
    data = Path(folder) / f"list{cases}.csv"
    data.write_text("".join(f"{f}\n" for f in files))
    config = json.loads(json.dumps(TVSRNTask.defaults))
    config["arch"].update(ARCH)
    config.update(data=str(data), crop=64, total_steps=steps, warmup=2, val_fraction=0.0)
    work = Path(folder) / f"work{cases}{'c' if cached else 'r'}"
    t = time.perf_counter()
    task = TVSRNTask.from_config(config, "cpu", work / "cache" if cached else None)
    Trainer(task, work, total_steps=steps, steps_per_epoch=steps + 1, config=config,
            stream=open("/dev/null", "w")).run()
    print(json.dumps({"seconds": time.perf_counter() - t,
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", type=int, nargs="+", default=[2, 8, 32])
    p.add_argument("--size", type=int, nargs=3, default=[256, 256, 120], metavar=("I", "J", "K"))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2] == "cached", int(args.child[3]))
        return 0
    from volumetricsr import Volume, write_volume

    folder = Path(tempfile.mkdtemp(prefix="training-memory-"))
    rng = np.random.default_rng(0)
    for n in range(max(args.cases)):
        array = rng.normal(0, 300, size=args.size[::-1]).astype(np.int16)
        write_volume(Volume(array, (0.7, 0.7, 1.25)), folder / f"case{n:03d}.nii.gz")
    per_case = np.prod(args.size) * 4 * 1.2 / 2 ** 20
    print(f"{max(args.cases)} synthetic thin CTs {tuple(args.size)} in {folder}; prepared pairs {per_case:.0f} MiB "
          f"per case; {args.steps} steps, crop 64\n")
    print("| cases | in RAM: peak RSS (MiB) | cached: peak RSS (MiB) | cached / in RAM | cached s |\n|---|---|---|---|---|")
    for cases in args.cases:
        row = {}
        for mode in ("ram", "cached"):
            out = subprocess.run([sys.executable, __file__, "--child", str(folder), str(cases), mode, str(args.steps)],
                                 capture_output=True, text=True, check=True)
            row[mode] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {cases} | {row['ram']['peak_mib']:.0f} | {row['cached']['peak_mib']:.0f} | "
              f"{row['cached']['peak_mib'] / row['ram']['peak_mib']:.2f} | {row['cached']['seconds']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

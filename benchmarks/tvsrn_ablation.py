"""TVSRN ablation: the paper's network and each option beyond it, trained alike, scored held out.

    .venv/bin/python benchmarks/tvsrn_ablation.py --data LIST_OR_FOLDER --thin HELDOUT.nii.gz \\
        [--steps 150] [--crop 32] [--batch-size 4] [--variants paper base balanced full] [--work DIR]

Every variant (see benchmarks/tvsrn_diagnose.py) trains ``--steps`` steps with the same seed,
data, crops and schedule through the training harness (``--fit-base`` where it has a base); then
each model and B-spline super-resolve the same held-out pseudo-thick crop (``--slices`` thin slices
x ``--size``^2 from the middle of ``--thin``), scored with the RPLHR protocol.
"""
from __future__ import annotations

import argparse
import copy
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "VolumetricSR"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tvsrn_diagnose import VARIANTS  # noqa: E402
from tvsrn_heldout import crop  # noqa: E402
from volumetricsr import read_volume, super_resolve  # noqa: E402
from volumetricsr.data.geometry import through_plane_axis  # noqa: E402
from volumetricsr.data.metrics import evaluate  # noqa: E402
from volumetricsr.data.simulate import simulate_thick  # noqa: E402
from volumetricsr.compute.export import write_model  # noqa: E402
from volumetricsr.methods.tvsrn.task import TVSRNTask
from volumetricsr.training.trainer import Trainer  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--thin", required=True, help="held-out thin CT (never in --data)")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--slices", type=int, default=41)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--work", help="folder for the runs (default: a temporary one)")
    args = p.parse_args()
    thin = read_volume(args.thin)
    axis = through_plane_axis(thin)
    ref = crop(thin, axis, args.slices, args.size)
    thick = simulate_thick(ref, 5, axis=axis)
    work = Path(args.work or tempfile.mkdtemp(prefix="tvsrn-ablation-"))
    b = evaluate(super_resolve(thick, "bspline", ref.spacing[axis], axis=axis), ref, "rplhr")
    print(f"held out: {Path(args.thin).name} centre {args.slices} slices x {args.size}^2; {args.steps} steps, "
          f"crop {args.crop}, batch {args.batch_size}")
    print(f"| variant | PSNR (dB) | SSIM | vs B-spline (dB) | final train L1 (HU) | s |\n|---|---|---|---|---|---|")
    print(f"| B-spline | {b['psnr']:.3f} | {b['ssim']:.4f} | | | |", flush=True)
    for name in args.variants:
        config = copy.deepcopy(TVSRNTask.defaults)
        config["arch"].update(VARIANTS[name])
        config.update(data=args.data, crop=args.crop, batch_size=args.batch_size, foreground=0.25,
                      fit_base="base" in VARIANTS[name], total_steps=args.steps, warmup=min(100, args.steps // 5),
                      val_split="slab", val_crop=128)
        t0 = time.perf_counter()
        task = TVSRNTask.from_config(config, "cpu", work / "cache")
        trainer = Trainer(task, work / name, total_steps=args.steps, steps_per_epoch=args.steps + 1, config=config,
                          stream=io.StringIO())
        trainer.run()
        seconds = time.perf_counter() - t0
        card = write_model(work / "models", name, *task.model_card())
        out = super_resolve(thick, "tvsrn", ref.spacing[axis], axis=axis, model=str(card.path), device="cpu",
                            precision="fp32", compile=False)
        m = evaluate(out, ref, "rplhr")
        loss = np.mean([r["loss"] for r in trainer.history[-20:]]) * (task.norm.high - task.norm.low)
        print(f"| {name} | {m['psnr']:.3f} | {m['ssim']:.4f} | {m['psnr'] - b['psnr']:+.3f} | {loss:.1f} | "
              f"{seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

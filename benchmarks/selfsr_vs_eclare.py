"""Self-supervised SR against ECLARE and B-spline: PSNR/SSIM against wall time, side by side.

Cases (from ../shared/data): central in-plane crops (to keep ECLARE's CPU inference to minutes) of a
brain T1 MRI made 4x thick along K and of a thin chest CT made 5x thick (Gaussian slice profile, FWHM = the new spacing, via simulate-thick).
Every run is one command line, timed wall-clock (start-up and file I/O included on both sides):
``volumetricsr infer`` for B-spline and for selfsr at several ``--iterations``, and ECLARE's
``run-eclare`` at several ``--n-patches``, told the true slice thickness as selfsr is. ECLARE is
GPL-3.0 and is never imported: it runs from its own environment (``--eclare PATH/run-eclare``).

Outputs are compared on physical coordinates: each is resampled onto the thin reference grid and
scored on the thin slices that every output covers (ECLARE places its slices slab-centred).
MRI: intensities scaled by the reference range; CT: the RPLHR window [-1024, 2048].

    python benchmarks/selfsr_vs_eclare.py --eclare ../eclare-venv/bin/run-eclare --out bench-selfsr
    python benchmarks/selfsr_vs_eclare.py --quick ...     # tiny budgets: checks the pipeline only

Finished runs are recorded in ``OUT/<case>/<run>.json`` and not repeated: an interrupted benchmark
continues where it stopped (delete a record to measure that run again).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from volumetricsr import read_volume, write_volume
from volumetricsr.data.geometry import to_stack
from volumetricsr.data.metrics import RPLHR_WINDOW, on_grid, psnr, ssim_per_slice
from volumetricsr.data.simulate import simulate_thick

CASES = {  # name: (file, factor, central in-plane crop in voxels, intensity window or None)
    "mri": ("brain_mri_t1_0p88mm_chris.nii.gz", 4, 176, None),      # 176x176 of 188x256, all 190 slices
    "ct": ("chest_ct_1p25mm_ricord_a.nii.gz", 5, 192, RPLHR_WINDOW),  # 192x192 of 512x512, all 255 slices
}


def prepare(case: str, data: Path, out: Path):
    name, factor, crop, window = CASES[case]
    thin = read_volume(data / name)
    if crop:
        k, j, i = thin.array.shape
        j0, i0 = (j - crop) // 2, (i - crop) // 2
        thin = thin.with_array(np.ascontiguousarray(thin.array[:, j0:j0 + crop, i0:i0 + crop]),
                               origin=tuple(thin.index_to_physical(np.array([i0, j0, 0]))))
    thick = simulate_thick(thin, factor, axis="K")
    write_volume(thin, out / "thin.nii.gz")
    write_volume(thick, out / "thick.nii.gz")
    return thin, thick, window


def timed(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def on_reference_grid(path: Path, ref) -> np.ndarray:
    """The prediction resampled (linear) onto the reference grid; NaN outside it."""
    return to_stack(on_grid(read_volume(path), ref), 2)


def score(preds: dict[str, np.ndarray], ref, window) -> dict[str, dict]:
    """PSNR/SSIM of every prediction on the thin slices all of them cover (5 more left out at each end)."""
    covered = np.logical_and.reduce([np.isfinite(p).reshape(p.shape[0], -1).all(axis=1) for p in preds.values()])
    idx = np.nonzero(covered)[0][5:-5]
    r = to_stack(ref.array, 2)[idx].astype(np.float32)
    lo, hi = window or (float(r.min()), float(r.max()))
    scale = lambda a: np.clip((a - lo) / (hi - lo), 0, 1)  # noqa: E731
    r = scale(r)
    return {k: {"psnr": psnr(scale(p[idx]), r), "ssim": float(ssim_per_slice(scale(p[idx]), r).mean()),
                "slices": [int(idx[0]), int(idx[-1])]} for k, p in preds.items()}


def best_by(runs: list[dict], t: float) -> float:
    """PSNR of the best run finished by wall time ``t`` (-inf if none)."""
    return max((r["psnr"] for r in runs if r["seconds"] <= t), default=-math.inf)


def verdicts(results: dict) -> dict:
    """The issue's acceptance checks, computed from the measured runs."""
    out = {}
    for case, runs in results.items():
        ours = [r for r in runs if r["method"] == "selfsr"]
        eclare = [r for r in runs if r["method"] == "eclare"]
        bspline = next(r for r in runs if r["method"] == "bspline")
        largest = max(eclare, key=lambda r: r["seconds"])
        out[case] = {
            "selfsr_best_minus_bspline_db": max(r["psnr"] for r in ours) - bspline["psnr"],
            "selfsr_at_least_eclare_at_every_time": all(best_by(ours, e["seconds"]) >= e["psnr"] for e in eclare),
            "selfsr_at_a_third_of_largest_eclare_time_db": best_by(ours, largest["seconds"] / 3),
            "largest_eclare": {"seconds": largest["seconds"], "psnr": largest["psnr"]},
        }
        out[case]["reaches_largest_eclare_in_a_third_of_its_time"] = (
            out[case]["selfsr_at_a_third_of_largest_eclare_time_db"] >= largest["psnr"])
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (case, runs) in zip(axes[0], results.items()):
        for method, style in (("selfsr", "o-"), ("eclare", "s--")):
            pts = sorted((r["seconds"] / 60, r["psnr"]) for r in runs if r["method"] == method)
            ax.plot(*zip(*pts), style, label={"selfsr": "VolumetricSR selfsr", "eclare": "ECLARE"}[method])
        b = next(r for r in runs if r["method"] == "bspline")
        ax.axhline(b["psnr"], color="gray", ls=":", label="B-spline")
        ax.set_xscale("log")
        ax.set_xlabel("wall time (minutes, log scale)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"{case}: {CASES[case][0].split('.')[0]}, x{CASES[case][1]}")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--eclare", default=os.environ.get("ECLARE", "run-eclare"), help="ECLARE's run-eclare executable")
    ap.add_argument("--out", type=Path, default=Path("bench-selfsr"))
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--iterations", type=int, nargs="+", default=[300, 1200, 4000], help="selfsr budgets")
    ap.add_argument("--n-patches", type=int, nargs="+", default=[2000, 8000, 120000],
                    help="ECLARE budgets (the largest runs about 35 minutes on 2 CPU cores)")
    ap.add_argument("--quick", action="store_true", help="tiny budgets, to check the pipeline")
    args = ap.parse_args()
    if args.quick:
        args.iterations, args.n_patches = [20, 40, 60], [64, 128, 256]
    if not shutil.which(args.eclare):
        sys.exit(f"ECLARE not found ({args.eclare}); install it in its own venv: pip install eclare")
    cli = [str(Path(sys.executable).with_name("volumetricsr"))]
    results = {}
    for case in args.cases:
        folder = args.out / case
        folder.mkdir(parents=True, exist_ok=True)
        ref, thick, window = prepare(case, args.data, folder)
        rel_thickness = thick.spacing[2] / min(thick.spacing[:2])
        runs, outputs = [], {}
        jobs = [("bspline", None, cli + ["infer", folder / "thick.nii.gz", folder / "bspline.nii.gz", "--method",
                                         "bspline", "--spacing", str(ref.spacing[2]), "--quiet"])]
        for it in args.iterations:
            jobs.append(("selfsr", it, cli + ["infer", folder / "thick.nii.gz", folder / f"selfsr_{it}.nii.gz",
                                              "--method", "selfsr", "--prior", "none",  # the MRI trained the priors
                                              "--spacing", str(ref.spacing[2]), "--device",
                                              "cpu", "--iterations", str(it), "--quiet"]))
        for n in args.n_patches:
            jobs.append(("eclare", n, [args.eclare, "--in-fpath", folder / "thick.nii.gz", "--out-dir",
                                       folder / f"eclare_{n}", "--gpu-id", "-1", "--n-patches", str(n),
                                       "--relative-slice-thickness", f"{rel_thickness:.4f}"]))
        for method, budget, cmd in jobs:
            key = method if budget is None else f"{method}_{budget}"
            record = folder / f"{key}.json"        # a finished run is kept: the benchmark resumes
            if not record.is_file():
                seconds = timed([str(c) for c in cmd], folder / f"{key}.log")
                output = folder / f"{key}.nii.gz" if method != "eclare" else next((folder / key).glob("*_eclare.nii*"))
                record.write_text(json.dumps({"seconds": round(seconds, 1), "output": str(output)}))
            run = {"method": method, "budget": budget, **json.loads(record.read_text())}
            outputs[key] = Path(run["output"])
            runs.append(run)
            print(f"{case} {key}: {run['seconds']} s", flush=True)
        scores = score({k: on_reference_grid(p, ref) for k, p in outputs.items()}, ref, window)
        for r in runs:
            r.update(scores[r["method"] if r["budget"] is None else f"{r['method']}_{r['budget']}"])
        results[case] = runs
    checks = verdicts(results)
    (args.out / "results.json").write_text(json.dumps({"runs": results, "checks": checks}, indent=2))
    plot(results, args.out / "psnr_vs_time.png")
    print("| case | method | budget | wall time (s) | PSNR (dB) | SSIM |\n|---|---|---|---|---|---|")
    for case, runs in results.items():
        for r in runs:
            print(f"| {case} | {r['method']} | {r['budget'] or ''} | {r['seconds']} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    print(json.dumps(checks, indent=2))


if __name__ == "__main__":
    main()

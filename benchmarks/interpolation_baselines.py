"""Interpolation baselines on real thin CTs made 5x thick: PSNR/SSIM (RPLHR protocol), time, figure.

    python benchmarks/interpolation_baselines.py [--data ../shared/data] [--figure Resources/Screenshots/baselines_chest.png]

Prints a Markdown table. Each thin CT is thickened by slice-profile averaging (Gaussian, FWHM = new
spacing, thick slice k centred on thin slice 5k) and upsampled back to the thin grid.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from volumetricsr import read_volume, super_resolve
from volumetricsr.app.figures import comparison_figure
from volumetricsr.data.metrics import evaluate
from volumetricsr.data.simulate import simulate_thick

CASES = ["chest_ct_1p25mm_ricord_a.nii.gz", "chest_ct_1p25mm_ricord_b.nii.gz", "head_ct_1p25mm_cptac.nii.gz"]
METHODS = ["linear", "bspline", "sinc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--figure", help="PNG of the first case (coronal reformats)")
    args = ap.parse_args()
    print("| case | method | PSNR (dB) | SSIM | seconds |\n|---|---|---|---|---|")
    for n, case in enumerate(CASES):
        thin = read_volume(Path(args.data) / case)
        thick = simulate_thick(thin, 5)
        panels = {"thick x5 (input)": thick}
        for method in METHODS:
            start = time.perf_counter()
            sr = super_resolve(thick, method, thin.spacing[2])
            seconds = time.perf_counter() - start
            r = evaluate(sr, thin, "rplhr")
            print(f"| {case.split('.')[0]} | {method} | {r['psnr']:.2f} | {r['ssim']:.4f} | {seconds:.2f} |", flush=True)
            panels[method] = sr
        panels["thin (reference)"] = thin
        if args.figure and n == 0:
            comparison_figure(panels, args.figure, axis=2, window=(-1000, 400), row_fraction=0.55,
                              crop=(slice(0.2, 0.8), slice(0.1, 0.9)),
                              title=f"{case.split('.')[0]}: coronal reformat, 1.25 mm made 6.25 mm thick and back")


if __name__ == "__main__":
    main()

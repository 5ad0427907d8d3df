"""Intensities beyond a network's window (metal, dense bone): kept, and nothing else changed?

    nice -n 10 .venv/bin/python benchmarks/intensities.py [--thin ../shared/data/head_ct_1p25mm_cptac.nii.gz]
        [--start 20 40 150] [--size 81 256 256] [--methods tvsrn selfsr]

A thin CT with metal (default: the CPTAC head CT, up to 15,720 HU; a crop around its metal) is
thickened x5 and super-resolved back by each network method twice, side by side in one run:
with the restoration (``restore_clipped``: the network held to its window, the out-of-window part
of the input interpolated back) and without it (as before: TVSRN's output as the network gave it,
selfsr on the unclipped volume). It prints the maximum of the acquired slices in the input and in
each output, and PSNR/SSIM against the thin original in the RPLHR window (the "in-window" figures,
which should not change) and over the whole range of the reference (protocol plain).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "VolumetricSR"))

from volumetricsr import read_volume, super_resolve  # noqa: E402
from volumetricsr.methods import network  # noqa: E402
from volumetricsr.methods.selfsr import data as selfsr_data  # noqa: E402
from volumetricsr.data.metrics import evaluate  # noqa: E402
from volumetricsr.data.simulate import simulate_thick  # noqa: E402

FACTOR = 5
OPTIONS = {"tvsrn": dict(precision="fp32", compile=False), "selfsr": dict(budget="fast")}


def without_restoration():
    """Undo the restoration for one run: returns a function that puts it back."""
    saved = network.restore_clipped, selfsr_data.HEADROOM
    network.restore_clipped = lambda out, stack, lo, hi: out     # every network method's (plane_output's too)
    selfsr_data.HEADROOM = np.inf      # no clipping of the volume selfsr learns from (and so nothing to restore)

    def undo():
        network.restore_clipped, selfsr_data.HEADROOM = saved
    return undo


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--thin", default=str(Path(__file__).resolve().parents[2] / "shared/data/head_ct_1p25mm_cptac.nii.gz"))
    ap.add_argument("--start", type=int, nargs=3, default=[20, 40, 150], help="crop start (k, j, i)")
    ap.add_argument("--size", type=int, nargs=3, default=[81, 256, 256], help="crop size (k, j, i); k = 5 n + 1")
    ap.add_argument("--methods", nargs="+", default=["tvsrn", "selfsr"])
    args = ap.parse_args()

    thin = read_volume(args.thin)
    (k, j, i), (nk, nj, ni) = args.start, args.size
    thin = thin.with_array(thin.array[k:k + nk, j:j + nj, i:i + ni].astype(np.float32),
                           origin=tuple(thin.index_to_physical([i, j, k])))
    thick = simulate_thick(thin, FACTOR, axis=2)
    print(f"{Path(args.thin).name}, crop {nk}x{nj}x{ni} from {tuple(args.start)}, x{FACTOR} pseudo-thick "
          f"{thick.array.shape[0]} slices; max of the acquired (thick) slices {thick.array.max():.0f} HU")
    print(f"{'method':8s} {'restored':>8s} {'max HU at acquired':>19s} {'PSNR window':>12s} {'SSIM window':>12s} "
          f"{'PSNR full':>10s} {'seconds':>8s}")
    for method in args.methods:
        for restored in (True, False):
            undo = (lambda: None) if restored else without_restoration()
            try:
                start = time.perf_counter()
                out = super_resolve(thick, method, thin.spacing[2], axis=2, device="cpu", **OPTIONS.get(method, {}))
                seconds = time.perf_counter() - start
            finally:
                undo()
            at_acquired = out.array[::FACTOR].max()
            window, full = evaluate(out, thin, "rplhr", 2), evaluate(out, thin, "plain", 2)
            print(f"{method:8s} {'yes' if restored else 'no':>8s} {at_acquired:19.0f} {window['psnr']:12.3f} "
                  f"{window['ssim']:12.4f} {full['psnr']:10.3f} {seconds:8.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

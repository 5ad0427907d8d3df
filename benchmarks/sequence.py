"""A sequence super-resolved with selfsr: its network trained once and reused (what
``super_resolve_frames`` does) against trained on every frame, and B-spline; side by side in one run.

    python benchmarks/sequence.py [--frames 3] [--factor 5] [--iterations N]

The sequence: the held-out 1 mm brain T1 (``brain_mri_t1_1mm_mne``) as ``--frames`` frames of a
contrast series (frame t adds a smooth enhancing region, up to 60 % of the brain's mean at the last
frame, and scales the whole by 1 + 0.1 t), each made ``--factor`` x thick along K with a Gaussian
slice profile (FWHM = the new spacing). Each result is scored against its thin frame (PSNR over the
reference range, on the slices every result covers); times are wall-clock in this process.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "VolumetricSR"))

from volumetricsr import read_volume, super_resolve, super_resolve_frames  # noqa: E402
from volumetricsr.data.metrics import evaluate  # noqa: E402
from volumetricsr.data.simulate import simulate_thick  # noqa: E402


def sequence(frames: int, factor: int):
    """Thin frames (the references) and their thick versions."""
    thin = read_volume(DATA / "brain_mri_t1_1mm_mne.nii.gz")
    base = thin.array.astype(np.float32)
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in base.shape), indexing="ij")
    region = np.exp(-((k - 0.1) ** 2 + (j + 0.2) ** 2 + (i - 0.15) ** 2) / 0.08) * (base > base.mean())
    refs = []
    for t in range(frames):
        share = t / max(frames - 1, 1)
        refs.append(thin.with_array((base * (1 + 0.1 * t) + 0.6 * base.mean() * share * region).astype(np.float32),
                                    metadata={"frame": {"index": t, "value": float(t)}}))
    return refs, [simulate_thick(r, factor) for r in refs]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--factor", type=int, default=5)
    ap.add_argument("--iterations", type=int, help="selfsr iterations (default: its default budget)")
    args = ap.parse_args()
    refs, thick = sequence(args.frames, args.factor)
    options = {"iterations": args.iterations} if args.iterations else {}
    print(f"{args.frames} frames of {thick[0].describe()} (x{args.factor} thick), selfsr {args.iterations or 'default'}"
          " iterations")

    def per_frame(method, **kw):
        return [super_resolve(f, method, **kw) for f in thick]

    runs = {"selfsr, trained once and reused": lambda: super_resolve_frames(thick, "selfsr", results=found, **options),
            "selfsr, trained on every frame": lambda: per_frame("selfsr", **options),
            "bspline": lambda: per_frame("bspline")}
    found = {}
    print(f"{'run':34s} {'seconds':>8s}  PSNR dB per frame")
    for name, run in runs.items():
        start = time.perf_counter()
        outs = run()
        seconds = time.perf_counter() - start
        scores = [evaluate(o, r, "plain")["psnr"] for o, r in zip(outs, refs)]
        print(f"{name:34s} {seconds:8.1f}  " + "  ".join(f"{s:.2f}" for s in scores)
              + f"  (mean {np.mean(scores):.2f})", flush=True)
    print(f"trained on frame {found['trained_on']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

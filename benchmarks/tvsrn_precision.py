"""Does reduced precision change TVSRN's accuracy? PSNR/SSIM (RPLHR protocol) of one model on a real
thin CT made pseudo-thick, with fp32, bf16 (fp16 on a GPU) and ONNX Runtime, next to B-spline.

    nice -n 10 .venv/bin/python benchmarks/tvsrn_precision.py --model ID --thin THIN.nii.gz \\
        [--slices 51] [--size 256] [--device cpu]

The thin volume is cropped (``--slices`` thin slices from the middle, in-plane centre
``--size``^2), thickened x(native factor) with the slice-profile simulation, super-resolved back and
compared with the crop. The issue asks for |PSNR(fp32) - PSNR(reduced)| < 0.05 dB.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "VolumetricSR"))

from volumetricsr import read_volume, super_resolve  # noqa: E402
from volumetricsr.geometry import through_plane_axis  # noqa: E402
from volumetricsr.metrics import evaluate  # noqa: E402
from volumetricsr.models import find_model  # noqa: E402
from volumetricsr.simulate import simulate_thick  # noqa: E402


def crop(volume, axis: int, slices: int, size: int):
    """Middle ``slices`` along ``axis`` and the in-plane centre ``size`` x ``size`` (origin kept right)."""
    sl = [slice(None)] * 3
    start = [0, 0, 0]
    for a in range(3):
        n = volume.size[a]
        keep = slices if a == axis else size
        s = max(0, (n - keep) // 2)
        sl[2 - a], start[a] = slice(s, s + keep), s
    return volume.with_array(volume.array[tuple(sl)].copy(), origin=tuple(volume.index_to_physical(start)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--thin", required=True)
    p.add_argument("--slices", type=int, default=51)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    card = find_model(args.model, "tvsrn")
    factor = int(card.native_factor)
    thin = read_volume(args.thin)
    axis = through_plane_axis(thin)
    ref = crop(thin, axis, args.slices, args.size)
    thick = simulate_thick(ref, factor, axis=axis)
    spacing = ref.spacing[axis]
    runs = {"bspline": dict(method="bspline")}
    for prec in (["fp32", "bf16", "fp16"] if args.device.startswith("cuda") else ["fp32", "bf16"]):
        runs[f"tvsrn {prec}"] = dict(method="tvsrn", model=card.id, precision=prec, device=args.device)
    runs["tvsrn onnx"] = dict(method="tvsrn", model=card.id, backend="onnx", device=args.device)
    print(f"{Path(args.thin).name}: {ref.describe()} -> pseudo-thick x{factor} {thick.describe()}; model {card.id}")
    base = None
    for name, options in runs.items():
        t = time.perf_counter()
        out = super_resolve(thick, spacing=spacing, axis=axis, **options)
        seconds = time.perf_counter() - t
        m = evaluate(out, ref, "rplhr")
        delta = "" if base is None or name == "bspline" else f"  dPSNR vs fp32 {m['psnr'] - base:+.4f} dB"
        if name == "tvsrn fp32":
            base = m["psnr"]
        print(f"{name:12s} PSNR {m['psnr']:.3f} dB  SSIM {m['ssim']:.4f}  ({seconds:.1f} s){delta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

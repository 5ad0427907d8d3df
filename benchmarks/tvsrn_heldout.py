"""TVSRN on held-out data: PSNR/SSIM (RPLHR protocol) of a model against B-spline on a real thin CT
made pseudo-thick, with fp32, bf16 (fp16 on a GPU) and ONNX Runtime, and a before/after figure.

    nice -n 10 .venv/bin/python benchmarks/tvsrn_heldout.py --model ID --thin THIN.nii.gz \\
        [--slices 51] [--size 256] [--runs fp32 bf16 onnx] [--device cpu] [--figure PNG]

The thin volume is cropped (``--slices`` thin slices from the middle, in-plane centre ``--size``^2;
0 keeps the whole axis), thickened x(native factor) with the slice-profile simulation, super-resolved
back and compared with the crop. The issue asks the model to beat B-spline on both metrics and
|PSNR(fp32) - PSNR(reduced)| < 0.05 dB. The figure shows coronal and sagittal reformats: thick
input, B-spline, TVSRN (the first of ``--runs``), reference.
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
        keep = (slices if a == axis else size) or n
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
    p.add_argument("--runs", nargs="+", default=None, help="fp32 bf16 fp16 onnx (default: all this device has)")
    p.add_argument("--figure", help="PNG: coronal and sagittal views of input, B-spline, TVSRN, reference")
    p.add_argument("--update-card", action="store_true", help="record the results in the model card ('heldout')")
    args = p.parse_args()
    card = find_model(args.model, "tvsrn")
    factor = int(card.native_factor)
    thin = read_volume(args.thin)
    axis = through_plane_axis(thin)
    ref = crop(thin, axis, args.slices, args.size)
    thick = simulate_thick(ref, factor, axis=axis)
    spacing = ref.spacing[axis]
    runs = {"bspline": dict(method="bspline")}
    cuda = args.device.startswith("cuda")
    for name in args.runs or (["fp32", "bf16", "fp16", "onnx"] if cuda else ["fp32", "bf16", "onnx"]):
        options = dict(backend="onnx") if name == "onnx" else dict(precision=name)
        runs[f"tvsrn {name}"] = dict(method="tvsrn", model=card.id, device=args.device, **options)
    print(f"{Path(args.thin).name}: {ref.describe()} -> pseudo-thick x{factor} {thick.describe()}; model {card.id}")
    print("| run | PSNR (dB) | SSIM | seconds | PSNR - fp32 |\n|---|---|---|---|---|")
    base, outputs, table = None, {}, {}
    for name, options in runs.items():
        t = time.perf_counter()
        outputs[name] = super_resolve(thick, spacing=spacing, axis=axis, **options)
        seconds = time.perf_counter() - t
        m = evaluate(outputs[name], ref, "rplhr")
        table[name] = {"psnr": round(m["psnr"], 3), "ssim": round(m["ssim"], 4), "seconds": round(seconds, 1)}
        delta = f"{m['psnr'] - base:+.4f}" if base is not None and name != "bspline" else ""
        if name == "tvsrn fp32":
            base = m["psnr"]
        print(f"| {name} | {m['psnr']:.3f} | {m['ssim']:.4f} | {seconds:.1f} | {delta} |", flush=True)
    if args.update_card:
        card.update(heldout={"case": Path(args.thin).name, "crop": {"slices": args.slices, "size": args.size},
                             "pseudo_thick": f"x{factor}, slice-profile simulation", "protocol": "rplhr",
                             "device": args.device, "results": table,
                             "command": "python benchmarks/tvsrn_heldout.py " + " ".join(sys.argv[1:])})
    if args.figure:
        from volumetricsr.figures import comparison_figure

        first = next(k for k in runs if k != "bspline")
        panels = {f"thick x{factor} (input)": thick, "B-spline": outputs["bspline"], "TVSRN": outputs[first],
                  "thin (reference)": ref}
        comparison_figure(panels, args.figure, axis, window=(-1000, 400), views=("coronal", "sagittal"),
                          title=f"{Path(args.thin).name.split('.')[0]}: held out, pseudo-thick x{factor}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

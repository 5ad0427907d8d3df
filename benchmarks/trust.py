"""Trust, measured on held-out pseudo-thick volumes: does enforcing consistency help, and does the
confidence map point at the errors?

    nice -n 10 .venv/bin/python benchmarks/trust.py [--cases ct ct-rect ct-triangle mr] [--methods bspline selfsr ...]
        [--out benchmarks/results/trust] [--figure Resources/Screenshots/trust_ct.png]

Cases (../shared/data, each held out from every model's training): ``ct``: the thin chest CT
``chest_ct_1p25mm_ricord_b`` (tvsrn's held-out volume), central 256x256 and 121 slices, made x5
thick (6.25 mm) with the Gaussian profile enforcement assumes; ``ct-rect``: the same made thick with
a rectangular profile, which enforcement (Gaussian, as a user would leave it) does not know, and
``ct-triangle`` with a triangular one (FWHM the slice spacing; spiral CT's profile); ``mr``:
the thin brain T1 ``brain_mri_t1_0p88mm_chris`` (the CT-guided method's test MRI), 189 slices made
x4 thick. For each method, one run with the confidence map: PSNR/SSIM of the result and of the
result with enforced consistency (RPLHR protocol for CT, ``plain`` for MR); the consistency RMS; the
correlation of the map with the true absolute error inside the body (reference above -950 HU, or
above 5 % of the MR's 99th percentile), per voxel (Pearson and Spearman) and per region (means over
8x8x8 blocks at least half inside, Pearson), and for comparison the same for a map anyone could
draw without the method's predictions: the through-plane gradient magnitude of the result (Sobel
along the slices). The mismatched-profile cases run the fast methods only (enforcement, not the
map, is what they test). One JSON line per run in OUT/results.jsonl (reruns skip what is there); Markdown tables on stdout; with ``--figure``, the ``ct`` case's selfsr result, its
error and its map (volumes kept in OUT for that).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.stats import spearmanr

from volumetricsr import read_volume, super_resolve, write_volume
from volumetricsr.compute.consistency import enforce_consistency
from volumetricsr.data.metrics import evaluate
from volumetricsr.data.simulate import simulate_thick

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CASES = {  # name: (file, factor, profile, protocol, crop (k, j, i) or None, modality)
    "ct": ("chest_ct_1p25mm_ricord_b.nii.gz", 5, "gaussian", "rplhr", (121, 256, 256), "CT"),
    "ct-rect": ("chest_ct_1p25mm_ricord_b.nii.gz", 5, "rect", "rplhr", (121, 256, 256), "CT"),
    "ct-triangle": ("chest_ct_1p25mm_ricord_b.nii.gz", 5, "triangle", "rplhr", (121, 256, 256), "CT"),
    "mr": ("brain_mri_t1_0p88mm_chris.nii.gz", 4, "gaussian", "plain", (189, None, None), "MR"),
}
METHODS = {"CT": ["linear", "bspline", "sinc", "selfsr", "tvsrn", "clade"],
           "MR": ["linear", "bspline", "sinc", "selfsr", "clade", "ctguided"]}
#: The cases with a slice profile enforcement does not assume test enforcement, not the map: the fast methods.
MISMATCHED = ["linear", "bspline", "sinc", "selfsr"]
BLOCK = 8


def centre_crop(volume, shape):
    """The central ``shape`` (k, j, i; None: whole) of ``volume``, geometry kept."""
    starts = [0 if n is None else (size - n) // 2 for size, n in zip(volume.array.shape, shape)]
    ends = [size if n is None else s + n for size, s, n in zip(volume.array.shape, starts, shape)]
    array = volume.array[tuple(slice(s, e) for s, e in zip(starts, ends))]
    origin = volume.index_to_physical(np.array(starts[::-1], dtype=float))
    return volume.with_array(np.ascontiguousarray(array), origin=tuple(origin))


def body_mask(ref: np.ndarray, modality: str) -> np.ndarray:
    return ref > (-950 if modality == "CT" else 0.05 * np.percentile(ref, 99))


def block_means(a: np.ndarray, block: int = BLOCK) -> np.ndarray:
    shape = [n // block for n in a.shape]
    a = a[:shape[0] * block, :shape[1] * block, :shape[2] * block]
    return a.reshape(shape[0], block, shape[1], block, shape[2], block).mean(axis=(1, 3, 5))


def map_agreement(spread: np.ndarray, error: np.ndarray, mask: np.ndarray, seed: int = 0) -> dict:
    """How well the map follows the true absolute error: per voxel in ``mask``, and per block."""
    s, e = spread[mask].astype(np.float64), error[mask].astype(np.float64)
    pick = np.random.default_rng(seed).choice(len(s), min(len(s), 300_000), replace=False)
    inside = block_means(mask.astype(np.float32)) >= 0.5
    bs, be = block_means(np.where(mask, spread, 0))[inside], block_means(np.where(mask, error, 0))[inside]
    top = e >= np.quantile(e, 0.9)
    return {"pearson_voxel": float(np.corrcoef(s, e)[0, 1]), "spearman_voxel": float(spearmanr(s[pick], e[pick])[0]),
            "pearson_block": float(np.corrcoef(bs, be)[0, 1]),
            # of the 10 % worst voxels, the share the map's own top 10 % finds (chance: 0.10)
            "top10_found": float((s[top] >= np.quantile(s, 0.9)).mean()),
            "mean_map": float(s.mean()), "mean_error": float(e.mean())}


def prepare(case: str):
    name, factor, profile, protocol, crop, modality = CASES[case]
    thin = centre_crop(read_volume(DATA / name), crop)
    thin = thin.with_array(thin.array.astype(np.float32))
    return thin, simulate_thick(thin, factor, profile=profile), protocol, modality


def run(case: str, method: str, thin, thick, protocol: str, modality: str, out: Path) -> dict:
    options = {"model": "ctguided-mri-x4"} if method == "ctguided" else \
        {"prior": "none"} if method == "selfsr" else {}        # the MR volume trained the priors
    results = {}
    start = time.perf_counter()
    sr = super_resolve(thick, method, thin.spacing[2], device="cpu", confidence_map=True, results=results, **options)
    seconds = time.perf_counter() - start
    enforced = enforce_consistency(sr, thick)
    plain, held = evaluate(sr, thin, protocol, "K"), evaluate(enforced, thin, protocol, "K")
    spread = results["confidence_map"].array
    error = np.abs(sr.array - thin.array)
    mask = body_mask(thin.array, modality)
    gradient = map_agreement(np.abs(ndimage.sobel(sr.array, axis=0)), error, mask)    # axis 0: K, the slices
    row = {"case": case, "method": method, "seconds": round(seconds, 1),
           "psnr": plain["psnr"], "ssim": plain["ssim"], "psnr_enforced": held["psnr"], "ssim_enforced": held["ssim"],
           "consistency_rms": results["consistency"]["rms"], **map_agreement(spread, error, mask),
           **{f"gradient_{k}": v for k, v in gradient.items() if k in ("pearson_voxel", "pearson_block", "top10_found")}}
    if case == "ct" and method == "selfsr":
        write_volume(sr, out / "ct_selfsr.nii.gz")
        write_volume(results["confidence_map"], out / "ct_selfsr_map.nii.gz")
    return row


def figure(out: Path, path: str) -> None:
    from volumetricsr.app.figures import comparison_figure

    thin, thick, _, _ = prepare("ct")
    sr, spread = read_volume(out / "ct_selfsr.nii.gz"), read_volume(out / "ct_selfsr_map.nii.gz")
    error = sr.with_array(np.abs(sr.array - thin.array))
    comparison_figure({"thick x5 (input)": thick, "selfsr result": sr, "reference (thin)": thin,
                       "|result - reference| (HU)": error, "confidence map (HU)": spread}, path, 2,
                      window=(-1000, 400), heat=("|result - reference| (HU)", "confidence map (HU)"),
                      row_fraction=0.55, title="Held-out chest CT made 6.25 mm thick: selfsr, its true error and "
                                               "its confidence map (coronal)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--methods", nargs="+", help="default: every method for the case's modality")
    ap.add_argument("--out", default="benchmarks/results/trust")
    ap.add_argument("--figure", help="PNG: the ct case's selfsr result, error and confidence map")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["case"], r["method"]) for r in rows}
    for case in args.cases:
        default = METHODS[CASES[case][5]] if CASES[case][2] == "gaussian" else MISMATCHED
        methods = [m for m in (args.methods or default) if m in METHODS[CASES[case][5]]]
        todo = [m for m in methods if (case, m) not in done]
        if not todo:
            continue
        thin, thick, protocol, modality = prepare(case)
        for method in todo:
            row = run(case, method, thin, thick, protocol, modality, out)
            with open(log, "a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| case | method | PSNR | PSNR enforced | SSIM | SSIM enforced | consistency RMS | seconds |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['method']} | {r['psnr']:.2f} | {r['psnr_enforced']:.2f} ({r['psnr_enforced'] - r['psnr']:+.2f}) "
              f"| {r['ssim']:.4f} | {r['ssim_enforced']:.4f} ({r['ssim_enforced'] - r['ssim']:+.4f}) "
              f"| {r['consistency_rms']:.2f} | {r['seconds']:.0f} |")
    print("\n| case | method | Pearson, voxels | Spearman, voxels | Pearson, 8^3 blocks | worst 10 % found (chance 0.10) "
          "| mean map | mean error | through-plane gradient: Pearson voxels / blocks, worst 10 % found |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["case"] in ("ct", "mr"):
            print(f"| {r['case']} | {r['method']} | {r['pearson_voxel']:.2f} | {r['spearman_voxel']:.2f} | "
                  f"{r['pearson_block']:.2f} | {r['top10_found']:.2f} | {r['mean_map']:.1f} | {r['mean_error']:.1f} | "
                  f"{r['gradient_pearson_voxel']:.2f} / {r['gradient_pearson_block']:.2f}, {r['gradient_top10_found']:.2f} |")
    if args.figure:
        figure(out, args.figure)


if __name__ == "__main__":
    main()

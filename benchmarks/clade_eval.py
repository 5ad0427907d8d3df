"""CLADE against interpolation and selfsr, with the paper's ablation, on real thick and pseudo-thick volumes.

    nice -n 10 .venv/bin/python benchmarks/clade_eval.py [--volumes ct8 mr65 ...] [--budget fast]
        [--out benchmarks/results/clade] [--figures]

Volumes (../shared/data): real thick ``ct8`` (chest CT, 8 mm), ``mr65`` (brain T1c, 6.5 mm), ``mr24``
(brain PD, 2.4 mm); pseudo-thick ``ct5p`` (thin chest CT ricord_b, central 256x256 and 120 slices,
x4 to 5 mm) and ``mr4p`` (thin brain T1 mne, x4 to 4 mm), where a reference gives PSNR/SSIM too.
Methods: ``lr`` (the paper's "low-resolution": cubic-spline interpolation = our ``bspline``),
``selfsr``, ``cyclegan`` (instance norm, no gradient-mapping loss), ``clade-nogmap``, ``clade``; the
per-volume methods at one budget; ``clade-model`` (asked for by name) is the shipped model
``clade-ct-5mm`` without training; ``reference`` (pseudo-thick volumes) is the thin truth resampled
onto the result's grid: the scores a perfect super-resolution would get. Metrics (volumetricsr.data.quality,
on the planes that contain the through-plane axis, both orientations, intensities windowed as the
thick input is): PIQE, edge sharpness at the borders of the Otsu mask of the ``lr`` result (the same
borders for every method), SNR (bright structures over air outside the body); training and total
seconds. Then the stitching cost: the generator's own patches/s on batches of
32x32 patches against the engine's patches/s over 16 planes of the 8 mm CT's isotropic grid at strides
6, 12 and 20 (whole-volume times extrapolated from those), and whole planes (stride 0).
Results: one JSON line per run in OUT/results.jsonl (reruns skip what is there), tables on stdout.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "VolumetricSR"))

from volumetricsr import read_volume, super_resolve, write_volume  # noqa: E402
from volumetricsr.data.metrics import evaluate, on_grid  # noqa: E402
from volumetricsr.data.quality import NOISE_FLOOR, no_reference, otsu, window_of  # noqa: E402
from volumetricsr.data.simulate import simulate_thick  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VOLUMES = {
    "ct8": ("chest_ct_8mm_lungpetctdx.nii.gz", None),
    "mr65": ("brain_mri_t1c_6p5mm_pgbm.nii.gz", None),
    "mr24": ("brain_mri_pd_2p4mm_chris.nii.gz", None),
    "ct5p": ("chest_ct_1p25mm_ricord_b.nii.gz", {"factor": 4, "crop": (slice(60, 181), slice(128, 384), slice(128, 384))}),
    "mr4p": ("brain_mri_t1_1mm_mne.nii.gz", {"factor": 4, "crop": None}),
}
METHODS = {"lr": ("bspline", {}), "selfsr": ("selfsr", {}), "cyclegan": ("clade", {"norm": "instance", "gmap": False}),
           "clade-nogmap": ("clade", {"gmap": False}), "clade": ("clade", {}),
           "clade-plain": ("clade", {"residual": False}),          # the paper's generator (not residual)
           "clade-model": ("clade", {"model": "clade-ct-5mm"}),      # the shipped model (CT): --methods clade-model
           "reference": (None, {})}            # pseudo-thick volumes: the thin truth on the result's grid
DEFAULT_METHODS = ["lr", "selfsr", "cyclegan", "clade-nogmap", "clade", "clade-plain", "reference"]


def load(name: str):
    """``(thick input, thin reference or None)``."""
    file, pseudo = VOLUMES[name]
    volume = read_volume(DATA / file)
    if pseudo is None:
        return volume, None
    if pseudo["crop"] is not None:
        k, j, i = pseudo["crop"]
        volume = volume.with_array(volume.array[k, j, i].astype(np.float32),
                                   origin=tuple(volume.index_to_physical([i.start, j.start, k.start])))
    return simulate_thick(volume, pseudo["factor"], axis=2), volume


def budgeted(method: str) -> bool:
    """Whether the method's runs depend on the training budget (all but ``lr`` and ``reference``)."""
    return METHODS[method][0] not in ("bspline", None)


def run(name: str, method: str, budget: str) -> dict:
    thick, ref = load(name)
    target, options = METHODS[method]
    if budgeted(method) and "model" not in options:
        options = dict(options, budget=budget)
    results: dict = {}
    lr = None if method == "lr" else super_resolve(thick, "bspline", None)
    start = time.perf_counter()
    if target is None:           # the thin truth, cubic B-spline onto the result's grid
        out = lr.with_array(on_grid(ref, lr, sitk.sitkBSpline, 0.0))
    else:
        out = super_resolve(thick, target, None, results=results, **options)
    seconds = time.perf_counter() - start
    lr = out if lr is None else lr
    edges = lr.array > otsu(lr.array[lr.array > lr.array.min()])
    row = {"volume": name, "method": method, "budget": budget if budgeted(method) else None,
           "seconds": round(seconds, 1) if target else None,
           "training_seconds": round(results.get("training", {}).get("seconds", 0.0), 1),
           "quality": no_reference(out, "K", window_of(thick.array), edges=edges)}
    if ref is not None and target is not None:
        protocol = "rplhr" if name.startswith("ct") else "plain"
        row["reference"] = {k: v for k, v in evaluate(out, ref, protocol, "K").items() if k in ("psnr", "ssim")}
    return row, out


def stitching(budget: str) -> dict:
    """Generator patches/s alone vs the engine's over 16 planes of the 8 mm CT's isotropic grid."""
    import torch

    from volumetricsr.data.geometry import plan_grid, to_stack
    from volumetricsr.methods.clade.method import BUDGETS, PATCH, prepare
    from volumetricsr.data.normalization import for_modality
    from volumetricsr.compute.networks.clade import Generator
    from volumetricsr.common.progress import CancelToken
    from volumetricsr.compute.engine import sliding_window_inference
    from volumetricsr.compute.predictors import PlanePredictor, TorchPredictor

    thick, _ = load("ct8")
    grid = plan_grid(thick)
    data = prepare(to_stack(thick.array, grid.axis).astype(np.float32), grid, for_modality("CT"))
    iso = data.iso
    torch.manual_seed(0)
    net = Generator(BUDGETS[budget].features).eval().to(memory_format=torch.channels_last)
    patches = torch.rand(1024, 1, PATCH, PATCH) * 2 - 1
    with torch.inference_mode():
        net(patches[:64])
        t = time.perf_counter()
        for _ in range(3):
            net(patches)
        alone = 3 * len(patches) / (time.perf_counter() - t)
    n, rows, cols = iso.shape
    sub = torch.from_numpy(np.ascontiguousarray(iso[:, rows // 2 - 8:rows // 2 + 8]))[None]
    out = {"generator_patches_per_s": round(alone, 1), "iso_shape": list(iso.shape), "strides": {}}
    for stride in (6, 12, 20, 0):
        window, step = ([PATCH, 1, PATCH], [stride, 1, stride]) if stride else ([n, 1, cols], [1, 1, 1])
        t = time.perf_counter()
        sliding_window_inference(sub, PlanePredictor(TorchPredictor(net), 1), window, stride=step, blend="uniform",
                                 batch_size=1024 if stride else 8, cancel=CancelToken())
        seconds = time.perf_counter() - t
        if stride:
            per_plane = len(range(0, n - PATCH + 1, stride)) * len(range(0, cols - PATCH + 1, stride))
            count = 16 * per_plane
            rate = count / seconds
            out["strides"][stride] = {"engine_patches_per_s": round(rate, 1), "overhead": round(alone / rate - 1, 3),
                                      "volume_seconds_one_orientation": round(rows * per_plane / rate, 1)}
        else:
            out["strides"][0] = {"volume_seconds_one_orientation": round(seconds * rows / 16, 1)}
    return out


def _cells(r: dict) -> list[str]:
    o = list(r["quality"]["orientations"].values())
    q = r["quality"]["snr"]              # the library's rule, also for rows recorded before it had it
    snr = q["signal"] / q["noise"] if q.get("noise") and q["noise"] > NOISE_FLOOR * abs(q["signal"]) else None
    ref = r.get("reference", {})

    def num(v, f):
        return "n/a" if v is None else format(v, f)

    return [r["volume"], r["method"], num(o[0]["piqe"], ".1f"), num(o[1]["piqe"], ".1f"),
            num(o[0]["edge_sharpness"], ".3f"), num(o[1]["edge_sharpness"], ".3f"), num(snr, ".1f"),
            num(ref.get("psnr"), ".3f"), num(ref.get("ssim"), ".4f"), num(r["training_seconds"] or None, ".0f"),
            num(r["seconds"], ".0f")]


HEADER = ["volume", "method", "PIQE (a)", "PIQE (b)", "ES (a)", "ES (b)", "SNR", "PSNR", "SSIM", "training s", "total s"]


def table(rows: list[dict], markdown: bool = False) -> None:
    """The results (a: planes across J, b: across I; ES in mm^-1), as text or a Markdown table."""
    order = {name: i for i, name in enumerate([*VOLUMES, *METHODS])}
    runs = [_cells(r) for r in sorted((r for r in rows if "volume" in r),
                                       key=lambda r: (order[r["volume"]], order[r["method"]]))]
    if markdown:
        print("| " + " | ".join(HEADER) + " |\n|" + "---|" * len(HEADER))
        for cells in runs:
            print("| " + " | ".join(cells) + " |")
    else:
        print()
        for cells in [HEADER, *runs]:
            print(" ".join(f"{c:>10s}" if i > 1 else f"{c:13s}" for i, c in enumerate(cells)))
    for r in rows:
        if "stitching" in r:
            st = r["stitching"]
            print(f"\ngenerator alone: {st['generator_patches_per_s']:.0f} patches/s; isotropic grid {st['iso_shape']}")
            for stride, v in st["strides"].items():
                if "engine_patches_per_s" in v:
                    print(f"stride {stride}: engine {v['engine_patches_per_s']:.0f} patches/s, overhead "
                          f"{100 * v['overhead']:.1f} %, one orientation of the volume {v['volume_seconds_one_orientation']:.0f} s")
                else:
                    print(f"whole planes: one orientation of the volume {v['volume_seconds_one_orientation']:.0f} s")


FIGURE = {"lr": "B-spline", "selfsr": "selfsr", "clade": "CLADE", "clade-plain": "CLADE, plain generator"}


def figure(folder: Path, name: str, path: Path) -> None:
    """Thick input and the FIGURE methods' results (saved in ``folder``) side by side, when all are there."""
    from volumetricsr.app.figures import comparison_figure

    files = {label: folder / f"{name}_{method}.nii.gz" for method, label in FIGURE.items()}
    if all(f.exists() for f in files.values()):
        thick, _ = load(name)
        panels = {"thick (as acquired)": thick, **{label: read_volume(f) for label, f in files.items()}}
        comparison_figure(panels, path, 2, title=f"{VOLUMES[name][0]}", views=("coronal", "sagittal"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volumes", nargs="+", default=list(VOLUMES), choices=list(VOLUMES))
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(METHODS))
    ap.add_argument("--budget", default="fast", choices=["fast", "balanced", "quality"])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "clade"))
    ap.add_argument("--figures", nargs="*", default=["ct8", "mr65"],
                    help="volumes to draw (thick, B-spline, selfsr, CLADE, CLADE plain); their results are kept "
                         "in OUT/volumes")
    ap.add_argument("--no-stitching", action="store_true")
    ap.add_argument("--markdown", action="store_true", help="print the recorded results as Markdown and stop")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "results.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r.get("volume"), r.get("method"), r.get("budget")) for r in rows}
    if args.markdown:
        table(rows, markdown=True)
        return 0
    kept = out / "volumes"
    for name in args.volumes:
        for method in args.methods:
            key = (name, method, args.budget if budgeted(method) else None)
            if key in done or (method == "reference" and VOLUMES[name][1] is None):
                continue
            row, volume = run(name, method, args.budget)
            if name in args.figures and method in FIGURE:
                kept.mkdir(exist_ok=True)
                write_volume(volume, kept / f"{name}_{method}.nii.gz")
            rows.append(row)
            with open(log, "a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
        if name in args.figures:
            figure(kept, name, out / f"clade_{name}.png")
    if not args.no_stitching and not any("stitching" in r for r in rows):
        row = {"stitching": stitching(args.budget), "budget": args.budget}
        rows.append(row)
        with open(log, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The CT-guided MRI method on a held-out brain MRI: its three stages (the paper's Table 2 ablation)
against B-spline interpolation and selfsr, with training time per stage.

    nice -n 10 .venv/bin/python benchmarks/ctguided_eval.py [--stage-iterations 100]
        [--out benchmarks/results/ctguided] [--lpips-weights ALEXNET.pth] [--markdown]

Data (../shared/data): the thin head CT (``head_ct_1p25mm_cptac``) is the high-resolution CT; the
brain T1s ``brain_mri_t1_0p9mm_sag`` and ``brain_mri_t1_1mm_mne`` made 4x thick along K
(:func:`volumetricsr.data.simulate.simulate_thick`, Gaussian slice profile as thick as the new spacing)
are the training MRIs; ``brain_mri_t1_0p88mm_chris`` made 4x thick the same way is the test MRI,
never trained on; its thin original is the reference. The model trains with ``volumetricsr train
--method ctguided`` (a subprocess, resumed when stopped: run the script again); each stage's last
state (``checkpoints/stage_ct.pt``, ``stage_mri.pt``) and the final model are scored on the test
MRI. selfsr runs at its CPU budget (fast) and at as many iterations as fill the CT-guided
training's wall time ("same wall time"). PSNR and SSIM: :func:`volumetricsr.data.metrics.evaluate`,
protocol ``plain``, on the reference's grid. LPIPS (AlexNet, the ``lpips`` package) when
``--lpips-weights`` names torchvision's AlexNet weights file, else skipped with a message.
Results: OUT/results.json; a figure OUT/ctguided_mri.png.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "VolumetricSR"))

from volumetricsr import read_volume, super_resolve, write_volume  # noqa: E402
from volumetricsr.data.metrics import evaluate  # noqa: E402
from volumetricsr.data.simulate import simulate_thick  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
CT = "head_ct_1p25mm_cptac.nii.gz"
TRAIN_MRI = ["brain_mri_t1_0p9mm_sag.nii.gz", "brain_mri_t1_1mm_mne.nii.gz"]
TEST_MRI = "brain_mri_t1_0p88mm_chris.nii.gz"
FACTOR = 4
MODEL = "ctguided-mri-x4"


def prepare(out: Path) -> tuple[Path, Path, Path]:
    """The CT folder, the thick training MRI folder and the thick test MRI."""
    ct, mri = out / "data" / "ct", out / "data" / "mri"
    ct.mkdir(parents=True, exist_ok=True)
    mri.mkdir(parents=True, exist_ok=True)
    if not (ct / CT).exists():
        (ct / CT).symlink_to(DATA / CT)
    for name in TRAIN_MRI + [TEST_MRI]:
        target = (mri if name in TRAIN_MRI else out / "data") / name.replace(".nii.gz", "_x4.nii.gz")
        if not target.exists():
            write_volume(simulate_thick(read_volume(DATA / name), FACTOR, axis=2), target)
    return ct, mri, out / "data" / TEST_MRI.replace(".nii.gz", "_x4.nii.gz")


#: Training variants: the paper's loss; the joint stage held to the acquired slices and trained on
#: the CT-to-MR translations, with the SRNet's images fixed as reconstruction targets; that without
#: the perceptual loss (the ablation of the edge-pyramid substitute).
ANCHORED = ["--consistency", "10", "--translated-pairs", "10", "--fixed-targets"]
VARIANTS = {"paper": [], "anchored": ANCHORED, "anchored-no-perceptual": [*ANCHORED, "--perceptual-weight", "0"]}


def model_id(variant: str) -> str:
    return MODEL if variant == "paper" else f"{MODEL}-{variant}"


def train(out: Path, ct: Path, mri: Path, t: int, variant: str) -> None:
    """``volumetricsr train --method ctguided`` in a subprocess, its JSON progress appended to
    OUT/train_VARIANT.jsonl."""
    name = model_id(variant)
    workdir = out / "models" / "runs" / name
    if (out / "models" / f"{name}.json").exists():
        return
    args = [sys.executable, str(ROOT / "VolumetricSRTraining" / "VolumetricSRTrainingLib" / "train.py"), "--method", "ctguided", "--out", name,
            "--models-dir", str(out / "models"), "--progress-json"]
    if (workdir / "checkpoints" / "last.pt").exists():
        args.append("--resume")
    else:
        args += ["--ct", str(ct), "--mri", str(mri), "--stage-iterations", str(t), *VARIANTS[variant]]
    with open(out / f"train_{variant}.jsonl", "a") as log:
        code = subprocess.call(args, stdout=log)
    if code != 0:
        raise SystemExit(f"training stopped with status {code}; run the script again to resume")


def stage_seconds(out: Path, variant: str) -> dict:
    """Wall time per stage from the step events (elapsed restarts with each resumed process)."""
    seconds: dict = {}
    last = 0.0
    for line in (out / f"train_{variant}.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "start":
            last = 0.0
        elif event.get("event") == "step":
            seconds[event["stage"]] = seconds.get(event["stage"], 0.0) + event["elapsed"] - last
            last = event["elapsed"]
    return {k: round(v, 1) for k, v in seconds.items()}


def stage_models(out: Path, variant: str) -> dict:
    """Card paths of the SRNet at the end of stages 1 and 2 and of the final model (best of stage 3)."""
    import torch

    from volumetricsr.compute.models import ModelCard
    from volumetricsr.compute.export import write_model

    name = model_id(variant)
    card = ModelCard.load(out / "models" / f"{name}.json")
    fields = {k: getattr(card, k) for k in ("method", "architecture", "native_factor", "modality", "normalization",
                                            "training_data")}
    ids = {}
    for stage in ("ct", "mri"):
        state = torch.load(out / "models" / "runs" / name / "checkpoints" / f"stage_{stage}.pt", weights_only=True)
        stage_id = f"{name}-after-{stage}"
        write_model(out / "models", stage_id, state["task"]["modules"]["sr"], fields, {"step": state["step"]})
        ids[stage] = str(out / "models" / f"{stage_id}.json")
    ids["joint"] = str(card.path)
    return ids


def lpips_or_none(weights: str | None):
    """:func:`volumetricsr.data.metrics.lpips_scorer`, or None with the reason printed."""
    from volumetricsr.common.errors import InputError
    from volumetricsr.data.metrics import lpips_scorer

    try:
        return lpips_scorer(weights)
    except InputError as exc:
        print(f"LPIPS skipped: {exc}")
        return None


def score(out_volume, ref, lpips_fn) -> dict:
    from volumetricsr.data.metrics import align

    row = {k: round(v, 4) for k, v in evaluate(out_volume, ref, "plain", "K").items() if k in ("psnr", "ssim")}
    if lpips_fn is not None:
        p, r = align(out_volume, ref, 2)
        row["lpips"] = round(lpips_fn(p, r), 4)          # the slices across K, as SSIM
    return row


def figure(outputs: dict, thick, ref, path: Path) -> None:
    from volumetricsr.app.figures import comparison_figure

    panels = {"thick (as acquired)": thick, **outputs, "reference (thin)": ref}
    comparison_figure(panels, path, 2, title=f"{TEST_MRI} made x{FACTOR} thick (held out)",
                      views=("coronal", "sagittal"))


def curves(out: Path, variants: list[str], t: int, path: Path) -> None:
    """Validation PSNR against the step for each variant, with the stage boundaries."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6), dpi=100)
    ax = fig.subplots()
    for variant in variants:
        epochs = [e for e in map(json.loads, (out / f"train_{variant}.jsonl").read_text().splitlines())
                  if e.get("event") == "epoch" and "val_psnr" in e]
        ax.plot([e["step"] for e in epochs], [e["val_psnr"] for e in epochs], "o-", ms=3, label=variant)
    for x, name in ((0, "1: CT"), (t, "2: MRI"), (2 * t, "3: joint")):
        ax.axvline(x, color="0.7", lw=0.8)
        ax.text(x, 0.02, f" {name}", transform=ax.get_xaxis_transform(), fontsize=8, rotation=90, va="bottom")
    ax.set(xlabel="step", ylabel="validation PSNR (dB)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def table(result: dict) -> None:
    lpips = any("lpips" in r for r in result["rows"])
    print("| method | training | PSNR (dB) | SSIM |" + (" LPIPS |" if lpips else ""))
    print("|---|---|---|---|" + ("---|" if lpips else ""))
    for r in result["rows"]:
        print(f"| {r['method']} | {r['training']} | {r['psnr']:.2f} | {r['ssim']:.4f} |"
              + (f" {r.get('lpips', float('nan')):.3f} |" if lpips else ""))
    for variant, seconds in result["stage_seconds"].items():
        print(f"training seconds per stage ({variant}): {seconds}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage-iterations", type=int, default=100, help="T (the run: 10T steps)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ctguided"))
    ap.add_argument("--lpips-weights", metavar="ALEXNET.pth", help="torchvision's AlexNet state dict, for LPIPS")
    ap.add_argument("--markdown", action="store_true", help="print the recorded table and stop")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.markdown:
        table(json.loads((out / "results.json").read_text()))
        return 0
    ct, mri, test = prepare(out)
    seconds = {}
    for variant in args.variants:
        train(out, ct, mri, args.stage_iterations, variant)
        seconds[variant] = stage_seconds(out, variant)
    thick, ref = read_volume(test), read_volume(DATA / TEST_MRI)
    lpips_fn = lpips_or_none(args.lpips_weights)
    (out / "outputs").mkdir(exist_ok=True)
    log = out / "rows.jsonl"             # rows already scored (a rerun skips them; outputs stay in OUT/outputs)
    done = {r["method"]: r for r in map(json.loads, log.read_text().splitlines())} if log.exists() else {}
    rows = []

    def add(name, training, method, **options):
        path = out / "outputs" / (name.replace(" ", "_").replace("(", "").replace(")", "") + ".nii.gz")
        if name in done and path.exists():
            rows.append(done[name])
            return done[name]
        results: dict = {}
        start = time.perf_counter()
        volume = super_resolve(thick, method, float(ref.spacing[2]), results=results, **options)
        row = {"method": name, "training": training, "seconds": round(time.perf_counter() - start, 1),
               **score(volume, ref, lpips_fn), "output": str(path)}
        if "training" in results:
            row["training_seconds"] = round(results["training"]["seconds"], 1)
            row["iterations"] = results["training"]["iterations"]
        write_volume(volume, path)
        rows.append(row)
        with open(log, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
        return row

    add("B-spline", "none", "bspline")
    fast = add("selfsr (fast)", "on the test volume", "selfsr", budget="fast", prior="none")   # it trained the priors
    longest = max(sum(s.values()) for s in seconds.values())
    add("selfsr (same wall time)", "on the test volume", "selfsr", budget="fast", prior="none",
        iterations=int(round(longest * fast["iterations"] / fast["training_seconds"])))
    for variant in args.variants:
        models, elapsed = stage_models(out, variant), 0.0
        for stage, label in (("ct", "stage 1"), ("mri", "stages 1-2"), ("joint", "stages 1-3")):
            elapsed += seconds[variant].get(stage, 0.0)
            if stage != "joint" and variant != args.variants[0]:
                continue                 # stages 1-2 do not depend on the joint stage's variant
            suffix = "" if variant == "paper" else f", {variant}"
            add(f"ctguided {label}{suffix}", f"{elapsed:.0f} s, once", "ctguided", model=models[stage])
    cards = {v: json.loads((out / "models" / f"{model_id(v)}.json").read_text()) for v in args.variants}
    result = {"stage_iterations": args.stage_iterations, "stage_seconds": seconds, "rows": rows, "cards": cards}
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    shown = ["B-spline", "selfsr (fast)", "ctguided stage 1", "ctguided stages 1-2", "ctguided stages 1-3",
             "ctguided stages 1-3, anchored"]
    figure({r["method"]: read_volume(r["output"]) for r in rows if r["method"] in shown}, thick, ref,
           out / "ctguided_mri.png")
    curves(out, args.variants, args.stage_iterations, out / "ctguided_curves.png")
    table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Why TVSRN does (not) learn: numbers for each architecture variant, on one real thin CT.

    .venv/bin/python benchmarks/tvsrn_diagnose.py --thin THIN.nii.gz [--steps 500] [--crop 32]
        [--variants paper base balanced full] [--model ID]

For every variant of the network (``paper``: the paper's; ``base``: + learned linear image skip;
``balanced``: + balanced embedding init; ``full``: + final LayerNorm; see networks/tvsrn.py):

1. At init: RMS of the image features (embedding + encoder) against the fixed position code, and
   how much the untrained output depends on the image (its in-plane spread per thin slice, against
   the spread of the target).
2. A ``--steps``-step overfit of ONE foreground crop of a pseudo-thick pair (Adam, lr 3e-4, no
   augmentation): final L1 in HU against the best constant (the target's median) and against the
   least-squares linear 4 -> 16 map of that crop (what a per-pixel linear filter can do at best).
3. Per-module gradient and update norms (relative to the weights) averaged over the run.

With ``--model``: the trained model's transformer-branch contribution in HU (its output minus its
linear base alone) on the crop.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "VolumetricSR"))

from volumetricsr.compute.models import find_model  # noqa: E402
from volumetricsr.compute.networks import TVSRN  # noqa: E402
from volumetricsr.data.normalization import Normalization  # noqa: E402
from volumetricsr.training.pairs import Case, load_pair, random_crop  # noqa: E402

HU = 3072.0   # width of the [-1024, 2048] window: normalised units -> HU
VARIANTS = {
    "paper": {},
    "base": {"base": "bspline"},
    "balanced": {"base": "bspline", "init": "balanced"},
    "full": {"base": "bspline", "init": "balanced", "final_norm": True},
}
GROUPS = ("embed", "encoder", "mask_token", "decoder", "final_norm", "head", "base_weights")


def features_and_positions(net: TVSRN, thick: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        x = thick[:, 0].permute(0, 2, 3, 1)
        feats = net.encoder(net.embed(x))
        return float(feats.pow(2).mean().sqrt()), float(net.positions.pow(2).mean().sqrt())


def group_of(name: str) -> str:
    return next(g for g in GROUPS if name.startswith(g))


def overfit(arch: dict, thick: torch.Tensor, thin: torch.Tensor, steps: int, seed: int) -> dict:
    torch.manual_seed(seed)
    net = TVSRN(**arch)
    ratio = features_and_positions(net, thick)
    with torch.no_grad():
        spread0 = float(net(thick).std(dim=(-2, -1)).mean())
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    grads = {g: [] for g in GROUPS}
    updates = {g: [] for g in GROUPS}
    t0 = time.perf_counter()
    for step in range(steps):
        loss = F.l1_loss(net(thick), thin)
        opt.zero_grad()
        loss.backward()
        before = {n: p.detach().clone() for n, p in net.named_parameters()}
        opt.step()
        if step % 10 == 0:
            for g in GROUPS:
                ps = [(n, p) for n, p in net.named_parameters() if group_of(n) == g and p.grad is not None]
                if not ps:
                    continue
                w = sum(float(before[n].pow(2).sum()) for n, _ in ps) ** 0.5 + 1e-12
                grads[g].append(sum(float(p.grad.pow(2).sum()) for _, p in ps) ** 0.5)
                updates[g].append(sum(float((p.detach() - before[n]).pow(2).sum()) for n, p in ps) ** 0.5 / w)
    with torch.no_grad():
        final = float(F.l1_loss(net(thick), thin))
    return {"feature_rms": ratio[0], "position_rms": ratio[1], "output_spread0": spread0, "l1": final,
            "seconds": time.perf_counter() - t0,
            "grad": {g: float(np.mean(v)) for g, v in grads.items() if v},
            "update": {g: float(np.mean(v)) for g, v in updates.items() if v}}


def linear_fit_l1(thick: torch.Tensor, thin: torch.Tensor) -> float:
    x = thick[0, 0].reshape(thick.shape[2], -1).T.numpy()
    y = thin[0, 0].reshape(thin.shape[2], -1).T.numpy()
    w, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)
    return float(np.abs(np.c_[x, np.ones(len(x))] @ w - y).mean())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--thin", required=True)
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--crop", type=int, default=32)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS),
                   help="none (an empty list) with --model: only the trained model's branch")
    p.add_argument("--model", help="a trained tvsrn model: its transformer branch's contribution in HU")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    norm = Normalization()
    pair = load_pair(Case("diag", Path(args.thin)), 5, norm)
    thick_np, thin_np = random_crop(pair, np.random.default_rng(args.seed), 4, args.crop, False, 0.25)
    thick, thin = torch.from_numpy(thick_np)[None, None], torch.from_numpy(thin_np)[None, None]
    const = float((thin - thin.median()).abs().mean())
    print(f"crop 4x{args.crop}x{args.crop} of {Path(args.thin).name}: target spread "
          f"{float(thin.std(dim=(-2, -1)).mean()) * HU:.1f} HU; best constant L1 {const * HU:.1f} HU; "
          f"best linear 4->16 L1 {linear_fit_l1(thick, thin) * HU:.1f} HU")
    if args.variants:
        print("| variant | feature RMS / position RMS | untrained output spread (HU) | L1 after "
              f"{args.steps} steps (HU) | vs constant | s |")
        print("|---|---|---|---|---|---|")
    details = {}
    for name in args.variants:
        r = overfit(VARIANTS[name], thick, thin, args.steps, args.seed)
        details[name] = r
        print(f"| {name} | {r['feature_rms']:.3f} / {r['position_rms']:.3f} | {r['output_spread0'] * HU:.1f} | "
              f"{r['l1'] * HU:.1f} | {r['l1'] / const:.2f}x | {r['seconds']:.0f} |", flush=True)
    if details:
        print("\nmean gradient norm / relative update per step (every 10th step):")
    for name, r in details.items():
        print(f"  {name}: " + ", ".join(f"{g} {r['grad'][g]:.2e}/{r['update'][g]:.1e}" for g in r["grad"]))
    if args.model:
        card = find_model(args.model, "tvsrn")
        net = card.build().eval()
        with torch.no_grad():
            full = net(thick)
            base = (thick[:, 0].permute(0, 2, 3, 1) @ net.base_weights).permute(0, 3, 1, 2)[:, None]
        branch = (full - base).abs()
        print(f"\n{card.id}: transformer branch |output - linear base| mean {float(branch.mean()) * HU:.2f} HU, "
              f"95th percentile {float(branch.quantile(0.95)) * HU:.2f} HU; L1 to target: full "
              f"{float((full - thin).abs().mean()) * HU:.1f} HU, base alone {float((base - thin).abs().mean()) * HU:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

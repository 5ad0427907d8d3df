"""Train the shipped selfsr priors (models/selfsr-prior-<modality>-x<factor>): one per modality and factor.

The volumes of ../shared/data, the held-out ones left out (MR: brain_mri_t1_1mm_mne; CT:
chest_ct_1p25mm_ricord_b). Each prior is one ``volumetricsr train --method selfsr`` run (resumable:
run the same command again after a stop; a run of another recipe, other volumes or steps, is not
resumed but started afresh in its own folder).

    python benchmarks/train_selfsr_priors.py [--only mr-x4 ct-x9] [--steps 16000] [--threads 1]
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Thin volumes (every plane) and thick ones (their in-plane planes only: the others are not sharp both ways).
TRAIN = {"MR": ["brain_mri_t1_0p88mm_chris.nii.gz", "brain_mri_t1_0p9mm_sag.nii.gz",
                "brain_mri_pd_2p4mm_chris.nii.gz", "brain_mri_t1c_6p5mm_pgbm.nii.gz"],
         "CT": ["chest_ct_1p25mm_ricord_a.nii.gz", "chest_ct_1mm_lidc0314.nii.gz", "head_ct_1p25mm_cptac.nii.gz",
                "chest_ct_8mm_lungpetctdx.nii.gz", "abdomen_ct_5mm_crlm1004.nii.gz"]}
FACTORS = {"MR": (3, 4, 5, 6), "CT": (5, 7, 8, 9)}
#: Every n-th plane (the CTs' 512^2 planes: fewer, to bound memory).
SLICE_STEP = {"MR": 4, "CT": 8}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--steps", type=int, default=16000)
    p.add_argument("--only", nargs="*", help="e.g. mr-x4 ct-x9")
    p.add_argument("--threads", type=int, help="CPU threads of each training run")
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "selfsr-priors")
    args = p.parse_args(argv)
    for modality, factors in FACTORS.items():
        listing = args.workdir / f"{modality.lower()}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{args.data / name}\n" for name in TRAIN[modality]))
        for factor in factors:
            model_id = f"selfsr-prior-{modality.lower()}-x{factor}"
            if args.only and model_id.removeprefix("selfsr-prior-") not in args.only:
                continue
            recipe = f"{TRAIN[modality]} {args.steps} {SLICE_STEP[modality]}".encode()
            run = args.workdir / f"{model_id}-{hashlib.sha256(recipe).hexdigest()[:8]}"
            resume = ["--resume"] if (run / "checkpoints" / "last.pt").exists() else \
                ["--method", "selfsr", "--data", str(listing), "--factor", str(factor), "--modality", modality,
                 "--max-steps", str(args.steps), "--steps-per-epoch", "200",
                 "--slice-step", str(SLICE_STEP[modality])]
            cmd = [sys.executable, "-m", "volumetricsr", "train", *resume, "--out", model_id,
                   "--models-dir", str(ROOT / "models"), "--workdir", str(run),
                   *(["--threads", str(args.threads)] if args.threads else [])]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``volumetricsr train``: the training entry point (VolumetricSRTraining/train.py runs the same code)."""
from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from ..errors import InputError
from ..models import user_models_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", required=True, help="method to train (tvsrn)")
    p.add_argument("--data", help="RPLHR-CT folder (train/val with 1mm/ and 5mm/), a CSV/text list of "
                                  "thin[,thick[,split]] lines, or a folder of thin volumes (pseudo-pairs)")
    p.add_argument("--out", required=True, metavar="MODEL_ID", help="id of the model to write")
    p.add_argument("--models-dir",
                   help="where the model goes (default: $VOLUMETRICSR_MODELS or ~/.volumetricsr/models)")
    p.add_argument("--workdir", help="checkpoints, log.csv and curves.png (default: MODELS_DIR/runs/MODEL_ID)")
    p.add_argument("--resume", action="store_true", help="continue from WORKDIR/checkpoints/last.pt "
                   "(a file WORKDIR/STOP, or SIGTERM/SIGINT, stops a run cleanly)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--steps-per-epoch", type=int,
                   help="default: one random crop per training case per step, at least 100 steps")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all (overrides --epochs)")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs")
    p.add_argument("--val-fraction", type=float, default=0.2, help="cases (or slab) held out when no split is given")
    p.add_argument("--val-crop", type=int, default=0, help="validate on the in-plane centre NxN (0: whole volumes)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--crop", type=int, default=256, help="in-plane size of the random training crops")
    p.add_argument("--no-flip", action="store_true", help="no random left-right flips")
    p.add_argument("--foreground", type=float, metavar="LEVEL",
                   help="centre crops on pixels above this normalised intensity (e.g. 0.25 = -256 HU with "
                        "the CT window): less training time spent on air")
    p.add_argument("--fit-base", action="store_true",
                   help="start the network's linear base (--arch '{\"base\": \"bspline\"}') at the least-squares "
                        "thick-to-thin map of the training data")
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=100, help="linear LR warm-up steps before the cosine decay")
    p.add_argument("--factor", type=int, default=5, help="thin slices per thick slice (mask tokens + 1)")
    p.add_argument("--arch", default="{}",
                   help="JSON of network arguments, e.g. '{\"channels\": 8, \"dec_layers\": 4}'")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--amp", action="store_true", help="bf16 autocast in training steps (faster on recent GPUs)")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress-json", action="store_true", help="one JSON object per line on stdout")


def _config(args, defaults: dict) -> dict:
    try:
        arch = json.loads(args.arch)
    except ValueError as exc:
        raise InputError(f"--arch is not JSON: {exc}")
    unknown = set(arch) - set(defaults["arch"])
    if unknown:
        raise InputError(f"Unknown network arguments {sorted(unknown)}; known: {sorted(defaults['arch'])}.")
    config = json.loads(json.dumps(defaults))
    config["arch"].update(arch, factor=args.factor)
    config.update(lr=args.lr, weight_decay=args.weight_decay, warmup=args.warmup, batch_size=args.batch_size,
                  crop=args.crop, flip=not args.no_flip, foreground=args.foreground, fit_base=args.fit_base,
                  val_crop=args.val_crop, data=str(args.data),
                  val_fraction=args.val_fraction, seed=args.seed, amp=args.amp)
    return config


def run(args) -> int:
    import torch

    from ..device import resolve_device
    from . import checkpoint as ckpt
    from .data import discover
    from .export import check_model_id, write_model
    from .tasks import TVSRN_DEFAULTS, get_task
    from .trainer import Trainer

    check_model_id(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    models_dir = Path(args.models_dir) if args.models_dir else user_models_dir()
    workdir = Path(args.workdir) if args.workdir else models_dir / "runs" / args.out
    task_cls = get_task(args.method)
    if args.resume:
        config = ckpt.load(workdir / "checkpoints" / "last.pt")["config"]   # the run's own settings
    else:
        if not args.data:
            raise InputError("--data is needed (unless --resume).")
        config = _config(args, TVSRN_DEFAULTS)
    dataset = discover(config["data"], config["val_fraction"])
    steps_per_epoch = args.steps_per_epoch or config.get("steps_per_epoch") or max(100, len(dataset.train))
    config["steps_per_epoch"] = steps_per_epoch
    config["total_steps"] = args.max_steps or args.epochs * steps_per_epoch
    device = resolve_device(args.device)
    task = task_cls(config, device, dataset)
    trainer = Trainer(task, workdir, total_steps=config["total_steps"], steps_per_epoch=steps_per_epoch,
                      val_every=args.val_every, seed=config["seed"], config=config,
                      progress_json=args.progress_json)
    status = trainer.run(resume=args.resume)
    if status != 0:
        return status
    if trainer.best_path.exists():
        task.load_state_dict(ckpt.load(trainer.best_path)["task"])
    best_row = next((r for r in trainer.history if r["step"] == trainer.best["step"]), {})
    metrics = {k: round(v, 4) for k, v in best_row.items() if k.startswith("val_")}
    if metrics:
        metrics["protocol"] = "rplhr"
        metrics["evaluated_on"] = (f"validation cases, in-plane centre {config['val_crop']}^2" if config["val_crop"]
                                   else "whole validation volumes") + ", tvsrn tiling"
    state, fields = task.model_card()
    training = {"steps": trainer.step, "best_step": trainer.best["step"], "batch_size": config["batch_size"],
                "crop": config["crop"], "foreground": config.get("foreground"),
                "fit_base": config.get("fit_base", False), "optimizer": f"AdamW lr {config['lr']} wd {config['weight_decay']}",
                "schedule": f"warm-up {config['warmup']} + cosine", "loss": "L1",
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "torch": torch.__version__, "device": device}
    card = write_model(models_dir, args.out, state, fields, metrics, training=training)
    trainer.emit("model", id=card.id, card=str(card.path), weights=str(card.weights_path), metrics=metrics)
    return 0


def main_script(argv=None) -> int:
    """``python VolumetricSRTraining/train.py ...`` == ``volumetricsr train ...``."""
    import sys

    from ..cli import main

    return main(["train", *(sys.argv[1:] if argv is None else argv)])


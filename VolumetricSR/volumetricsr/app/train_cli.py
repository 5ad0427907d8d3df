"""``volumetricsr train``: the training entry point (VolumetricSRTraining/VolumetricSRTrainingLib/train.py runs the same code).

Options common to every method come from :func:`add_common_arguments`; each method adds its own
(:meth:`~.tasks.Task.add_arguments`), so ``volumetricsr train --method M --help`` lists that
method's options only. ``--resume`` continues a run with the settings it was started with: only
``--max-steps`` (a longer run; the learning-rate schedule keeps its horizon) and the
machine-related options (device, threads, progress output) may be given again.

Under ``torchrun --nproc_per_node N -m volumetricsr train ...`` (or ``torchrun ... train.py ...``) the
same command trains on N ranks (:mod:`.distributed`): each rank takes its own samples of
``--batch-size``, so a step sees N times the batch; rank 0 writes the work folder and the model.
"""
from __future__ import annotations

import argparse
import datetime
from pathlib import Path
from typing import Optional

from volumetricsr.common.errors import InputError
from volumetricsr.compute.models import user_models_dir
from volumetricsr.common.options import ArgumentParser, Count, Option, check_options, rules_of
from volumetricsr.methods.options import RUN_OPTIONS, SEED

COMMON_HELP = "Train a method's model (writes a model card + weights)."


#: The options every method's training has, declared once: their flags and their checks (before any
#: work, as ``infer``'s) are made from these.
COMMON_OPTIONS = {o.name: o for o in (
    Option("epochs", Count(1, 10**6), "epochs to train", default=100),
    Option("steps_per_epoch", Count(1, 10**7), "default: the method's (tvsrn: one crop per training case, at "
           "least 100 steps)"),
    Option("max_steps", Count(1, 10**9), "stop after this many steps in all (overrides --epochs)"),
    Option("val_every", Count(1, 10**6), "validate every N epochs", default=1),
    RUN_OPTIONS["device"],
    RUN_OPTIONS["threads"],
    Option("seed", SEED, "random seed", default=0),
)}


def add_common_arguments(p: argparse.ArgumentParser, methods: list[str]) -> None:
    p.add_argument("--method", choices=methods, help="method to train (--method M --help: its options)")
    p.add_argument("--out", required=True, metavar="MODEL_ID", help="id of the model to write")
    p.add_argument("--models-dir",
                   help="where the model goes (default: $VOLUMETRICSR_MODELS or ~/.volumetricsr/models)")
    p.add_argument("--workdir", help="checkpoints, log.jsonl and curves.png (default: MODELS_DIR/runs/MODEL_ID; "
                                     "under torchrun on several machines: a folder every machine sees)")
    p.add_argument("--resume", action="store_true", help="continue from WORKDIR/checkpoints/last.pt with the "
                   "run's own settings (a file WORKDIR/STOP, or SIGTERM/SIGINT, stops a run cleanly)")
    for option in COMMON_OPTIONS.values():
        option.add_to(p)
    p.add_argument("--progress-json", action="store_true", help="one JSON object per line on stdout")


def build_parser(method: Optional[str], prog: str = "volumetricsr train") -> argparse.ArgumentParser:
    """The parser for ``method``'s training (common options only when ``method`` is None)."""
    from volumetricsr.training.tasks import get_task, trainable

    p = ArgumentParser(prog=prog, description=COMMON_HELP)
    add_common_arguments(p, trainable())
    if method is not None:
        get_task(method).add_arguments(p.add_argument_group(f"{method} options"))
    return p


def parse(argv: list[str], prog: str = "volumetricsr train") -> argparse.Namespace:
    """Two passes: ``--method`` first (from the command line, or the checkpoint with ``--resume``),
    then that method's full parser."""
    from volumetricsr.training.tasks import trainable

    pre = ArgumentParser(prog=prog, add_help=False)
    pre.add_argument("--method", choices=trainable())
    known, _ = pre.parse_known_args(argv)
    return build_parser(known.method, prog).parse_args(argv)


COMMON_RULES = rules_of(COMMON_OPTIONS)


def _workdir(args) -> tuple[Path, Path]:
    models_dir = Path(args.models_dir) if args.models_dir else user_models_dir()
    return models_dir, Path(args.workdir) if args.workdir else models_dir / "runs" / args.out


def run(args) -> int:
    from volumetricsr.compute.device import resolve_device
    from volumetricsr.training import distributed

    group = distributed.start(resolve_device(args.device))
    try:
        return _run(args, group)
    finally:
        distributed.finish(group)


def _run(args, group) -> int:
    import torch

    from volumetricsr.compute.device import resolve_device
    from volumetricsr.compute.threads import configure
    from volumetricsr.training import checkpoint as ckpt
    from volumetricsr.compute.export import check_model_id, write_model
    from volumetricsr.training.tasks import get_task
    from volumetricsr.training.trainer import Trainer

    check_model_id(args.out)
    check_options("volumetricsr train", COMMON_RULES, {k: getattr(args, k) for k in COMMON_RULES})
    configure(args.threads)
    models_dir, workdir = _workdir(args)
    if args.resume:
        saved = ckpt.load(workdir / "checkpoints" / "last.pt")
        method, config = saved["method"], saved["config"]          # the run's own settings
        if args.method and args.method != method:
            raise InputError(f"{workdir} holds a {method} run, not {args.method}.")
        if args.max_steps:
            config["total_steps"] = args.max_steps
        task_cls = get_task(method)
    else:
        if not args.method:
            raise InputError("--method is needed (unless --resume).")
        task_cls = get_task(args.method)
        check_options(f"{args.method} training", task_cls.option_rules,
                      {k: getattr(args, k) for k in task_cls.option_rules})
        config = task_cls.config_from_args(args)
        config["seed"], config["val_every"] = args.seed, args.val_every
        config["steps_per_epoch"] = args.steps_per_epoch or task_cls.default_steps_per_epoch(config)
        config["total_steps"] = args.max_steps or task_cls.default_total_steps(config, args.epochs)
    device = group.device(resolve_device(args.device))
    with group.main_first():          # rank 0 prepares the data cache, the others then read it
        task = task_cls.from_config(config, device, workdir / "cache")
    trainer = Trainer(task, workdir, total_steps=config["total_steps"], steps_per_epoch=config["steps_per_epoch"],
                      val_every=config["val_every"], seed=config["seed"], config=config,
                      progress_json=args.progress_json, group=group)
    status = trainer.run(resume=args.resume)
    if status != 0 or not group.is_main:
        return status
    result = trainer.result
    if trainer.best_path.exists() and result:
        task.load_state_dict(ckpt.load(trainer.best_path)["task"])
    elif task.final_stage is not None and task.stage(trainer.step - 1) != task.final_stage:
        raise InputError(f"The run ended in stage {task.stage(trainer.step - 1)!r}, before its final stage "
                         f"{task.final_stage!r}: no model written (train longer).")
    step = result.get("step", trainer.step)
    row = next((r for r in trainer.history if r["step"] == step), {})
    state, fields = task.model_card()
    training = {"steps": trainer.step, "best_step": result.get("step"), **task.card_training(),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "torch": torch.__version__, "device": device, **({"ranks": group.world} if group.world > 1 else {})}
    metrics = task.card_metrics(row)
    card = write_model(models_dir, args.out, state, fields, metrics, training=training)
    trainer.emit("model", id=card.id, card=str(card.path), weights=str(card.weights_path), metrics=metrics)
    return 0

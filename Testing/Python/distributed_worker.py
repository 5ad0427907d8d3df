"""One rank of a small data-parallel run, started by test_distributed.py under torchrun.

    torchrun --standalone --nproc_per_node 2 distributed_worker.py WORKDIR STEPS [--signal-at S]
             [--stop-file-at S] [--resume]

A linear regression on samples drawn from the rank's own stream, trained through the shared
optimisation step; each rank starts from different weights (rank 0's must reach every rank). Rank 1
sends itself SIGTERM during step ``--signal-at``; rank 0 creates WORKDIR/STOP during step
``--stop-file-at``. Each rank writes WORKDIR/rank-R.pt: its exit status, step, weights and a digest
of its first batch.
"""
import argparse
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from volumetricsr.training import distributed
from volumetricsr.training.loop import optimize
from volumetricsr.training.tasks import Task
from volumetricsr.training.trainer import Trainer


class Regression(Task):
    method = "regression"

    def __init__(self, group, args):
        super().__init__({}, "cpu")
        self.group, self.args = group, args
        torch.manual_seed(100 + group.rank)
        self.net = torch.nn.Linear(4, 2)
        self.opt = torch.optim.Adam(self.net.parameters(), 1e-2)
        self.truth = torch.arange(8.0).reshape(2, 4) / 8
        self.first = None

    def modules(self):
        return {"net": self.net}

    def optimizers(self):
        return {"opt": self.opt}

    def train_step(self, step, rng):
        x = torch.from_numpy(rng.normal(size=(16, 4)).astype(np.float32))
        if self.first is None:
            self.first = float(x.sum())
        loss = F.mse_loss(self.net(x), x @ self.truth.T)
        optimize(loss, self.opt)
        if self.group.rank == 1 and step == self.args.signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        if self.group.rank == 0 and step == self.args.stop_file_at:
            (Path(self.args.workdir) / "STOP").touch()
        return {"loss": float(loss.detach())}

    def validate(self, cancel=None):
        x = torch.linspace(-1, 1, 32).reshape(8, 4)
        with torch.no_grad():
            return {"val_psnr": -float(F.mse_loss(self.net(x), x @ self.truth.T))}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("workdir")
    p.add_argument("steps", type=int)
    p.add_argument("--signal-at", type=int, default=-1)
    p.add_argument("--stop-file-at", type=int, default=-1)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    group = distributed.start("cpu")
    task = Regression(group, args)
    trainer = Trainer(task, args.workdir, total_steps=args.steps, steps_per_epoch=2, config={}, group=group,
                      stream=sys.stdout if group.is_main else open(os.devnull, "w"))
    status = trainer.run(resume=args.resume)
    torch.save({"status": status, "step": trainer.step, "weights": task.net.state_dict(), "first": task.first,
                "world": group.world}, Path(args.workdir) / f"rank-{group.rank}.pt")
    distributed.finish(group)
    return 0


if __name__ == "__main__":
    sys.exit(main())

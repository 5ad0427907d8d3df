"""Data-parallel training on ``torch.distributed``, started by torchrun: one process (rank) per GPU,
or per CPU worker.

Every rank builds the same task (the same seed, so the same initial weights; rank 0's are broadcast
to make sure), draws its own training samples (its own random stream: rank 0's is the single-process
one, rank ``r``'s is seeded ``[seed, r]``), and averages its gradients with the others' in every
optimisation step (:func:`average_gradients`, inside :func:`~.loop.optimize`), so every rank holds
the same weights after every step: the arithmetic of ``DistributedDataParallel``, done in the one
optimisation step every method shares. (The ``DistributedDataParallel`` wrapper itself assumes one
forward and one backward per module per step; GAN steps, where a discriminator runs frozen inside the
generator's loss, break that assumption.)

The loop agrees across ranks, once per step, on the losses (their mean is logged; a loss that is not
finite on any rank stops every rank) and on stopping (a STOP file or a signal seen by any rank stops
all of them after the same step). Rank 0 validates while the others wait, writes every file, and
saves every rank's random state. Without torchrun's environment (``WORLD_SIZE`` unset or 1) every
collective here is the identity.
"""
from __future__ import annotations

import datetime
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch

#: How long a rank waits for the others in one collective (rank 0's validation included).
TIMEOUT = datetime.timedelta(minutes=int(os.environ.get("VOLUMETRICSR_DIST_TIMEOUT_MIN", "60")))


def _dist():
    import torch.distributed as dist

    return dist


@dataclass(frozen=True)
class Group:
    """This process's place in the run: ``rank`` of ``world`` (``local_rank`` on its machine)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, device: str) -> str:
        """``cuda`` -> this rank's GPU (``cuda:LOCAL_RANK``); other devices unchanged."""
        return f"cuda:{self.local_rank}" if self.world > 1 and device == "cuda" else device

    def seed(self, seed: int):
        """The seed of this rank's sample stream (rank 0: the single-process one)."""
        return [seed, self.rank] if self.rank else seed

    # -- collectives (identities in one process) ---------------------------------------------------
    def _tensor(self, values: list[float]) -> torch.Tensor:
        device = f"cuda:{self.local_rank}" if _dist().get_backend() == "nccl" else "cpu"
        return torch.tensor(values, dtype=torch.float64, device=device)

    def agree(self, out: dict[str, float], stop: bool) -> tuple[dict[str, float], bool]:
        """One step's values averaged over the ranks, and whether any rank wants to stop."""
        if self.world == 1:
            return out, stop
        total = self._tensor([*out.values(), float(stop)])
        _dist().all_reduce(total)
        *values, stops = total.tolist()
        return {k: v / self.world for k, v in zip(out, values)}, stops > 0

    def share(self, metrics: Optional[dict], stop: bool) -> tuple[dict, bool]:
        """Rank 0's ``metrics`` on every rank, and whether any rank wants to stop."""
        if self.world == 1:
            return metrics or {}, stop
        everyone = self.gather((metrics, stop))
        return everyone[0][0] or {}, any(s for _, s in everyone)

    def gather(self, obj: Any) -> list:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        _dist().all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            _dist().barrier()

    def broadcast(self, modules: Iterable[torch.nn.Module]) -> None:
        """Rank 0's parameters and buffers to every rank."""
        if self.world == 1:
            return
        with torch.no_grad():
            for module in modules:
                for tensor in [*module.parameters(), *module.buffers()]:
                    _dist().broadcast(tensor.data, 0)

    @contextmanager
    def main_first(self):
        """Rank 0 runs the block first (preparing shared files, e.g. the data cache), then the others."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()


LOCAL = Group()


def start(device: str) -> Group:
    """The group torchrun's environment describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_*``),
    with its process group started (NCCL on CUDA, gloo otherwise); :data:`LOCAL` without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return LOCAL
    group = Group(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    dist = _dist()
    if not dist.is_initialized():
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(group.local_rank)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    return group


def finish(group: Group) -> None:
    if group.world > 1 and _dist().is_initialized():
        _dist().destroy_process_group()


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace every gradient by its mean over the ranks (one all-reduce); nothing in one process."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    world = torch.distributed.get_world_size()
    grads = [p.grad for p in parameters if p.grad is not None]
    if world == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= world
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))

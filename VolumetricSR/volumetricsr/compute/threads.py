"""CPU threads: as many as the cores a run can really use, and threads that sleep when they wait.

PyTorch's OpenMP threads busy-wait for work between parallel regions. When two runs share the cores
(the Slicer panel infers while the trainer trains, several ``infer`` on one workstation), each run's
waiting threads burn the cores the other run's working threads need, and both collapse (README,
Load). Two settings fix that at the source, for every entry point:

- ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep), set when this package is imported, unless the
  user set it. OpenMP reads it once, when PyTorch loads it: where torch was imported before this
  package, it has no effect and :func:`configure` says so.
- intra-op threads = the cores this process may use (CPU affinity, a cgroup CPU quota), or
  ``--threads N`` / ``configure(N)`` / ``OMP_NUM_THREADS`` for runs that share a machine on purpose.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Optional

_TORCH_BEFORE_US, _USER_POLICY = "torch" in sys.modules, os.environ.get("OMP_WAIT_POLICY", "")


def _embedded() -> bool:
    """Imported into the process of a Slicer that shows its window (its ``slicer`` module is loaded,
    and it was not started with ``--no-main-window``)."""
    slicer = sys.modules.get("slicer")
    if slicer is None:
        return False
    try:
        return not slicer.app.commandOptions().noMainWindow
    except Exception:          # no application object to ask: treat it as Slicer's GUI
        return True


#: Inside a Slicer with its window, the core changes none of the process's settings (this wait
#: policy, cpu_memory's allocator settings): the panel runs networks in a child process, where they
#: apply. A headless Slicer (``Slicer --no-main-window --python-script train.py``) is the script's
#: own process, and gets them as plain Python does.
EMBEDDED = _embedded()
if not EMBEDDED:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (containers)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:             # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.floor(quota)) if quota else cores)


def _cgroup_quota() -> Optional[float]:
    """The cgroup CPU limit in cores (v2 ``cpu.max``, v1 ``cfs_quota_us``), None when unlimited."""
    try:
        text = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def configure(threads: Optional[int] = None) -> int:
    """Size PyTorch's intra-op pool to ``threads`` (default: ``OMP_NUM_THREADS`` if set, else
    :func:`usable_cores`); returns the number.

    A process-wide setting: called by the entry points (command line, trainer, Slicer's worker
    processes), not by a single run inside someone else's process.
    """
    import torch

    user = os.environ.get("OMP_NUM_THREADS", "")
    n = int(threads) if threads else int(user) if user.isdigit() and int(user) > 0 else usable_cores()
    torch.set_num_threads(n)
    if _TORCH_BEFORE_US and _USER_POLICY.upper() != "PASSIVE":
        warnings.warn("PyTorch was imported before volumetricsr, so its OpenMP threads busy-wait: runs that "
                      "share the cores will slow each other down badly. Set OMP_WAIT_POLICY=PASSIVE in the "
                      "environment, or import volumetricsr first.", RuntimeWarning, stacklevel=2)
    return n


@contextlib.contextmanager
def limited(most: Optional[int]):
    """Within the block, PyTorch's intra-op pool at no more than ``most`` threads (None: as it is).

    For work too fine-grained to share: a thread gains nothing there (selfsr's training steps run
    faster on one thread than on two, benchmarks/concurrency.py) and costs a run sharing the cores."""
    import torch

    before = torch.get_num_threads()
    if most is None or most >= before:
        yield
        return
    torch.set_num_threads(most)
    try:
        yield
    finally:
        torch.set_num_threads(before)

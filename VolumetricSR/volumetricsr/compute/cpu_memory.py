"""Keep freed tensor memory in the process while a long CPU job runs (glibc, Linux).

glibc hands every allocation above its mmap threshold (at most 32 MiB by default) back to the kernel
when it is freed, so a network whose activations are tens of MB gets fresh pages, and a page fault
for every 4 KiB of them, at every layer of every window. Raising the threshold for the duration of
inference or training lets those blocks be reused instead: TVSRN's bf16 window on 2 CPU cores went
from 2.22 to 1.37 s (``THP_MEM_ALLOC_ENABLE=0 benchmarks/tvsrn_speed.py --allocator both``). On
leaving, the thresholds go to where glibc's own would settle (32 MiB) and ``malloc_trim`` returns
the kept memory to the system.

This helps the thread that uses the main heap (a script, the command line, ``train.py``). A worker
thread gets a glibc arena of its own, whose heaps cannot hold blocks of more
than 64 MiB; for those, importing this module also asks PyTorch to back its large CPU tensors with
transparent huge pages (``THP_MEM_ALLOC_ENABLE=1``, unless already set; PyTorch reads it at its first
large allocation), which cuts their page faults 512-fold: 2.11 -> 1.40 s per window in a thread (README, TVSRN).
Elsewhere (macOS, Windows, musl), and inside the process of a Slicer with its window (``threads.EMBEDDED``), all this is a no-op.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys
import threading

from volumetricsr.compute.threads import EMBEDDED

if sys.platform.startswith("linux") and not EMBEDDED:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_BELOW = 1 << 30                 # blocks under 1 GiB stay in the heap while active
# On leaving: where glibc's own sliding threshold settles in a process that frees large arrays (its
# ceiling, 32 MiB; trimming at twice that). Setting a threshold at all stops glibc from sliding it.
SETTLED_MMAP = 32 << 20

_lock = threading.Lock()
_depth = 0


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = None if EMBEDDED else _glibc()     # inside Slicer's process: Slicer's allocator stays as it is


def active() -> bool:
    """True while some :func:`keep_freed_memory` block is running."""
    return _depth > 0


@contextlib.contextmanager
def keep_freed_memory():
    """Within the block, freed blocks under 1 GiB are kept for reuse; nesting is allowed."""
    global _depth
    with _lock:
        _depth += 1
        if _depth == 1 and _LIBC is not None:
            _LIBC.mallopt(M_MMAP_THRESHOLD, KEEP_BELOW)
            _LIBC.mallopt(M_TRIM_THRESHOLD, 2 * KEEP_BELOW - 1)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _LIBC is not None:
                _LIBC.mallopt(M_MMAP_THRESHOLD, SETTLED_MMAP)
                _LIBC.mallopt(M_TRIM_THRESHOLD, 2 * SETTLED_MMAP)
                _LIBC.malloc_trim(0)


def available_bytes() -> int | None:
    """Memory a run can still take without swapping: the kernel's MemAvailable, capped by what the
    process's cgroup (a container, a batch job) has left; None where it cannot be known (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            free = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    v1 = "/sys/fs/cgroup/memory/memory."
    for limit, used in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        (v1 + "limit_in_bytes", v1 + "usage_in_bytes")):
        try:
            with open(limit) as a, open(used) as b:
                free = min(free, int(a.read().strip()) - int(b.read().strip()))
        except (OSError, ValueError):        # no such cgroup file, or "max": no limit
            continue
    return max(free, 0)

"""Where the panel should run the interpolations: timed under a main loop that holds the GIL between
timer ticks, as Slicer's does.

    .venv/bin/python benchmarks/slicer_gil.py [--size 256 256 40] [--methods linear bspline sinc] [--repeat 3]

Slicer's Python runs in the main thread through PythonQt, and CTK never enables PythonQt's thread
support (``ctkAbstractPythonManager`` calls ``PythonQt::init`` without ``setEnableThreadSupport``;
neither CTK nor Slicer calls ``PyEval_SaveThread``): the main thread keeps the GIL while Qt's event
loop idles and lets another Python thread run only while it runs Python itself (a timer tick). The
stand-in main loop here does the same: every 100 ms it polls the task (Python), then idles for the
rest of the tick in a C call that keeps the GIL (``usleep`` through ``ctypes.PyDLL``). For each
method and volume size it times:

- ``blocking``: ``super_resolve`` in the main thread, nothing else (the console API);
- ``thread, GIL held``: in a worker thread (how the panel ran them before), under that main loop;
- ``thread, GIL free``: the same under a loop that idles with ``time.sleep`` (what a script, the
  self-test and the smoke script see: they cannot see the slowdown);
- ``child process``: ``volumetricsr infer`` in a child (:func:`~VolumetricSRLib.processtask.infer_task`,
  as the networks run), under the GIL-holding loop, start-up and the NRRD round trip included;
- ``main thread``: :class:`~VolumetricSRLib.runner.InlineTask` (how the panel runs them now), under
  the GIL-holding loop, with ``longest gap``: the longest time between two progress reports, i.e.
  the longest the window waits for its events.

Writes ``benchmarks/results/slicer_gil.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "VolumetricSR"), str(ROOT / "Testing" / "Python")]

from volumetricsr import CancelToken, Volume, super_resolve  # noqa: E402

_HOLDING = ctypes.PyDLL(None)      # a PyDLL call keeps the GIL for its whole length
TICK = 0.1                         # the panel's poll timer


def main_loop(poll, hold_gil: bool) -> None:
    """Poll every tick until ``poll()`` is False; between ticks idle keeping the GIL or not."""
    while poll():
        if hold_gil:
            _HOLDING.usleep(int(TICK * 1e6))
        else:
            time.sleep(TICK)


def thick_volume(size) -> Volume:
    """A smooth random volume ``size`` = (columns, rows, slices), 0.8 mm in-plane, 4 mm slices."""
    i, j, k = size
    rng = np.random.default_rng(0)
    a = rng.normal(size=(k, j, i)).astype(np.float32).cumsum(1).cumsum(2)
    return Volume((1000 * a / np.abs(a).max()).astype(np.int16), (0.8, 0.8, 4.0))


def in_thread(volume, method, hold_gil: bool) -> float:
    import threading

    done = []
    start = time.perf_counter()
    worker = threading.Thread(target=lambda: done.append(super_resolve(volume, method, 1.0)), daemon=True)
    worker.start()
    main_loop(worker.is_alive, hold_gil)
    assert done
    return time.perf_counter() - start


def in_main_thread(volume, method) -> tuple[float, float]:
    """Seconds, and the longest gap between progress reports (the window's longest wait)."""
    from VolumetricSRLib.runner import InlineTask

    done, reports = [], []
    start = time.perf_counter()
    task = InlineTask(lambda progress, cancel: super_resolve(volume, method, 1.0, progress=progress, cancel=cancel),
                      CancelToken(), on_done=done.append, on_error=lambda e, tb: done.append(e),
                      between=lambda: reports.append(time.perf_counter())).start()
    _HOLDING.usleep(int(TICK * 1e6))          # the timer's first tick
    main_loop(task.poll, hold_gil=True)
    end = time.perf_counter()
    assert done and not isinstance(done[0], Exception), done
    marks = [start + TICK] + reports + [end]
    return end - start, max(b - a for a, b in zip(marks, marks[1:]))


def in_child(volume, method) -> float:
    from types import SimpleNamespace

    from VolumetricSRLib.processtask import infer_task

    job = SimpleNamespace(volume=volume, method=method, options={}, device="cpu", spacing=1.0, axis=None,
                          dtype=None, force=False, trust={}, results={}, cancel=CancelToken())
    done = []
    start = time.perf_counter()
    task = infer_task(job, on_done=done.append, on_error=lambda e, tb: done.append(e)).start()
    main_loop(task.poll, hold_gil=True)
    assert done and not isinstance(done[0], Exception), done
    return time.perf_counter() - start


def blocking(volume, method) -> float:
    start = time.perf_counter()
    super_resolve(volume, method, 1.0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, action="append", help="columns rows slices (repeatable)")
    parser.add_argument("--methods", nargs="+", default=["linear", "bspline", "sinc"])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    sizes = args.size or [[256, 256, 40], [512, 512, 60]]
    ways = {"blocking": blocking, "thread, GIL held": lambda v, m: in_thread(v, m, True),
            "thread, GIL free": lambda v, m: in_thread(v, m, False), "child process": in_child}
    rows = []
    for size in sizes:
        volume = thick_volume(size)
        super_resolve(volume, "linear", 1.0)          # warm up: imports, first allocations
        for method in args.methods:
            row = {"size": size, "method": method}
            for name, way in ways.items():
                row[name] = statistics.median(way(volume, method) for _ in range(args.repeat))
            main = [in_main_thread(volume, method) for _ in range(args.repeat)]
            row["main thread"] = statistics.median(t for t, _ in main)
            row["longest gap"] = max(g for _, g in main)
            rows.append(row)
            print(f"{'x'.join(map(str, size)):>11} {method:8}"
                  + "".join(f"  {k}: {row[k]:5.2f} s" for k in (*ways, "main thread", "longest gap")), flush=True)
    out = ROOT / "benchmarks" / "results" / "slicer_gil.json"
    out.write_text(json.dumps({"tick_s": TICK, "cores": __import__("os").cpu_count(), "rows": rows}, indent=1))
    print(f"written: {out}")


if __name__ == "__main__":
    main()

"""TVSRN inference speed: time per 4x256x256 window, whole-volume estimate, GFLOP/s, peak memory.

    nice -n 10 .venv/bin/python benchmarks/tvsrn_speed.py [--device cpu|cuda] [--repeats 3] [--json out.json]

Runs the default (paper-sized) TVSRN with random weights (speed does not depend on the weights)
for fp32 and bf16 autocast (fp16 too on a GPU), eager and with ``torch.compile`` (``--onnx``: also
ONNX Runtime; ``--allocator both``: eager variants also without :mod:`volumetricsr.compute.cpu_memory`'s
reuse of freed memory, i.e. with glibc's defaults; run with ``THP_MEM_ALLOC_ENABLE=0`` to turn
PyTorch's huge pages off as well; ``--in-thread``: time in a worker thread, as the Slicer panel
runs), counts the model's floating-point operations with ``torch.utils.flop_counter``,
times a plain large matmul in the same run for comparison, times one real engine run (two windows
through the tvsrn method's tiling) to check the per-volume estimate, and compares with the public
reference code's 12.7 s per window (2 CPU cores, fp32, measured). Variants are timed in
interleaved rounds and the fastest round is reported (median too): the machine may be shared.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "VolumetricSR"))

from volumetricsr.compute.engine import sliding_window_inference, window_starts  # noqa: E402
from volumetricsr.compute.export import export_onnx  # noqa: E402
from volumetricsr.methods.tvsrn.method import CompiledOrEager, TVSRNMethod  # noqa: E402
from volumetricsr.compute.networks import TVSRN  # noqa: E402
from volumetricsr.compute.predictors import OnnxPredictor, TorchPredictor  # noqa: E402

REFERENCE_S_PER_WINDOW = 12.7      # smilenaxx/RPLHR-CT TVSRN, 2 CPU cores, fp32 (../shared/notes)
REFERENCE_VOLUME_MIN = 25.0        # 60x512x512 thick CT, 116 windows
MATMUL_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int, warm: bool = True) -> list[float]:
    if warm:
        fn()                                   # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return times


def matmul_gflops(device: str, dtype: torch.dtype, n: int, repeats: int) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n ** 3 / min(timed(lambda: a @ b, device, repeats)) / 1e9


def model_flops(net: torch.nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(x)
    return float(counter.get_total_flops())


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024      # Linux: KiB


def windows_for(volume, window, overlap) -> int:
    n = 1
    for size, w, o in zip(volume, window, overlap):
        w = min(w, size)
        n *= len(window_starts(size, w, max(1, int(round(w * (1 - o))))))
    return n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--batch", type=int, default=1, help="windows per call")
    p.add_argument("--volume", type=int, nargs=3, default=[60, 512, 512], metavar=("D", "H", "W"))
    p.add_argument("--matmul", type=int, default=2048, help="size of the square matmul for comparison")
    p.add_argument("--compile", nargs="*", default=["fp32"], choices=["fp32", "bf16", "fp16"],
                   help="precisions to time with torch.compile as well (default: fp32; none: eager only)")
    p.add_argument("--onnx", action="store_true", help="time ONNX Runtime (fp32) as well")
    p.add_argument("--allocator", choices=["tuned", "both"], default="tuned",
                   help="both: eager variants also with glibc's default allocator settings (+plain)")
    p.add_argument("--in-thread", action="store_true", help="time in a worker thread (as the Slicer panel)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    window = TVSRNMethod.window
    net = TVSRN().eval()
    variants = ["fp32", "bf16", "fp16"] if device.startswith("cuda") else ["fp32", "bf16"]
    if args.allocator == "both":
        variants += [f"{prec}+plain" for prec in variants]
    variants += [f"{prec}+compile" for prec in args.compile] + (["onnx"] if args.onnx else [])
    x = torch.rand(args.batch, 1, *window)
    flops = model_flops(net, x[:1])
    n_windows = windows_for(args.volume, window, TVSRNMethod.overlap)
    results = {"device": device, "cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "window": list(window), "batch": args.batch,
               "parameters": sum(q.numel() for q in net.parameters()), "gflop_per_window": flops / 1e9,
               "volume": args.volume, "windows_per_volume": n_windows, "in_thread": args.in_thread,
               "thp_mem_alloc": os.environ.get("THP_MEM_ALLOC_ENABLE"), "precisions": {}}
    print(f"TVSRN {results['parameters']:,} parameters, {flops / 1e9:.1f} GFLOP per {window} window; "
          f"{device}, {results['threads']} threads, torch {torch.__version__}; "
          f"{'worker thread' if args.in_thread else 'main thread'}, THP_MEM_ALLOC_ENABLE={results['thp_mem_alloc']}")
    predictors, rows = {}, {}
    for variant in variants:                     # build (export, compile) and warm up each variant
        prec = variant.split("+")[0] if variant != "onnx" else "fp32"
        row = rows[variant] = {"precision": prec}
        t = time.perf_counter()
        if variant == "onnx":
            buffer = io.BytesIO()
            net.prepare(window[1], window[2])
            export_onnx(net, buffer, (1, 1, *window))
            predictor = OnnxPredictor(buffer.getvalue(), device)
        else:
            predictor = TorchPredictor(net, device, prec, keep_freed_memory=not variant.endswith("+plain"))
            if variant.endswith("+compile"):
                predictor.module = CompiledOrEager(net)
        predictor(x)
        row["setup_and_first_call_s"] = time.perf_counter() - t
        row["peak_rss_mib_so_far"] = peak_rss_mib()
        if device.startswith("cuda"):
            row["peak_gpu_mib_so_far"] = torch.cuda.max_memory_allocated() / 2 ** 20
        predictors[variant] = predictor
    # interleaved rounds, so that every variant (and the matmul) sees the same load on a shared machine
    times = {v: [] for v in variants}
    matmul = {dt: [] for dt in {MATMUL_DTYPE[rows[v]["precision"]] for v in variants}}

    def rounds():
        for _ in range(args.repeats):
            for variant, predictor in predictors.items():
                times[variant] += timed(lambda: predictor(x), device, 1, warm=False)
            for dt in matmul:
                matmul[dt].append(matmul_gflops(device, dt, args.matmul, 1))

    if args.in_thread:
        worker = threading.Thread(target=rounds, name="timing")
        worker.start()
        worker.join()
    else:
        rounds()
    for variant in variants:
        row = rows[variant]
        best, median = min(times[variant]) / args.batch, statistics.median(times[variant]) / args.batch
        mm = max(matmul[MATMUL_DTYPE[row["precision"]]])
        row.update({"s_per_window_min": best, "s_per_window_median": median, "times": times[variant],
                    "model_gflops": flops / best / 1e9, "matmul_gflops": mm, "volume_min": best * n_windows / 60,
                    "speedup_vs_reference": REFERENCE_S_PER_WINDOW / best})
        results["precisions"][variant] = row
        print(f"{variant:13s} {best:6.2f} s/window (median {median:.2f}; {REFERENCE_S_PER_WINDOW / best:.1f}x faster "
              f"than the reference's {REFERENCE_S_PER_WINDOW} s) | model {row['model_gflops']:.0f} GFLOP/s vs "
              f"{args.matmul}^2 {row['precision']} matmul {mm:.0f} GFLOP/s | {args.volume[0]}x{args.volume[1]}x"
              f"{args.volume[2]} ({n_windows} windows) {row['volume_min']:.1f} min (reference about "
              f"{REFERENCE_VOLUME_MIN:.0f} min) | setup + first call {row['setup_and_first_call_s']:.0f} s | "
              f"peak RSS so far {row['peak_rss_mib_so_far']:.0f} MiB")
    # one real engine run: 7 thick slices = 2 windows, with the method's overlap and averaging
    stack = torch.rand(1, 7, *window[1:])
    predictor = TorchPredictor(net, device, "fp32")
    t = time.perf_counter()
    sliding_window_inference(stack, predictor, window, scale=(5, 1, 1), overlap=TVSRNMethod.overlap, blend="uniform")
    engine_s = time.perf_counter() - t
    results["engine_two_windows_fp32_s"] = engine_s
    print(f"engine, 7x256x256 (2 windows, fp32): {engine_s:.2f} s "
          f"({engine_s / 2 / results['precisions']['fp32']['s_per_window_min']:.2f}x the per-window minimum)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

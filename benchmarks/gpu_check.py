"""The GPU paths on a real card, in one short run (a few minutes): what the unit tests fake.

    .venv/bin/python benchmarks/gpu_check.py [--slices 120] [--batch 4096]

1. The device report: name, compute capability, the build's architectures, what ``auto`` picks.
2. Out of memory: TVSRN (the shipped model) on a synthetic 512x512 thick CT with an absurd batch size,
   so the first batch cannot fit: the run must complete, print the engine's "out of memory: batches
   of N windows" message, and give the same result as a run with batch 1.
3. Precisions: fp32, bf16 and fp16 autocast seconds and the largest difference to fp32.
4. ONNX Runtime with the CUDA provider, if installed, against torch.
5. Trust on the GPU: the confidence map (three TVSRN runs) and enforced consistency, their seconds,
   the consistency RMS after enforcing (near 0) and the map's mean.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "VolumetricSR"))

from volumetricsr import Volume, super_resolve  # noqa: E402
from volumetricsr.compute.device import cuda_problem, describe_device, resolve_device  # noqa: E402


def thick_ct(slices: int) -> Volume:
    rng = np.random.default_rng(0)
    a = (rng.normal(0, 150, (slices, 512, 512)) + 40).astype(np.float32)
    r = np.hypot(*np.meshgrid(*(np.arange(512) - 256,) * 2, indexing="ij"))
    a[:, r > 230] = -1000
    return Volume(a, (0.7, 0.7, 5.0))


def timed(**kwargs):
    messages = []
    torch.cuda.synchronize()
    start = time.perf_counter()
    out = super_resolve(kwargs.pop("volume"), "tvsrn", 1.0, progress=lambda f, m: messages.append(m), **kwargs)
    torch.cuda.synchronize()
    return out.array, time.perf_counter() - start, messages


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slices", type=int, default=120)
    ap.add_argument("--batch", type=int, default=4096)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device here")
        return 1
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, arch list {torch.cuda.get_arch_list()}")
    for i in range(torch.cuda.device_count()):
        print(f"cuda:{i} {describe_device(f'cuda:{i}')}, capability {torch.cuda.get_device_capability(i)}, "
              f"problem: {cuda_problem(i)}")
    device = resolve_device("auto")
    print(f"auto -> {device}")
    vol = thick_ct(args.slices)
    small, t1, _ = timed(volume=vol, device=device, batch_size=1, precision="fp32", compile=False)
    big, t2, messages = timed(volume=vol, device=device, batch_size=args.batch, precision="fp32", compile=False)
    oom = [m for m in messages if "out of memory" in m]
    print(f"batch 1: {t1:.1f} s; batch {args.batch}: {t2:.1f} s, messages {sorted(set(oom))}, "
          f"max |difference| {np.abs(big - small).max():.3g} HU")
    for precision in ("bf16", "fp16"):
        out, t, _ = timed(volume=vol, device=device, batch_size=8, precision=precision, compile=False)
        print(f"{precision}: {t:.1f} s, max |{precision} - fp32| {np.abs(out - small).max():.3g} HU")
    try:
        out, t, _ = timed(volume=vol, device=device, batch_size=8, backend="onnx")
        print(f"onnx: {t:.1f} s, max |onnx - torch| {np.abs(out - small).max():.3g} HU")
    except Exception as exc:  # no onnxruntime-gpu, or no CUDA provider
        print(f"onnx: not run ({type(exc).__name__}: {str(exc)[:200]})")
    results = {}
    _, t, _ = timed(volume=vol, device=device, batch_size=8, confidence_map=True, enforce_consistency=True,
                    results=results)
    print(f"trust: {t:.1f} s with the confidence map and enforcement; consistency RMS "
          f"{results['consistency']['rms']:.3g} HU, map mean {results['confidence_map'].array.mean():.3g} HU")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Engine overhead and peak memory on a 60x512x512 thick volume upsampled x5.

A small convolutional test network maps 4 thick slices to (4-1)*5+1 = 16 thin ones. The engine's
own overhead (window extraction, batching, blending, accumulation, normalisation) is its total time
minus the time spent inside the network, measured in the same run. Peak memory is the process's
resident high-water mark above the baseline, read from /proc (Linux), reset between phases.

    python benchmarks/engine.py [--depth 60] [--size 512] [--batch-size 2] [--json out.json]

Targets (issue #2): overhead < 5 % of network time; peak < 2 x (input + output) + network working set.
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from volumetricsr.compute.engine import sliding_window_inference


class SmallUpsampler(torch.nn.Module):
    """conv(1->8) -> ReLU -> trilinear x5 in depth -> conv(8->1): a stand-in network of known cost."""

    def __init__(self, factor: int = 5, width: int = 8):
        super().__init__()
        self.factor = factor
        self.inp = torch.nn.Conv3d(1, width, 3, padding=1)
        self.out = torch.nn.Conv3d(width, 1, 3, padding=1)

    def forward(self, x):
        d, h, w = x.shape[2:]
        y = F.relu(self.inp(x))
        y = F.interpolate(y, size=((d - 1) * self.factor + 1, h, w), mode="trilinear", align_corners=True)
        return self.out(y)


class TimedPredictor:
    """Calls the network and adds up the time spent in it."""

    def __init__(self, net):
        self.net, self.seconds, self.calls = net, 0.0, 0

    def __call__(self, batch):
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.net(batch)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def proc_status_mib(key: str) -> float:
    """A memory figure of this process from /proc/self/status (VmHWM: peak, VmRSS: now), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=60)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--factor", type=int, default=5)
    ap.add_argument("--window", type=int, nargs=3, default=(4, 256, 256))
    ap.add_argument("--overlap", type=float, nargs=3, default=(0.5, 0.25, 0.25))
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--blend", default="gaussian", choices=["gaussian", "uniform"])
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    torch.manual_seed(0)
    net = SmallUpsampler(args.factor).eval()

    # network working set: one batch through the network alone
    batch = torch.rand(args.batch_size, 1, *args.window)
    with torch.inference_mode():
        net(batch)
    reset_peak()
    base = proc_status_mib("VmRSS")
    with torch.inference_mode():
        net(batch)
    working_set = proc_status_mib("VmHWM") - base
    del batch

    x = torch.rand(1, args.depth, args.size, args.size)
    out_depth = (args.depth - 1) * args.factor + 1
    in_mib = x.numel() * 4 / 2**20
    out_mib = out_depth * args.size * args.size * 4 / 2**20
    reset_peak()
    base = proc_status_mib("VmRSS")
    predictor = TimedPredictor(net)
    start = time.perf_counter()
    y = sliding_window_inference(x, predictor, args.window, scale=(args.factor, 1, 1), overlap=args.overlap,
                                 blend=args.blend, batch_size=args.batch_size)
    total = time.perf_counter() - start
    peak = proc_status_mib("VmHWM") - base + in_mib      # the input was allocated before the baseline
    assert tuple(y.shape) == (1, out_depth, args.size, args.size)

    overhead = total - predictor.seconds
    result = {
        "input": [args.depth, args.size, args.size], "output": [out_depth, args.size, args.size],
        "window": list(args.window), "overlap": list(args.overlap), "batch_size": args.batch_size,
        "blend": args.blend, "network_calls": predictor.calls, "threads": torch.get_num_threads(),
        "total_s": round(total, 2), "network_s": round(predictor.seconds, 2), "engine_overhead_s": round(overhead, 2),
        "overhead_share_of_network": round(overhead / predictor.seconds, 4),
        "input_mib": round(in_mib, 1), "output_mib": round(out_mib, 1),
        "network_working_set_mib": round(working_set, 1), "peak_mib": round(peak, 1),
        "peak_over_input_plus_output": round(peak / (in_mib + out_mib), 3),
        "memory_budget_mib": round(2 * (in_mib + out_mib) + working_set, 1),
    }
    result["overhead_target_met"] = result["overhead_share_of_network"] < 0.05
    result["memory_target_met"] = peak < result["memory_budget_mib"]
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()

"""The built-in example: phantom -> pseudo-thick x5 -> every method -> scores and a figure."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from volumetricsr.app.api import super_resolve
from volumetricsr.common.errors import VolumetricSRError
from volumetricsr.data.io import write_volume
from volumetricsr.methods import available_methods, get_method
from volumetricsr.data.metrics import evaluate
from volumetricsr.data.phantom import make_phantom
from volumetricsr.common.progress import ProgressCallback, scaled
from volumetricsr.data.simulate import simulate_thick

FACTOR = 5


def default_methods() -> list[str]:
    """Every installed method that needs no trained model and is not experimental, instant ones first."""
    order = {"linear": 0, "bspline": 1, "sinc": 2}
    return [m.name for m in sorted((m for m in available_methods() if not m.needs_model and not m.experimental),
                                   key=lambda m: (order.get(m.name, 9), m.name))]


def run_demo(out_dir: "str | Path", methods: Optional[list[str]] = None, device: str = "cpu",
             progress: Optional[ProgressCallback] = None) -> dict:
    """Write thin.nii.gz, thick.nii.gz, one volume per method, results.json and comparison.png."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    thin = make_phantom()
    thick = simulate_thick(thin, FACTOR, profile="gaussian")
    write_volume(thin, out / "thin.nii.gz")
    write_volume(thick, out / "thick.nii.gz")
    methods = [get_method(name) for name in (methods or default_methods())]
    results, volumes = {}, {"thick x5 (input)": thick}
    for n, m in enumerate(methods):
        start = time.perf_counter()
        sr = super_resolve(thick, m.name, thin.spacing[2], device=device,
                           progress=scaled(progress, n / len(methods), (n + 1) / len(methods)))
        seconds = time.perf_counter() - start
        write_volume(sr, out / f"{m.name}.nii.gz")
        score = evaluate(sr, thin, "rplhr")
        results[m.name] = {"psnr": round(score["psnr"], 3), "ssim": round(score["ssim"], 4), "seconds": round(seconds, 3)}
        volumes[m.title] = sr
    volumes["thin (reference)"] = thin
    (out / "results.json").write_text(json.dumps(results, indent=2))
    try:
        from volumetricsr.app.figures import comparison_figure
        comparison_figure(volumes, out / "comparison.png", axis=2, window=(-1000, 300),
                          title="Built-in phantom, coronal reformat: thick x5 input, methods, thin reference")
    except VolumetricSRError:      # no matplotlib: the volumes and scores are still written
        pass
    return results

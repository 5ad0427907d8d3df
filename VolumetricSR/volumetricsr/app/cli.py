"""The ``volumetricsr`` command line."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

from volumetricsr.common import __version__
from volumetricsr.common.errors import Cancelled, InputError, OutputError, VolumetricSRError
from volumetricsr.common.progress import emit_json
from volumetricsr.common.options import ArgumentParser, Option
from volumetricsr.data.metrics import PROTOCOLS
from volumetricsr.data.profiles import DEFAULT_PROFILE
from volumetricsr.methods.options import GROUPS, METHOD_OPTIONS, RUN_OPTIONS

_default_show_warning = warnings.showwarning


class TqdmProgress:
    """A progress callback that drives one tqdm bar (percent of the whole task), shown from the
    first report on, so that an error found before any work is the only line on the terminal."""

    def __init__(self, description: str, enabled: bool = True):
        self.description, self.enabled, self.bar = description, enabled, None

    def __call__(self, fraction: float, message: str = "") -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=100, desc=self.description, unit="%", disable=not self.enabled,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
        self.bar.update(fraction * 100 - self.bar.n)
        if message:
            self.bar.set_postfix_str(message, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings meant for the user (:class:`~.errors.Notice`): one line, above the bar."""
    from tqdm import tqdm

    from volumetricsr.common.errors import Notice

    if issubclass(category, Notice):
        tqdm.write(f"volumetricsr: warning: {message}", file=sys.stderr)
    else:
        _default_show_warning(message, category, filename, lineno, file, line)


def _add_infer(sub) -> None:
    p = sub.add_parser("infer", help="super-resolve a volume (or each volume of a 4-D sequence) along its "
                                     "through-plane axis")
    p.add_argument("input", help="volume file (.nii.gz, .nrrd, .mha, ...), 4-D file (a sequence) or DICOM folder")
    p.add_argument("output", help="output file (4-D for a sequence), or a folder for a DICOM series")
    _add_method_arguments(p)
    RUN_OPTIONS["dtype"].add_to(p)
    p.add_argument("--series", help="SeriesInstanceUID when the DICOM folder holds several series")
    p.add_argument("--options", help="method options as a JSON object, e.g. '{\"iterations\": 500}' "
                                     "(over the flags above)")
    RUN_OPTIONS["enforce_consistency"].add_to(p)
    p.add_argument("--consistency-map", metavar="PATH",
                   help="also write the input minus the re-thickened result (on the input's grid)")
    p.add_argument("--confidence-map", metavar="PATH",
                   help="also write the spread of the method's predictions (on the output's grid; network methods "
                        "run three times for it)")
    p.add_argument("--progress-json", action="store_true", help="progress as JSON lines on stdout (for a GUI)")
    p.add_argument("--stop-file", help="cancel when this file appears (for a GUI; signals work too)")


def _add_method_arguments(p) -> None:
    """The method, its options and the machine: what ``infer`` and ``infer-batch`` share, made from
    the declarations (:mod:`volumetricsr.methods.options`)."""
    p.add_argument("--method", default="bspline", help="method name (see `volumetricsr methods`)")
    for name in ("spacing", "axis", "device", "threads"):
        RUN_OPTIONS[name].add_to(p)
    for title, names in GROUPS.items():
        group = p.add_argument_group(title)
        for name in names:
            METHOD_OPTIONS[name].add_to(group)
    RUN_OPTIONS["force"].add_to(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _method_request(args, extra: Optional[dict] = None):
    """The method and its given options (flags, then ``extra``), checked, and the CPU threads configured."""
    from volumetricsr.app.api import check_request
    from volumetricsr.common.options import THREADS

    given = {name: getattr(args, name) for name in METHOD_OPTIONS}     # each method checks its own
    options = {**{name: value for name, value in given.items() if value is not None}, **(extra or {})}
    method, _ = check_request(args.method, args.spacing, options)
    threads = None if args.threads is None else THREADS("threads", args.threads)
    if method.uses_device:
        from volumetricsr.compute.threads import configure

        configure(threads)
    return method, options


def _cmd_infer(args) -> int:
    from volumetricsr.app.api import infer
    from volumetricsr.common.progress import CancelToken, JsonProgress, StopFileToken

    if args.progress_json:
        emit_json("start", pid=os.getpid())
    try:
        extra = json.loads(args.options) if args.options else {}
    except ValueError as exc:
        raise InputError(f"--options is not JSON: {exc}.")
    if not isinstance(extra, dict):
        raise InputError("--options must be a JSON object, like '{\"iterations\": 500}'.")
    method, options = _method_request(args, extra)
    bar = JsonProgress() if args.progress_json else TqdmProgress(method.title or method.name, enabled=not args.quiet)
    cancel = StopFileToken(args.stop_file) if args.stop_file else CancelToken()
    start = time.perf_counter()
    maps = {key: path for key, path in (("consistency_map", args.consistency_map),
                                        ("confidence_map", args.confidence_map)) if path}
    results = {}
    try:
        out = infer(args.input, args.output, args.method, args.spacing, axis=args.axis, device=args.device,
                    series=args.series, dtype=None if args.dtype == "float32" else "input", force=args.force,
                    progress=bar, cancel=cancel, enforce_consistency=args.enforce_consistency, results=results,
                    maps=maps, **options)
    finally:
        getattr(bar, "close", lambda: None)()
    seconds = time.perf_counter() - start
    described = f"{len(out)} frames of {out[0].describe()}" if isinstance(out, list) else out.describe()
    c = results.get("consistency")
    if "slice_profile" in results and not args.progress_json:
        from volumetricsr.app.api import describe_profile

        print(describe_profile(results["slice_profile"]), file=sys.stderr)
    where = c and (f"frame {c['frame']} (the least consistent), slice {c['worst_slice']}" if "frame" in c
                   else f"slice {c['worst_slice']}")
    said = "".join([f"consistency with the acquired slices: RMS {c['rms']:.4g}, max {c['max']:.4g} ({where})"
                    if c else ""] + [f"; {key.replace('_', ' ')} written to {path}"
                                                             for key, path in maps.items()]).lstrip("; ")
    if args.progress_json:
        emit_json("done", output=str(args.output), describe=described, seconds=round(seconds, 2),
                  consistency=c, slice_profile=results.get("slice_profile"), trained_on=results.get("trained_on"),
                  maps={key: str(path) for key, path in maps.items()})
    else:
        print(f"wrote {args.output}: {described} in {seconds:.1f} s")
        if said:
            print(said, file=sys.stderr)
    return 0


def _add_infer_batch(sub) -> None:
    p = sub.add_parser("infer-batch", help="super-resolve a cohort: a folder, a glob or a CSV manifest")
    p.add_argument("inputs", help="folder (volume files and DICOM series folders), glob pattern, or CSV "
                                  "manifest (columns input[,output][,options as JSON])")
    p.add_argument("outdir", help="output folder (NIfTI files, report.csv); existing outputs are skipped")
    _add_method_arguments(p)
    RUN_OPTIONS["workers"].add_to(p)
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the studies as Ray tasks: alone, on a new local Ray instance; 'auto' or "
                        "ray://HOST:PORT, on a running cluster (pip install 'volumetricsr[cluster]')")
    p.add_argument("--shard", help="i/n: only every n-th study from the i-th (0-based), for job arrays")
    p.add_argument("--enforce-consistency", action="store_true",
                   help="change each result as little as possible so that re-thickening it gives its input exactly")
    RUN_OPTIONS["maps"].add_to(p)


def _cmd_infer_batch(args) -> int:
    from volumetricsr.app.batch import manifest, parse_shard, report_path, run_batch

    _, options = _method_request(args)
    workers = None if args.workers is None else RUN_OPTIONS["workers"].rule("workers", args.workers)
    shard = parse_shard(args.shard) if args.shard else None
    studies = manifest(args.inputs)
    bar = TqdmProgress(f"{len(studies)} studies", enabled=not args.quiet)
    try:
        rows = run_batch(studies, args.outdir, args.method, args.spacing, options, axis=args.axis,
                         force=args.force, enforce_consistency=args.enforce_consistency, maps=tuple(args.maps),
                         workers=workers,
                         device=args.device, shard=shard, ray=args.ray,
                         progress=bar, source=args.inputs)
    finally:
        bar.close()
    counts = {status: sum(r["status"] == status for r in rows) for status in ("done", "skipped", "failed")}
    print(f"{counts['done']} done, {counts['skipped']} skipped (already written), {counts['failed']} failed; "
          f"report: {report_path(args.outdir, shard)}")
    return 1 if counts["failed"] else 0


def _cmd_methods(args) -> int:
    from volumetricsr.methods import available_methods

    methods = available_methods()
    if args.json:
        print(json.dumps([m.info() for m in methods], indent=2))
        return 0
    for m in methods:
        needs = "needs a trained model" if m.needs_model else "trains on the volume" if m.trains_per_volume else "no training"
        factor = f"native x{m.native_factor:g}" if m.native_factor else "any factor"
        options = ", ".join(m.options) or "none"
        print(f"{m.name:10s} {m.title}: {m.description}\n{'':10s} [{'experimental; ' * m.experimental}"
              f"{', '.join(m.modalities)}; {needs}; {factor}; "
              f">= {m.min_slices} slices; options: {options}]")
    return 0


def _cmd_models(args) -> int:
    from volumetricsr.compute.models import list_models, model_dirs

    problems: list = []
    cards = list_models(args.method, problems)
    if args.json:
        print(json.dumps([{"id": c.id, "method": c.method, "path": str(c.path), "native_factor": c.native_factor,
                           "modality": c.modality, "metrics": c.metrics} for c in cards]
                         + [{"path": str(p), "error": reason} for p, reason in problems], indent=2))
        return 0
    if not cards:
        print("no models in " + ", ".join(str(d) for d in model_dirs()))
    for c in cards:
        print(c.summary())
    for path, reason in problems:
        print(f"{path.name}  [not usable]  {reason}")
    return 0


def _add_simulate(sub) -> None:

    p = sub.add_parser("simulate-thick", help="make a pseudo-thick volume from a thin one (slice-profile averaging)")
    p.add_argument("thin")
    p.add_argument("output")
    p.add_argument("--factor", type=int, required=True, help="keep one thick slice per FACTOR thin slices")
    Option("thickness", METHOD_OPTIONS["thickness"].rule, "slice thickness in mm (default: the new slice "
           "spacing)").add_to(p)
    Option("profile", METHOD_OPTIONS["profile"].rule, "slice profile", default=DEFAULT_PROFILE[0]).add_to(p)
    Option("axis", RUN_OPTIONS["axis"].rule, "axis to thicken (default: the largest spacing)").add_to(p)


def _cmd_simulate(args) -> int:
    from volumetricsr.data.io import read_volume, volume_transaction, write_volume
    from volumetricsr.data.simulate import simulate_thick

    with volume_transaction({"output": args.output}, {"input": args.thin}) as tx:
        thick = simulate_thick(read_volume(args.thin), args.factor, args.thickness, args.profile, args.axis)
        write_volume(thick, args.output, tx=tx)
    print(f"wrote {args.output}: {thick.describe()}")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="PSNR and SSIM against a reference; PIQE, edge sharpness and SNR without one")
    p.add_argument("pred")
    p.add_argument("ref", nargs="?", help="thin reference (without one: the no-reference metrics only)")
    p.add_argument("--protocol", default=PROTOCOLS[0], choices=PROTOCOLS,
                   help="rplhr: CT window [-1024, 2048], slices [5:-5] (default); plain: reference range, all slices")
    Option("axis", RUN_OPTIONS["axis"].rule, "through-plane axis (default: the reference's largest spacing; K for "
           "an isotropic volume)").add_to(p)
    p.add_argument("--no-reference", action="store_true",
                   help="also PIQE and edge sharpness on the planes along the axis, and SNR")
    p.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"),
                   help="intensities mapped to [0, 1] for PIQE and edge sharpness (default: [-1024, 2048] "
                        "for CT, the 0.5-99.5 percentiles otherwise)")
    p.add_argument("--edges", metavar="MASK", help="mask volume whose boundary gives the borders for edge "
                                                  "sharpness (default: the Otsu threshold of each plane)")
    p.add_argument("--signal", metavar="MASK", help="signal region for SNR (default: the Otsu foreground)")
    p.add_argument("--noise", metavar="MASK", help="noise region for SNR (default: the background away from it)")
    p.add_argument("--lpips", metavar="ALEXNET.pth", help="also LPIPS (the lpips package, with torchvision's AlexNet "
                                                         "weights from this file)")
    p.add_argument("--consistency", metavar="THICK", help="also the agreement with the acquired (thick) volume: "
                                                          "it minus the re-thickened prediction, per slice")
    Option("thickness", METHOD_OPTIONS["thickness"].rule, "slice thickness for --consistency (default: the slice "
           "spacing)").add_to(p)
    Option("profile", METHOD_OPTIONS["profile"].rule, "slice profile for --consistency",
           default=DEFAULT_PROFILE[0]).add_to(p)
    p.add_argument("--json", action="store_true")


def _cmd_evaluate(args) -> int:
    from volumetricsr.data.io import read_volume
    from volumetricsr.data.metrics import evaluate
    from volumetricsr.data.quality import no_reference

    pred = read_volume(args.pred)
    masks = {k: read_volume(getattr(args, k)) for k in ("edges", "signal", "noise") if getattr(args, k)}
    for name, mask in masks.items():
        if mask.array.shape != pred.array.shape:
            raise InputError(f"--{name} {getattr(args, name)} is {mask.array.shape[::-1]}, the prediction {pred.array.shape[::-1]}: "
                             "give a mask on the prediction's grid.")
    if ("signal" in masks) != ("noise" in masks):
        raise InputError("--signal and --noise go together (or leave both out for automatic regions).")
    result = evaluate(pred, read_volume(args.ref), args.protocol, args.axis) if args.ref else {}
    if args.lpips and args.ref:
        from volumetricsr.data.metrics import lpips_of

        try:
            result["lpips"] = lpips_of(pred, read_volume(args.ref), args.lpips, args.axis)
        except InputError as exc:
            print(f"LPIPS skipped: {exc}", file=sys.stderr)
    if args.consistency:
        from volumetricsr.compute.consistency import consistency

        result["consistency"] = consistency(pred, read_volume(args.consistency), args.thickness, args.profile).summary()
    if args.no_reference or (not args.ref and not args.consistency):
        regions = (masks["signal"].array > 0, masks["noise"].array > 0) if "signal" in masks else None
        edges = masks["edges"].array if "edges" in masks else None
        result["no_reference"] = no_reference(pred, args.axis, tuple(args.window) if args.window else None,
                                              edges, regions)
    if args.json:
        print(json.dumps(result))
        return 0
    if args.ref:
        print(f"PSNR {result['psnr']:.3f} dB  SSIM {result['ssim']:.4f}  "
              + (f"LPIPS {result['lpips']:.4f}  " if "lpips" in result else "")
              + f"({result['slices']} slices across {result['axis']}, {result['protocol']} protocol)")
    if "consistency" in result:
        c = result["consistency"]
        print(f"consistency with {args.consistency}: RMS {c['rms']:.4g}, max {c['max']:.4g} "
              f"(worst slice {c['worst_slice']} of {c['slices']})")
    if "no_reference" in result:
        q = result["no_reference"]
        for name, o in q["orientations"].items():
            sharp = "n/a" if o["edge_sharpness"] is None else f"{o['edge_sharpness']:.3f} mm^-1"
            print(f"planes {name} ({o['planes']}): PIQE {o['piqe']:.1f} +- {o['piqe_sd']:.1f}  edge sharpness {sharp}")
        s = q["snr"]
        print("SNR n/a (" + s.get("note", "no noise") + ")" if s["snr"] is None else
              f"SNR {s['snr']:.1f} (signal {s['signal']:.1f}, noise SD {s['noise']:.2f})")
    return 0


def _add_info(sub) -> None:
    p = sub.add_parser("info", help="geometry of a volume and the upsampling it would get")
    p.add_argument("input")
    RUN_OPTIONS["spacing"].add_to(p)
    RUN_OPTIONS["axis"].add_to(p)


def _cmd_info(args) -> int:
    from volumetricsr.data.geometry import plan_grid
    from volumetricsr.data.io import read_volume

    volume = read_volume(args.input)
    print(volume.describe())
    print(f"origin {tuple(round(o, 3) for o in volume.origin)}, direction {volume.direction.round(4).tolist()}")
    print(plan_grid(volume, args.spacing, args.axis, force=True).describe())
    return 0


def _parse_train(argv: list[str]) -> argparse.Namespace:
    """``train`` has per-method options (training/cli.py parses them), so it is parsed on its own."""
    try:
        from volumetricsr.app.train_cli import parse
        args = parse(argv)
    except ImportError as exc:        # no PyTorch yet: say so when the command is used
        raise VolumetricSRError(f"Training needs PyTorch, which cannot be imported here ({exc}).")
    args.command = "train"
    return args


def _cmd_train(args) -> int:
    from volumetricsr.app.train_cli import run

    try:
        return run(args)
    except VolumetricSRError as exc:
        if args.progress_json:
            emit_json("error", message=str(exc))
        raise


def _add_export_onnx(sub) -> None:
    p = sub.add_parser("export-onnx", help="export a model to ONNX and check it against torch")
    p.add_argument("--model", required=True, help="model id or card path")
    p.add_argument("output", help="the .onnx file to write")
    p.add_argument("--window", type=int, nargs=3, metavar=("D", "H", "W"),
                   help="input window (default: the card's, else the method's)")
    p.add_argument("--update-card", action="store_true",
                   help="record the file in the card (the file must sit next to the card)")


def _cmd_export_onnx(args) -> int:
    """Every check first (model, method, window, output path), then the export, staged by the writer
    and placed only after ONNX Runtime agreed with torch."""
    import numpy as np
    import torch

    from volumetricsr.common.options import check_options
    from volumetricsr.compute.export import export_onnx
    from volumetricsr.compute.models import find_model, sha256_of
    from volumetricsr.compute.predictors import OnnxPredictor
    from volumetricsr.data.writer import Transaction
    from volumetricsr.methods import get_method

    card = find_model(args.model)
    method = get_method(card.method)
    window = check_options("export-onnx", {"window": METHOD_OPTIONS["window"].rule},
                           {"window": args.window})["window"] if args.window else None
    out = Path(args.output)
    if out.suffix.lower() != ".onnx":
        raise OutputError(f"{out}: name the ONNX file with the suffix .onnx.")
    if args.update_card and out.resolve().parent != card.path.resolve().parent:
        raise OutputError(f"--update-card: {out} is not in the card's folder {card.path.parent}.")
    with Transaction({"ONNX file": out}, {"model card": card.path, "weights": card.weights_path}) as tx:
        net = card.build()
        example, free = method.onnx_example(card, net, window)
        export_onnx(net, tx.path(out), example, free)
        # checked on another size than traced along the free axes: the file really takes any
        checked = [2, *(s + 3 * (a in free) for a, s in enumerate(example) if a > 0)]
        x = torch.from_numpy(np.random.default_rng(0).random(checked, dtype=np.float32))
        with torch.inference_mode():
            expected = net(x)
        diff = float((OnnxPredictor(tx.path(out))(x) - expected).abs().max())
    shape = "x".join(str(s) if a not in free else "any" for a, s in enumerate(example) if a > 1)
    print(f"wrote {out}: input {shape}, max |ONNX Runtime - torch| = {diff:.2e} on random [0, 1] input")
    if args.update_card:
        card.update(onnx=out.name, onnx_window=list(example[2:]), onnx_sha256=sha256_of(out))
        print(f"updated {card.path}")
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the methods on the built-in phantom, score them and write a figure")
    p.add_argument("output", nargs="?", default="volumetricsr-demo", help="folder for the results (created)")
    p.add_argument("--methods", nargs="+", help="default: every method that needs no trained model")
    RUN_OPTIONS["device"].add_to(p)


def _cmd_demo(args) -> int:
    from volumetricsr.app.demo import FACTOR, run_demo

    bar = TqdmProgress("demo")
    try:
        results = run_demo(args.output, args.methods, args.device, progress=bar)
    finally:
        bar.close()
    print(f"Built-in phantom, made {FACTOR}x thick, upsampled back (RPLHR protocol against the thin phantom):")
    print(f"{'method':10s} {'PSNR dB':>8s} {'SSIM':>7s} {'seconds':>8s}")
    for name, r in results.items():
        print(f"{name:10s} {r['psnr']:8.2f} {r['ssim']:7.4f} {r['seconds']:8.3f}")
    print(f"volumes, results.json and comparison.png are in {args.output}/")
    return 0


COMMANDS = {"demo": _cmd_demo, "infer": _cmd_infer, "methods": _cmd_methods, "models": _cmd_models,
            "simulate-thick": _cmd_simulate, "evaluate": _cmd_evaluate, "info": _cmd_info,
            "train": _cmd_train, "export-onnx": _cmd_export_onnx,
            "infer-batch": _cmd_infer_batch}


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="volumetricsr", description="Through-plane super-resolution of CT and MRI.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_demo(sub)
    _add_infer(sub)
    _add_infer_batch(sub)
    p = sub.add_parser("methods", help="list the methods")
    p.add_argument("--json", action="store_true")
    p = sub.add_parser("models", help="list the installed models")
    p.add_argument("--method")
    p.add_argument("--json", action="store_true")
    _add_simulate(sub)
    _add_evaluate(sub)
    _add_info(sub)
    sub.add_parser("train", help="train a method's model (volumetricsr train --method M --help: its options)",
                   add_help=False)
    _add_export_onnx(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _main(argv)


def _main(argv: list[str]) -> int:
    try:
        args = _parse_train(argv[1:]) if argv[:1] == ["train"] else build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except Cancelled as exc:
        print(f"volumetricsr: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("volumetricsr: interrupted; nothing was written.", file=sys.stderr)
        return 130
    except VolumetricSRError as exc:
        print(f"volumetricsr: error: {exc}", file=sys.stderr)
        if "--progress-json" in argv and argv[:1] == ["infer"]:
            emit_json("error", message=str(exc))
        return 2


def main_script(argv=None) -> int:
    """``python VolumetricSRTraining/VolumetricSRTrainingLib/train.py ...`` == ``volumetricsr train ...``."""
    return main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())

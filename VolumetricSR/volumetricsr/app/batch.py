"""Cohort inference: one method over many studies, resumable, with one report.

``INPUTS`` is a folder (its volume files, and its sub-folders as DICOM series), a glob pattern, or a
CSV manifest with a header naming ``input`` and optionally ``output`` (a file name under OUTDIR) and
``options`` (a JSON object of method options for that row; relative paths are relative to the CSV).
The to-do list is built once and sorted; outputs are written atomically (:func:`~.io.write_volume`),
so an output that exists is complete and is skipped: an interrupted run resumes where it stopped.
One failure never stops the rest: it is a row of ``report.csv`` with its one-line message.
``shard=(i, n)`` takes studies ``i, i+n, i+2n, ...`` of the sorted list (job arrays); each shard
writes its own report.

Where the studies run: here, one at a time; ``workers > 1``, in that many local processes, the CPU
cores split between them (:func:`~.threads.configure`) and, on a machine with several GPUs, each
worker on its own GPU (by default one worker per GPU); or ``ray=ADDRESS``, as Ray tasks on a local
instance (``"local"``) or a cluster (``"auto"``, ``ray://host:port``): one GPU per task where the
cluster has GPUs, else a share of the CPUs; Ray retries a task whose worker died. A worker process
reads each model once (:meth:`~.models.ModelCard.state_dict`). On a cluster, the inputs and OUTDIR
must be on storage every node sees.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from volumetricsr.common.errors import InputError, VolumetricSRError
from volumetricsr.data.io import is_volume_file, volume_name
from volumetricsr.data.writer import write_text

REPORT_FIELDS = ("input", "output", "status", "seconds", "input_size", "input_spacing", "output_size",
                 "output_spacing", "consistency_rms", "slice_profile", "device", "error")


@dataclass(frozen=True)
class Study:
    input: str
    output: str                                  # file name under the output folder
    options: dict = field(default_factory=dict)  # this study's method options (over the batch's)


def _from_csv(path: Path) -> list[Study]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    if not rows or "input" not in rows[0]:
        raise InputError(f"Manifest {path} needs a header line with an 'input' column (and optionally "
                         "'output' and 'options').")
    studies = []
    for n, row in enumerate(rows, 2):
        source = Path(row["input"].strip())
        source = source if source.is_absolute() else path.parent / source
        try:
            options = json.loads(row.get("options") or "{}")
        except ValueError as exc:
            raise InputError(f"Manifest {path}, line {n}: options is not a JSON object ({exc}).")
        if not isinstance(options, dict):
            raise InputError(f"Manifest {path}, line {n}: options must be a JSON object, like {{\"seed\": 1}}.")
        studies.append(Study(str(source), (row.get("output") or "").strip() or volume_name(source) + ".nii.gz", options))
    return studies


def manifest(inputs: "str | os.PathLike") -> list[Study]:
    """The studies named by ``inputs`` (a folder, a glob pattern or a CSV file), sorted by input."""
    root = Path(inputs)
    if root.is_file() and root.suffix.lower() == ".csv":
        studies = _from_csv(root)
    else:
        if root.is_dir():
            paths = [p for p in root.iterdir()
                     if p.is_dir() and any(f.is_file() for f in p.iterdir())
                     or is_volume_file(p)]
        else:
            paths = [Path(p) for p in glob.glob(str(inputs))]
        studies = [Study(str(p), volume_name(p) + ".nii.gz") for p in paths]
    if not studies:
        raise InputError(f"No studies in {inputs}: give a folder of volumes or DICOM series folders, a glob "
                         "pattern, or a CSV manifest.")
    studies.sort(key=lambda s: s.input)
    seen: dict[str, str] = {}
    for s in studies:
        if s.output in seen:
            raise InputError(f"{seen[s.output]} and {s.input} would both be written to {s.output}; name the "
                             "outputs in a CSV manifest (column output).")
        seen[s.output] = s.input
    return studies


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with 0 <= i < n."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise InputError(f"--shard {text!r}: give i/n, e.g. 0/4 for the first of four shards.")
    if not 0 <= i < n:
        raise InputError(f"--shard {text}: i must be from 0 to n-1 (0/{max(n, 1)} to {max(n, 1) - 1}/{max(n, 1)}).")
    return i, n


def _describe(volume) -> tuple[str, str]:
    return "x".join(str(n) for n in volume.size), "x".join(f"{s:.4g}" for s in volume.spacing)


def map_output(output: str, name: str) -> str:
    """Where a study's map goes: ``case.nii.gz`` -> ``case_confidence.nii.gz`` (a DICOM folder likewise)."""
    stem = volume_name(output)
    return f"{stem}_{name}{output[len(stem):]}"


def run_study(study: Study, outdir: str, method: str, spacing: Optional[float], options: dict,
              device: str, axis: Optional[str] = None, force: bool = False, enforce_consistency: bool = False,
              maps: tuple = ()) -> dict:
    """One study: read, super-resolve, write (its ``maps`` first, the output last, so that an output
    that exists means a complete study); a report row (failures are rows too, never raised)."""
    from volumetricsr.app.api import super_resolve
    from volumetricsr.data.io import check_writable, read_volume, write_volume

    row = {"input": study.input, "output": study.output, "status": "done", "device": device, "error": ""}
    start = time.perf_counter()
    try:
        target = os.path.join(outdir, study.output)
        targets = {f"{name}_map": os.path.join(outdir, map_output(study.output, name)) for name in maps}
        for path in (target, *targets.values()):
            check_writable(path)
        volume = read_volume(study.input)
        row["input_size"], row["input_spacing"] = _describe(volume)
        results = {}
        out = super_resolve(volume, method, spacing, axis=axis, device=device, force=force,
                            enforce_consistency=enforce_consistency, results=results,
                            **{key: True for key in targets}, **{**options, **study.options})
        for key, path in targets.items():
            write_volume(results[key], path)
        write_volume(out, target)
        row["output_size"], row["output_spacing"] = _describe(out)
        row["consistency_rms"] = round(results["consistency"]["rms"], 4) if "consistency" in results else ""
        found = results.get("slice_profile")
        row["slice_profile"] = f"{found['profile']} {found['thickness']:.3g} mm ({found['source']})" if found else ""
        if device == "cuda":          # which GPU this worker holds
            import torch

            row["device"] = f"cuda:{torch.cuda.current_device()}"
    except (VolumetricSRError, OSError, ValueError, RuntimeError) as exc:
        row.update(status="failed", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _init_worker(threads: int, gpus) -> None:
    """A local worker process: its CPU threads, and its own GPU (from the queue ``gpus``) if any."""
    from volumetricsr.compute.threads import configure

    configure(threads)
    if gpus is not None:
        import torch

        torch.cuda.set_device(gpus.get())


def report_path(outdir: "str | os.PathLike", shard: Optional[tuple[int, int]] = None) -> Path:
    return Path(outdir) / ("report.csv" if shard is None else f"report-shard-{shard[0]}-of-{shard[1]}.csv")


def _write_report(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, REPORT_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def run_batch(studies: list[Study], outdir: "str | os.PathLike", method: str = "bspline",
              spacing: Optional[float] = None, options: Optional[dict] = None, *, axis: Optional[str] = None,
              force: bool = False, enforce_consistency: bool = False, maps: tuple = (),
              workers: Optional[int] = None, device: str = "auto",
              shard: Optional[tuple[int, int]] = None, ray: Optional[str] = None, progress=None) -> list[dict]:
    """Every study of ``studies`` (or of its ``shard``) not yet written under ``outdir``; returns the
    report rows (also in :func:`report_path`), one per study, ``skipped`` for outputs already there.
    ``workers``: studies at once (default: one per GPU here, else 1; on Ray, one per GPU of the cluster,
    else one per node). ``maps``: 'consistency', 'confidence' (the keys of :data:`.api.MAPS`
    without ``_map``), written beside each output."""
    from volumetricsr.app.api import check_request
    from volumetricsr.compute.device import resolve_device
    from volumetricsr.compute.threads import usable_cores

    options = dict(options or {})
    m, _ = check_request(method, spacing, options)
    for s in studies:                         # every row's options, before any work
        check_request(method, spacing, {**options, **s.options})
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    if shard is not None:
        studies = studies[shard[0]::shard[1]]
    if ray is None:
        device = resolve_device(device) if m.uses_device else "cpu"
    rows = {s.input: {"input": s.input, "output": s.output, "status": "skipped", "error": "output exists"}
            for s in studies if (outdir / s.output).exists()}
    todo = [s for s in studies if s.input not in rows]
    path = report_path(outdir, shard)

    def record(row: dict) -> None:
        rows[row["input"]] = row
        _write_report(path, [rows[s.input] for s in studies if s.input in rows])
        if progress:
            progress(len(rows) / max(1, len(studies)), f"{len(rows)}/{len(studies)} studies")

    _write_report(path, list(rows.values()))
    job = (str(outdir), method, spacing, options, device, axis, force, enforce_consistency, tuple(maps))
    if ray is not None:
        _run_on_ray(todo, job, workers, ray, m.uses_device, record)
        return [rows[s.input] for s in studies]
    gpus = _local_gpus() if device == "cuda" else 0
    workers = workers or max(1, gpus)
    if workers <= 1 or len(todo) <= 1:
        for s in todo:
            record(run_study(s, *job))
    else:
        import multiprocessing

        threads = max(1, usable_cores() // workers)
        context = multiprocessing.get_context("spawn")
        queue = None
        if gpus > 1:                 # worker w on GPU w mod gpus
            queue = context.Queue()
            for w in range(workers):
                queue.put(w % gpus)
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                 initargs=(threads, queue)) as pool:
            futures = [pool.submit(run_study, s, *job) for s in todo]
            for s, f in zip(todo, futures):
                try:
                    record(f.result())
                except Exception as exc:        # a worker that died (killed, out of memory)
                    record(_worker_failed(s, exc))
    return [rows[s.input] for s in studies]


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _worker_failed(study: Study, exc: BaseException) -> dict:
    message = str(exc).strip().splitlines()
    return {"input": study.input, "output": study.output, "status": "failed",
            "error": f"worker: {message[0] if message else type(exc).__name__}"}


def _ray_study(study: Study, threads: int, *job) -> dict:
    """One study inside a Ray worker: its share of the CPUs, the GPU Ray assigned (as ``cuda``)."""
    from volumetricsr.compute.threads import configure

    configure(threads)
    return run_study(study, *job)


def _run_on_ray(todo: list[Study], job: tuple, workers: Optional[int], address: str, uses_device: bool,
                record) -> None:
    """``todo`` as Ray tasks, at most ``workers`` at once, each recorded as it finishes."""
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray, which is not installed: pip install 'volumetricsr[cluster]' "
                         "(or pip install ray), or leave out --ray to run here.")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        device = job[4]
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        gpus = int(sum(n.get("GPU", 0) for n in nodes)) if uses_device and device != "cpu" else 0
        if device.startswith("cuda") and not gpus:
            raise InputError(f"--device {device}: the Ray cluster at {address} has no GPUs; use --device auto or cpu.")
        workers = workers or gpus or len(nodes)
        cpus = sum(n.get("CPU", 1) for n in nodes)
        threads = int(max(1, min(cpus // workers, max(n.get("CPU", 1) for n in nodes))))
        remote = ray.remote(max_retries=2, num_gpus=1 if gpus else 0, num_cpus=1 if gpus else threads)(_ray_study)
        job = (*job[:4], "cuda" if gpus else "cpu", *job[5:])
        pending, waiting = {}, list(todo)
        while waiting or pending:
            while waiting and len(pending) < workers:
                study = waiting.pop(0)
                pending[remote.remote(study, 1 if gpus else threads, *job)] = study
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            study = pending.pop(ref)
            try:
                record(ray.get(ref))
            except Exception as exc:            # the task failed on every try (its worker died)
                record(_worker_failed(study, exc))
    finally:
        if started:
            ray.shutdown()

"""Cohort inference: one method over many studies, resumable, with one report.

``INPUTS`` is a folder (its volume files, and its sub-folders as DICOM series), a glob pattern, or a
CSV manifest with a header naming ``input`` and optionally ``output`` (a file name under OUTDIR) and
``options`` (a JSON object of method options for that row; relative paths are relative to the CSV).
The to-do list is built once and sorted; a study's outputs (its result and maps) are staged and
placed together (one :class:`~.writer.Transaction`), so an output that exists is complete and is
skipped: an interrupted run resumes where it stopped. One failure never stops the rest: it is a row
of ``report.csv`` with its one-line message. ``shard=(i, n)`` takes studies ``i, i+n, i+2n, ...`` of
the sorted list (job arrays); each shard writes its own report.

Before any work :func:`check_outputs` refuses, with one line: OUTDIR that is a file or cannot be
written; OUTDIR that is the input folder or inside it (the outputs would land among the inputs and
be read as studies by the next run; a folder that holds the input folder is fine); outputs a glob
INPUTS would match; a manifest output that leaves OUTDIR (``..``, absolute, through a symbolic
link); an output (result, map, report) that is an input or another study's output.

SIGTERM or SIGINT stops the batch: the studies under way unwind (their staging removed; a commit
under way finishes first), workers that do not stop within :data:`STOP_GRACE_S` are killed and
their staging removed, ``report.csv`` lists what finished and marks the rest ``cancelled``, and
:class:`~.errors.Cancelled` is raised (exit 130). A local worker gets SIGTERM when its parent dies
(Linux; elsewhere within half a second), so none writes after the parent is gone.

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
import fnmatch
import glob
import io
import json
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from volumetricsr.common.errors import Cancelled, InputError, OutputError, VolumetricSRError
from volumetricsr.data.io import is_volume_file, volume_files, volume_name
from volumetricsr.data.writer import check_folder, check_paths, remove_stale_staging, write_text

REPORT_FIELDS = ("input", "output", "status", "seconds", "input_size", "input_spacing", "output_size",
                 "output_spacing", "consistency_rms", "slice_profile", "device", "error")
#: Seconds a worker has to stop after SIGTERM before it is killed (its staging then removed by the parent).
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class Study:
    input: str
    output: str                                  # file name under the output folder
    options: dict = field(default_factory=dict)  # this study's method options (over the batch's)
    row: str = ""                                # where a manifest names it ("manifest list.csv, line 3")


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
        output = (row.get("output") or "").strip() or volume_name(source) + ".nii.gz"
        if os.path.isabs(output) or ".." in Path(output).parts:
            raise InputError(f"Manifest {path}, line {n}: output {output} is not under OUTDIR; give a file name "
                             "(or a path inside OUTDIR).")
        studies.append(Study(str(source), output, options, f"manifest {path}, line {n}"))
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


def _describe(frames: list) -> tuple[str, str]:
    """Size (with the frames of a sequence) and spacing, for the report."""
    size = "x".join(str(n) for n in frames[0].size) + (f"x{len(frames)} frames" if len(frames) > 1 else "")
    return size, "x".join(f"{s:.4g}" for s in frames[0].spacing)


def map_output(output: str, name: str) -> str:
    """Where a study's map goes: ``case.nii.gz`` -> ``case_confidence.nii.gz`` (a DICOM folder likewise)."""
    stem = volume_name(output)
    return f"{stem}_{name}{output[len(stem):]}"


def study_outputs(study: Study, outdir: "str | os.PathLike", maps: tuple = ()) -> dict[str, Path]:
    """A study's outputs: ``{"output": result, "consistency map": ..., ...}``, under ``outdir``."""
    outdir = Path(outdir)
    return {"output": outdir / study.output, **{f"{name} map": outdir / map_output(study.output, name)
                                                for name in maps}}


def run_study(study: Study, outdir: str, method: str, spacing: Optional[float], options: dict,
              device: str, axis: Optional[str] = None, force: bool = False, enforce_consistency: bool = False,
              maps: tuple = ()) -> dict:
    """One study: read, super-resolve, write its result and ``maps`` as one transaction (all placed,
    or none); a report row (failures are rows too, never raised; a stop signal is raised)."""
    from volumetricsr.app.api import read_input, super_resolve_frames, write_results
    from volumetricsr.data.io import volume_transaction

    row = {"input": study.input, "output": study.output, "status": "done", "device": device, "error": ""}
    start = time.perf_counter()
    try:
        targets = study_outputs(study, outdir, maps)
        tx = volume_transaction(targets, {"input": study.input})
        try:
            frames = read_input(study.input, targets.values())
            row["input_size"], row["input_spacing"] = _describe(frames)
            results = {}
            out = super_resolve_frames(frames, method, spacing, axis=axis, device=device, force=force,
                                       enforce_consistency=enforce_consistency, results=results,
                                       **{f"{name}_map": True for name in maps}, **{**options, **study.options})
            write_results(out, results, {role.replace(" ", "_"): path for role, path in targets.items()}, tx)
            with _SIGNALS.held():       # a stop waits for the commit: all of the study placed, or none
                tx.commit()
        finally:
            tx.abort()                  # the staging, unless committed
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


class _Stop(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived: the work under way unwinds (its staging removed) and the batch stops."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)


class _Signals:
    """SIGTERM/SIGINT as :class:`_Stop`, raised once in this process's main thread (further signals
    wait for the stop to finish); inside :meth:`held` (a commit, the report) a signal waits for the
    end of the block."""

    def __init__(self) -> None:
        self.holding, self.pending, self.stopping = False, None, False
        self.stopped_by = "SIGINT"          # the signal's name, once one came

    @contextmanager
    def stoppable(self, signums=(signal.SIGTERM, signal.SIGINT)):
        if threading.current_thread() is not threading.main_thread():     # handlers live in the main thread
            yield
            return
        self.pending, self.stopping, self.stopped_by = None, False, "SIGINT"
        old = {s: signal.signal(s, self._handle) for s in signums}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    @contextmanager
    def held(self):
        outer, self.holding = self.holding, True
        try:
            yield
        finally:
            self.holding = outer
            if self.pending is not None and not outer:
                signum, self.pending = self.pending, None
                self._stop(signum)

    def _handle(self, signum, frame) -> None:
        if self.stopping:
            return
        if self.holding:
            self.pending = signum
            return
        self._stop(signum)

    def _stop(self, signum: int) -> None:
        self.stopping, self.stopped_by = True, signal.Signals(signum).name
        raise _Stop(signum)


_SIGNALS = _Signals()


def _init_worker(threads: int, gpus, parent: int) -> None:
    """A local worker process: its CPU threads, and its own GPU (from the queue ``gpus``) if any. It
    leaves Ctrl-C to the parent, which stops it with SIGTERM, and gets SIGTERM when the parent dies."""
    from volumetricsr.compute.threads import configure

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _follow_parent(parent)
    configure(threads)
    if gpus is not None:
        import torch

        torch.cuda.set_device(gpus.get())


def _follow_parent(parent: int) -> None:
    """SIGTERM to this process when ``parent`` dies: PR_SET_PDEATHSIG on Linux, else a thread that
    looks every half second."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))          # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:                               # it died before that
            os._exit(128 + signal.SIGTERM)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def _pool_study(study: Study, *job) -> dict:
    """:func:`run_study` in a local worker. SIGTERM (from the parent, or at its death) unwinds the
    study, which removes its staging, and ends the process: it starts no further study."""
    try:
        with _SIGNALS.stoppable((signal.SIGTERM,)):
            return run_study(study, *job)
    except _Stop:
        os._exit(128 + signal.SIGTERM)


def _end_processes(processes: list) -> None:
    """SIGTERM to each, :data:`STOP_GRACE_S` for all to exit, then SIGKILL to those left."""
    for p in processes:
        p.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for p in processes:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in processes:
        if p.is_alive():
            p.kill()
            p.join(1.0)


def report_path(outdir: "str | os.PathLike", shard: Optional[tuple[int, int]] = None) -> Path:
    return Path(outdir) / ("report.csv" if shard is None else f"report-shard-{shard[0]}-of-{shard[1]}.csv")


def _write_report(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, REPORT_FIELDS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with _SIGNALS.held():                   # a stop waits for the report to be in place
        write_text(path, buffer.getvalue())


def _glob_matches(pattern: str, path: Path) -> bool:
    """Whether ``glob.glob(pattern)`` would list ``path`` (part by part, as glob matches)."""
    want, have = Path(os.path.abspath(pattern)).parts, Path(os.path.abspath(path)).parts
    return len(want) == len(have) and all(fnmatch.fnmatchcase(h, w) for w, h in zip(want, have))


def check_outputs(studies: list[Study], outdir: "str | os.PathLike", maps: tuple = (),
                  source: "str | os.PathLike | None" = None, report: Optional[Path] = None) -> None:
    """Raise :class:`OutputError`, before any work, for what the module's docstring lists: OUTDIR a
    file, the input folder ``source`` or inside it; outputs the glob ``source`` would match; outputs
    out of OUTDIR; an output (every file it writes: results, maps, ``report``) that is an input (the
    same path or file, a companion data file, one inside the other, the CSV ``source``) or another output.
    In linear time: a cohort may have many thousand studies."""
    out = Path(os.path.realpath(outdir))
    if out.exists() and not out.is_dir():
        raise OutputError(f"OUTDIR {outdir} is a file: give a folder for the outputs (a missing one is made).")
    outputs = [("report", report)] if report is not None else []
    for s in studies:
        for role, target in study_outputs(s, outdir, maps).items():
            outputs.append((f"{role} ({s.row or 'of ' + s.input})", target))
            real = Path(os.path.realpath(target.parent))
            if real != out and out not in real.parents:
                raise OutputError(f"Output {s.output} ({s.row or s.input}) leads out of OUTDIR {outdir} "
                                  f"(to {real}); give a path inside OUTDIR.")
    inputs = [("input" + (f" ({s.row})" if s.row else ""), Path(s.input)) for s in studies]
    if source is not None and Path(source).is_dir():
        folder = Path(os.path.realpath(source))
        if out == folder:
            raise OutputError(f"OUTDIR {outdir} is the input folder: the outputs would land among the inputs and "
                              "be read as studies by the next run; give another folder.")
        if folder in out.parents:
            raise OutputError(f"OUTDIR {outdir} is inside the input folder {source}: the next run would read it "
                              f"as a study; give a folder outside {source}.")
    elif source is not None and Path(source).is_file() and Path(source).suffix.lower() == ".csv":
        inputs.append(("manifest", Path(source)))
    check_paths(outputs, inputs, volume_files)
    if source is not None and not Path(source).exists():          # a glob pattern
        for target in (Path(outdir), *(path for _, path in outputs)):
            if _glob_matches(str(source), target):
                raise OutputError(f"OUTDIR {outdir}: the pattern {source} matches {target}, so the next run "
                                  "would read it as a study; give a folder the pattern does not match.")


def _stopped(stop: str, todo: list[Study], rows: dict, outdir: Path, maps: tuple) -> Cancelled:
    """After a stop: staging of killed workers removed, the unfinished studies ``cancelled`` in ``rows``."""
    for folder in {t.parent for s in todo for t in study_outputs(s, outdir, maps).values()}:
        remove_stale_staging(folder)
    for s in todo:
        if s.input not in rows:                 # placed as the stop came (its row lost), else not finished
            placed = (outdir / s.output).exists()
            rows[s.input] = {"input": s.input, "output": s.output, "status": "done" if placed else "cancelled",
                             "error": f"placed as the batch stopped ({stop}); no details" if placed
                             else f"not finished: the batch was stopped ({stop})"}
    done = sum(r["status"] == "done" for r in rows.values())
    cancelled = sum(r["status"] == "cancelled" for r in rows.values())
    return Cancelled(f"stopped by {stop}: {done} done, {cancelled} not finished (nothing of theirs written)")


def run_batch(studies: list[Study], outdir: "str | os.PathLike", method: str = "bspline",
              spacing: Optional[float] = None, options: Optional[dict] = None, *, axis: Optional[str] = None,
              force: bool = False, enforce_consistency: bool = False, maps: tuple = (),
              workers: Optional[int] = None, device: str = "auto",
              shard: Optional[tuple[int, int]] = None, ray: Optional[str] = None, progress=None,
              source: "str | os.PathLike | None" = None) -> list[dict]:
    """Every study of ``studies`` (or of its ``shard``) not yet written under ``outdir``; returns the
    report rows (also in :func:`report_path`), one per study, ``skipped`` for outputs already there.
    ``workers``: studies at once (default: one per GPU here, else 1; on Ray, one per GPU of the cluster,
    else one per node). ``maps``: 'consistency', 'confidence' (the keys of :data:`.api.MAPS`
    without ``_map``), written beside each output. ``source``: the folder, glob or CSV the studies
    come from (:func:`manifest`), for :func:`check_outputs`. SIGTERM/SIGINT: see the module's docstring."""
    from volumetricsr.app.api import check_request
    from volumetricsr.compute.device import resolve_device

    options = dict(options or {})
    m, _ = check_request(method, spacing, options)
    for s in studies:                         # every row's options, before any work
        check_request(method, spacing, {**options, **s.options})
    outdir = Path(outdir)
    path = report_path(outdir, shard)
    check_outputs(studies, outdir, maps, source, path)
    if ray is not None:
        _ray_module()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"Cannot make OUTDIR {outdir}: {exc.strerror or exc}; give a folder you can write to.")
    check_folder(path)
    if shard is not None:
        studies = studies[shard[0]::shard[1]]
    if ray is None:
        device = resolve_device(device) if m.uses_device else "cpu"
    rows = {s.input: {"input": s.input, "output": s.output, "status": "skipped", "error": "output exists"}
            for s in studies if (outdir / s.output).exists()}
    todo = [s for s in studies if s.input not in rows]

    def record(row: dict) -> None:
        rows[row["input"]] = row
        _write_report(path, [rows[s.input] for s in studies if s.input in rows])
        if progress:
            progress(len(rows) / max(1, len(studies)), f"{len(rows)}/{len(studies)} studies")

    job = (str(outdir), method, spacing, options, device, axis, force, enforce_consistency, tuple(maps))
    with _SIGNALS.stoppable():
        try:
            _write_report(path, list(rows.values()))
            if ray is not None:
                _run_on_ray(todo, job, workers, ray, m.uses_device, record)
            else:
                gpus = _local_gpus() if device == "cuda" else 0
                _run_here(todo, job, workers or max(1, gpus), gpus, record)
        except KeyboardInterrupt:              # _Stop, or Ray's KeyboardInterrupt for it
            cancelled = _stopped(_SIGNALS.stopped_by, todo, rows, outdir, maps)
            _write_report(path, [rows[s.input] for s in studies if s.input in rows])
            raise Cancelled(f"{cancelled}; report: {path}") from None
    return [rows[s.input] for s in studies]


def _run_here(todo: list[Study], job: tuple, workers: int, gpus: int, record) -> None:
    """``todo`` in this process, or in ``workers`` local processes (on a stop: :func:`_end_processes`)."""
    if workers <= 1 or len(todo) <= 1:
        for s in todo:
            record(run_study(s, *job))
        return
    import multiprocessing

    from volumetricsr.compute.threads import usable_cores

    threads = max(1, usable_cores() // workers)
    context = multiprocessing.get_context("spawn")
    queue = None
    if gpus > 1:                 # worker w on GPU w mod gpus
        queue = context.Queue()
        for w in range(workers):
            queue.put(w % gpus)
    before = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                               initargs=(threads, queue, os.getpid()))
    try:
        futures = [pool.submit(_pool_study, s, *job) for s in todo]
        for s, f in zip(todo, futures):
            try:
                record(f.result())
            except Exception as exc:        # a worker that died (killed, out of memory)
                record(_worker_failed(s, exc))
    except BaseException:
        _end_processes([p for p in multiprocessing.active_children() if p not in before])
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _local_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _worker_failed(study: Study, exc: BaseException) -> dict:
    message = str(exc).strip().splitlines()
    return {"input": study.input, "output": study.output, "status": "failed",
            "error": f"worker: {message[0] if message else type(exc).__name__}"}


def _ray_study(study: Study, threads: int, *job) -> dict:
    """One study inside a Ray worker: its share of the CPUs, the GPU Ray assigned (as ``cuda``). A
    cancel (Ray raises KeyboardInterrupt through SIGINT's handler) or SIGTERM unwinds it as in a local
    worker; its staging is removed."""
    from volumetricsr.compute.threads import configure

    configure(threads)
    with _SIGNALS.stoppable():
        return run_study(study, *job)


def _ray_module():
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs Ray, which is not installed: pip install 'volumetricsr[cluster]' "
                         "(or pip install ray), or leave out --ray to run here.")
    return ray


def _run_on_ray(todo: list[Study], job: tuple, workers: Optional[int], address: str, uses_device: bool,
                record) -> None:
    """``todo`` as Ray tasks, at most ``workers`` at once, each recorded as it finishes; on a stop,
    the tasks under way are cancelled (:data:`STOP_GRACE_S` to unwind, then their workers killed)."""
    ray = _ray_module()
    started = not ray.is_initialized()
    if started:
        ours = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        if threading.current_thread() is threading.main_thread():      # Ray's SIGTERM handler exits at once
            for s, handler in ours.items():
                signal.signal(s, handler)
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
        try:
            while waiting or pending:
                while waiting and len(pending) < workers:
                    study = waiting.pop(0)
                    pending[remote.remote(study, 1 if gpus else threads, *job)] = study
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)   # a signal is seen between waits
                for ref in ready:
                    study = pending.pop(ref)
                    try:
                        record(ray.get(ref))
                    except Exception as exc:            # the task failed on every try (its worker died)
                        record(_worker_failed(study, exc))
        except BaseException:
            _cancel_ray(ray, list(pending))
            raise
    finally:
        if started:
            ray.shutdown()


def _cancel_ray(ray, refs: list) -> None:
    """Cancel Ray tasks: KeyboardInterrupt in each (it unwinds), :data:`STOP_GRACE_S`, then the
    workers of those left are killed (and waited for, so that their staging can be removed)."""
    for force in (False, True):
        for ref in refs:
            ray.cancel(ref, force=force)
        if refs:
            _, refs = ray.wait(refs, num_returns=len(refs), timeout=STOP_GRACE_S)

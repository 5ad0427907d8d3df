"""A smoke test to run inside a real 3D Slicer, with one PASS/FAIL line per check:

    Slicer --no-main-window --python-script Testing/Python/slicer_smoke.py

(or, with a window, paste ``exec(open(r"PATH/Testing/Python/slicer_smoke.py").read())`` into the
Python console). It loads SampleData's MRHead, makes it 4x thick, runs every method through the
panel's code path (``prepare`` + ``start``, polled as the panel's timer does, with the Qt event loop
running) and through the console API (the blocking ``run``), with enforced consistency and both
maps, times one against the other, cancels a background run, super-resolves and stops a 3-frame
sequence, compares input and result (nothing to show without a main window), starts and stops
a short training run, and closes the scene while the panel runs a method in a child process (so it
ends with an empty scene). Paste its output into a bug report.
"""
from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
import traceback

import numpy as np

#: Per-volume methods, kept short: the point is the code path, not the result.
QUICK = {"selfsr": {"iterations": 30}, "clade": {"iterations": 4}}


def _thick(slicer, factor: int = 4):
    import SampleData
    from VolumetricSRLib import scene

    head = SampleData.SampleDataLogic().downloadMRHead()
    volume = scene.volume_from_node(head)
    thick = volume.with_array(volume.array[::factor].copy(), spacing=(*volume.spacing[:2], volume.spacing[2] * factor))
    return scene.create_output_node(thick, head, "MRHead thick"), head.GetSpacing()[2]


def _poll(slicer, task, timeout: float) -> None:
    """What the panel's QTimer does, with the event loop running between polls."""
    deadline = time.monotonic() + timeout
    while task.poll():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no result within {timeout:.0f} s")
        slicer.app.processEvents()
        time.sleep(0.05)


def check_method(slicer, logic, node, name: str, spacing: float, report) -> None:
    options = dict(QUICK.get(name, {}), force=True)      # MRHead is an MR volume: CT models run anyway
    options.update(enforce_consistency=True, consistency_map=True, confidence_map=True)   # and both maps
    try:
        start = time.perf_counter()
        outcome = []
        job = logic.prepare(node, name, spacing, **options)
        task = logic.start(job, on_done=outcome.append, on_error=lambda e, tb: outcome.append(e))
        _poll(slicer, task, 900)
        panel = time.perf_counter() - start
        if not outcome or isinstance(outcome[0], Exception):
            raise RuntimeError(outcome[0] if outcome else "no outcome")
        start = time.perf_counter()
        results = {}
        blocking = logic.run(node, name, spacing, show=False, results=results, **options)
        console = time.perf_counter() - start
        same = slicer.util.arrayFromVolume(outcome[0]).shape == slicer.util.arrayFromVolume(blocking).shape
        maps = set(job.results.get("map_nodes", {})) == set(results.get("map_nodes", {})) == \
            {"consistency_map", "confidence_map"}
        where = "main thread" if getattr(task, "child", None) is None else "child process"
        report(same and maps, f"{name}: panel path ({where}) {panel:.1f} s, blocking call {console:.1f} s, ratio "
                              f"{panel / max(console, 1e-3):.2f}, consistency RMS after enforcing "
                              f"{job.results.get('consistency', {}).get('rms', float('nan')):.3g}"
                              + ("" if same else "; the two results differ in shape")
                              + ("" if maps else "; the maps are missing"))
    except Exception as exc:
        report(False, f"{name}: {type(exc).__name__}: {exc}")


def check_cancel(slicer, logic, node, report) -> None:
    try:
        outcome = []
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        task = logic.start(logic.prepare(node, "selfsr", iterations=100000),
                           on_done=lambda n: outcome.append("done"), on_cancelled=lambda: outcome.append("cancelled"),
                           on_error=lambda e, tb: outcome.append(str(e)))
        time.sleep(3)
        start = time.perf_counter()
        task.cancel()
        _poll(slicer, task, 60)
        seconds = time.perf_counter() - start
        ok = outcome == ["cancelled"] and slicer.mrmlScene.GetNumberOfNodes() == nodes
        report(ok, f"cancel: {outcome} after {seconds:.1f} s, scene {'unchanged' if ok else 'changed'}")
    except Exception as exc:
        report(False, f"cancel: {type(exc).__name__}: {exc}")


def check_sequence(slicer, logic, node, spacing: float, report) -> None:
    """A 3-frame sequence made from the thick MRHead (each frame brighter), as a 4-D file loads (a
    sequence, its browser, the proxy volume): Apply's path with every frame gives a sequence of
    results in the input's browser, the index values and each frame's geometry kept; a stopped run of
    it leaves no node."""
    try:
        from volumetricsr import available_methods
        from VolumetricSRLib import scene

        volume = scene.volume_from_node(node)
        sequence = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "MRHead cine")
        sequence.SetIndexUnit("ms")
        scratch = slicer.vtkMRMLScalarVolumeNode()
        for t in range(3):
            scene.write_to_node(volume.with_array(volume.array + 10 * t), scratch)
            sequence.SetDataNodeAtValue(scratch, str(40 * t))
        browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "MRHead cine browser")
        browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
        proxy = browser.GetProxyNode(sequence)
        name = "selfsr" if "selfsr" in {m.name for m in available_methods()} else "bspline"
        outcome, start = [], time.perf_counter()
        task = logic.start(logic.prepare(proxy, name, spacing, all_frames=True, **QUICK.get(name, {})),
                           on_done=outcome.append, on_error=lambda e, tb: outcome.append(e))
        _poll(slicer, task, 900)
        seconds = time.perf_counter() - start
        if not outcome or isinstance(outcome[0], Exception):
            raise RuntimeError(outcome[0] if outcome else "no outcome")
        out = outcome[0]
        values = [out.GetNthIndexValue(t) for t in range(out.GetNumberOfDataNodes())] == ["0", "40", "80"]
        geometry = all(np.allclose(scene.ijk_to_ras_of(out.GetNthDataNode(t))[:3, [0, 1, 3]],
                                   scene.ijk_to_ras_of(sequence.GetNthDataNode(t))[:3, [0, 1, 3]])
                       and np.isclose(out.GetNthDataNode(t).GetSpacing()[2], spacing) for t in range(3))
        browsed = browser.IsSynchronizedSequenceNodeID(out.GetID())
        where = "main thread" if getattr(task, "child", None) is None else "child process"
        stopped, ok = "not tried (selfsr is not available)", values and geometry and browsed
        if name == "selfsr":
            nodes, ended = slicer.mrmlScene.GetNumberOfNodes(), []
            task = logic.start(logic.prepare(proxy, "selfsr", all_frames=True, iterations=100000),
                               on_cancelled=lambda: ended.append("cancelled"), on_done=lambda n: ended.append("done"))
            time.sleep(3)
            task.cancel()
            _poll(slicer, task, 60)
            ok = ok and ended == ["cancelled"] and slicer.mrmlScene.GetNumberOfNodes() == nodes
            stopped = "left nothing" if ok else f"ended {ended}, {slicer.mrmlScene.GetNumberOfNodes() - nodes} new nodes"
        report(ok, f"sequence: {name} on 3 frames ({where}) {seconds:.1f} s, index values "
                   f"{'kept' if values else 'lost'}, frame geometry {'right' if geometry else 'wrong'}, "
                   f"{'in' if browsed else 'not in'} the input's browser; a stopped run {stopped}")
    except Exception as exc:
        report(False, f"sequence: {type(exc).__name__}: {exc}")


def check_compare(slicer, logic, node, report) -> None:
    """Compare shows input and result side by side, in linked views, where Slicer has views; changing
    the layout gives the views back the linking they had. Under --no-main-window, where there are no
    views, it returns False and fails nothing."""
    try:
        from VolumetricSRLib import scene

        out = logic.run(node, "linear", show=False)
        layout = slicer.app.layoutManager()
        views = [layout.sliceWidget(v).mrmlSliceCompositeNode() for v in ("Red", "Yellow")] if layout else []
        before = [v.GetLinkedControl() for v in views]
        shown = scene.compare(node, out)
        linked = all(v.GetLinkedControl() for v in views)
        if layout is not None:
            layout.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
        back = [v.GetLinkedControl() for v in views] == before
        report(shown == (layout is not None) and linked and back,
               f"compare: {'shown' if shown else 'nothing to show'} ({'with' if layout else 'without'} a main "
               f"window)" + ("" if linked else "; the views were not linked")
               + ("" if back else "; the views stayed linked after the layout changed"))
    except Exception as exc:
        report(False, f"compare: {type(exc).__name__}: {exc}")


def check_training_stop(slicer, report) -> None:
    try:
        import SampleData
        from volumetricsr import write_volume
        from VolumetricSRLib import scene
        from VolumetricSRTrainingLib.command import TrainingSettings
        from VolumetricSRTrainingLib.logic import slicer_launcher, training_task

        folder = tempfile.mkdtemp(prefix="volumetricsr-smoke-")
        data = os.path.join(folder, "data")
        os.makedirs(data)
        volume = scene.volume_from_node(SampleData.SampleDataLogic().downloadMRHead())
        write_volume(volume, os.path.join(data, "head.nii.gz"))
        arch = '{"channels": 8, "enc_layers": 1, "tab_layers": 1, "dec_layers": 1}'
        settings = TrainingSettings(method="tvsrn", dataPath=data, modelId="smoke-tvsrn", epochs=1000, device="auto",
                                    modelsDir=os.path.join(folder, "models"),
                                    extraArgs=f"--crop 32 --steps-per-epoch 5 --val-every 1000 --arch {shlex.quote(arch)}")
        finished, log = [], []
        run = training_task(settings, launcher=slicer_launcher, on_log=log.append,
                            on_finished=lambda ok, text: finished.append(text)).start()
        deadline = time.monotonic() + 600
        while run.poll() and run.last_event.get("event") != "step" and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.1)
        start = time.perf_counter()
        run.cancel()
        _poll(slicer, run, 300)
        text = finished[0] if finished else "no outcome"
        ok = text.startswith("Stopped at step")
        report(ok, f"training stop: {text} ({time.perf_counter() - start:.1f} s)" + ("" if ok else f" {log[-3:]}"))
    except Exception as exc:
        report(False, f"training stop: {type(exc).__name__}: {exc}")


def _alive(pid) -> bool:
    """Process ``pid`` still exists (POSIX; on Windows the child's closed output says it has ended)."""
    from volumetricsr.data.writer import process_alive

    return pid is not None and os.name != "nt" and process_alive(pid)


def check_close_scene(slicer, node, report) -> None:
    """File > Close Scene while the panel runs a method in a child process: the child ends, its
    temporary folder is removed and no node is made. It empties the scene, so it runs last."""
    try:
        panel = slicer.util.getModuleWidget("VolumetricSR")
        panel.initializeParameterNode()
        p = panel._parameterNode
        p.inputVolume, p.method, p.iterations = node, "selfsr", 100000
        panel.onApply()
        task = panel._task
        child = getattr(task, "child", None)
        if child is None:
            raise RuntimeError("selfsr did not start a child process")
        deadline = time.monotonic() + 300
        while child.child_pid is None and task.poll() and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.05)
        pid, folder = child.child_pid, task.folder
        if pid is None:
            raise RuntimeError("the child process did not start")
        start = time.perf_counter()
        slicer.mrmlScene.Clear(0)
        seconds = time.perf_counter() - start
        deadline = time.monotonic() + 10
        while (child.running() or _alive(pid)) and time.monotonic() < deadline:
            slicer.app.processEvents()
            time.sleep(0.1)
        for _ in range(10):                     # a result arriving late would make a node now
            slicer.app.processEvents()
            time.sleep(0.05)
        ended = not child.running() and not _alive(pid)
        volumes = len(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"))
        ok = ended and not folder.exists() and volumes == 0 and panel._task is None
        report(ok, f"close scene: Clear took {seconds:.1f} s; the child {'ended' if ended else 'still runs'}, "
                   f"its folder {'still exists' if folder.exists() else 'is removed'}, {volumes} volume(s) made")
    except Exception as exc:
        report(False, f"close scene: {type(exc).__name__}: {exc}")


def run_checks(slicer, methods=None, out=print) -> int:
    """Every check; returns the number that failed."""
    import VolumetricSR
    from volumetricsr import available_methods

    failures = []

    def report(ok: bool, text: str) -> None:
        out(f"{'PASS' if ok else 'FAIL'} {text}")
        if not ok:
            failures.append(text)

    out(f"Slicer {slicer.app.majorVersion}.{slicer.app.minorVersion}, Python {sys.version.split()[0]}, "
        f"{sys.platform}")
    try:
        import torch
        out(f"PyTorch {torch.__version__}, CUDA {'available' if torch.cuda.is_available() else 'not available'}")
    except Exception as exc:
        out(f"PyTorch does not import: {exc}")
    logic = VolumetricSR.VolumetricSRLogic()
    try:
        node, thin_spacing = _thick(slicer)
    except Exception:
        report(False, f"loading MRHead: {traceback.format_exc().splitlines()[-1]}")
        return len(failures)
    for name in methods or [m.name for m in available_methods()]:
        check_method(slicer, logic, node, name, thin_spacing, report)
    check_cancel(slicer, logic, node, report)
    check_sequence(slicer, logic, node, thin_spacing, report)
    check_compare(slicer, logic, node, report)
    check_training_stop(slicer, report)
    check_close_scene(slicer, node, report)          # last: it empties the scene
    out(f"{len(failures)} check(s) failed" if failures else "all checks passed")
    return len(failures)


if __name__ == "__main__":
    import slicer

    failed = run_checks(slicer)
    if slicer.app.commandOptions().noMainWindow:
        slicer.util.exit(1 if failed else 0)

"""VolumetricSRTraining glue: trainer command, progress from its events, live loss table, stop and
resume, with a fake trainer script that follows the trainer's contract (VolumetricSRTrainingLib/command.py)
and writes the core's event schema (volumetricsr.common.progress)."""
from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import slicer_standin

slicer = slicer_standin.install()

from VolumetricSRTrainingLib.command import TrainingSettings, build_command  # noqa: E402
from VolumetricSRLib.processtask import progress_fraction  # noqa: E402
from VolumetricSRTrainingLib.history import LossHistory, describe  # noqa: E402
from VolumetricSRTrainingLib.logic import slicer_launcher, training_task  # noqa: E402
from volumetricsr.common.progress import read_event  # noqa: E402
from VolumetricSRTrainingLib.plot import LossPlot  # noqa: E402

FAKE_TRAINER = textwrap.dedent('''
    """Fake trainer: the CLI contract of train.py (VolumetricSRTrainingLib/command.py), no training."""
    import argparse, os, signal, sys, time
    from volumetricsr.common.progress import event_line
    p = argparse.ArgumentParser()
    for a in ("--method", "--data", "--out", "--device", "--models-dir", "--workdir"):
        p.add_argument(a, required=a not in ("--data",))
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--progress-json", action="store_true")
    p.add_argument("--fail", action="store_true")
    p.add_argument("--slow", action="store_true")
    p.add_argument("--stubborn", action="store_true", help="ignore the stop file and SIGTERM")
    p.add_argument("--bad-bytes", action="store_true", help="write a line that is not UTF-8")
    args = p.parse_args()
    stop = os.path.join(args.workdir, "STOP")
    if args.stubborn:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("loading data from", args.data, "resume" if args.resume else "fresh", flush=True)
    print(event_line("start", pid=os.getpid(), models_dir=args.models_dir), flush=True)
    if args.bad_bytes:
        sys.stdout.buffer.write(b"caf\\xe9 \\xff\\xfe not utf-8\\n")
        sys.stdout.flush()
    for epoch in range(1, args.epochs + 1):
        print(event_line("epoch", epoch=epoch, step=epoch * 10, fraction=epoch / args.epochs, loss=1.0 / epoch,
                         val_psnr=30 + epoch), flush=True)
        if os.path.exists(stop) and not args.stubborn:
            print(event_line("stopped", step=epoch * 10, checkpoint="last.pt"), flush=True)
            sys.exit(130)
        if args.fail and epoch == 2:
            print("Traceback: CUDA out of memory", flush=True)
            sys.exit(3)
        if args.slow:
            time.sleep(0.2)
    print("not json {", flush=True)
''')


def alive(pid: int) -> bool:
    """Process ``pid`` runs (a zombie that no parent has reaped yet does not)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except ProcessLookupError:
        return False
    except OSError:          # no /proc (macOS): os.kill said it exists
        return True
    return state != "Z"


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAINER)
    (tmp_path / "data").mkdir()
    slicer_standin.reset()
    return script, TrainingSettings(method="tvsrn", dataPath=str(tmp_path / "data"), modelId="tvsrn-mine", epochs=4,
                                    modelsDir=str(tmp_path / "models"))


def test_command_follows_the_trainer_contract(fake):
    script, settings = fake
    settings.resume = True
    cmd = build_command(settings, python="PythonSlicer", script=script)
    models = settings.modelsDir
    assert cmd == ["PythonSlicer", str(script), "--method", "tvsrn", "--data", settings.dataPath, "--out",
                   "tvsrn-mine", "--models-dir", models, "--workdir", str(Path(models) / "runs" / "tvsrn-mine"),
                   "--epochs", "4", "--device", "auto", "--progress-json", "--resume"]
    cli = build_command(settings, python="py", script=None)
    assert cli[:2] == ["py", "-c"] and cli[3] == "train" and "--progress-json" in cli


def test_settings_are_checked(tmp_path):
    bad = TrainingSettings(dataPath=str(tmp_path / "missing"), modelId="bad name/..", epochs=0)
    problems = " ".join(bad.problems())
    assert "does not exist" in problems and "model name" in problems
    assert "epochs (--epochs) must be a whole number from 1 to " in problems      # the trainer's own rule
    with pytest.raises(ValueError):
        training_task(bad)


def test_events_progress_and_text():
    """Progress is the schema's ``fraction``, and only that: other spellings are not read."""
    assert read_event('{"event": "step", "step": 5, "total": 20, "fraction": 0.25, "loss": 0.5}')["loss"] == 0.5
    assert read_event('{"step": 5, "loss": 0.5}') is None          # not an event of the schema: shown as text
    assert read_event("epoch 1 done") is None and read_event("{broken") is None and read_event("[1]") is None
    assert progress_fraction({"event": "epoch", "epoch": 1, "step": 30, "fraction": 0.25}) == 0.25
    assert progress_fraction({"event": "step", "step": 30, "total_steps": 120}) is None
    assert progress_fraction({"event": "note", "fraction": "half"}) is None
    assert progress_fraction({"event": "done", "fraction": 1.7}) == 1.0
    assert progress_fraction({"loss": 1.0}) is None
    assert describe({"epoch": 2, "step": 20, "loss": 0.01234, "val_psnr": 38.214}) == \
        "epoch 2, step 20, loss 0.01234, val PSNR 38.21 dB"
    h = LossHistory()
    assert not h.add({"message": "x"}) and h.add({"step": 1, "loss": float("nan"), "val_psnr": 30})
    assert h.loss == [] and h.val_psnr == [(1.0, 30.0)]


def test_run_reads_progress_draws_the_curve_and_finishes(fake):
    script, settings = fake
    status, logs, finished = [], [], []
    plot = LossPlot("tvsrn-mine")
    run = training_task(settings, plot=plot, python=sys.executable, script=script,
                        on_status=lambda f, t: status.append((f, t)), on_log=logs.append,
                        on_finished=lambda ok, text: finished.append((ok, text))).start()
    run.wait(30)
    assert finished == [(True, "Model tvsrn-mine trained; it is listed in the VolumetricSR module's model selector.")]
    assert [f for f, _ in status] == [None, 0.25, 0.5, 0.75, 1.0]
    assert status[-1][1] == "epoch 4, step 40, loss 0.25, val PSNR 34.00 dB"
    assert logs[0].startswith("loading data from") and logs[-1] == "not json {"
    table = plot.table
    assert list(table.columns["step"]) == [10, 20, 30, 40] and table.columns["loss"][1] == 0.5
    assert slicer.modules.plots.logic().shown[-1] == plot.chart.GetID()
    assert plot.series.GetID() in plot.chart.series_ids


def test_failure_is_reported_with_the_exit_code(fake):
    script, settings = fake
    finished, history = [], LossHistory()
    run = training_task(settings, history=history, python=sys.executable, script=script,
                        on_finished=lambda ok, t: finished.append((ok, t)))
    run.child.args.append("--fail")
    run.start().wait(30)
    assert finished == [(False, "Training failed (exit code 3); see the log above.")]
    assert history.loss == [(10.0, 1.0), (20.0, 0.5)]


def _start_slow(settings, script, *extra, **callbacks):
    """A long fake run through Slicer's launcher (stand-in), once it has reported two records."""
    settings.epochs = 500
    status = []
    run = training_task(settings, python=sys.executable, script=script, launcher=slicer_launcher,
                        on_status=lambda f, t: status.append(t), **callbacks)
    run.child.args += ["--slow", *extra]
    run.start()
    while run.poll() and len(status) < 2:
        time.sleep(0.01)
    return run, status


def test_stop_writes_the_stop_file_through_the_launcher_and_offers_resume(fake):
    """Slicer's launcher forwards no signals: a Stop that only terminated it left the trainer running."""
    script, settings = fake
    finished = []
    run, status = _start_slow(settings, script, on_finished=lambda ok, t: finished.append((ok, t)))
    pid = run.child.child_pid
    assert pid and pid != run.child.process.pid          # the real trainer, the launcher's child
    run.cancel()
    run.wait(30)
    assert finished[0][0] is False and finished[0][1].startswith("Stopped at step ") and "Resume" in finished[0][1]
    assert "checkpoint was saved" in finished[0][1] and len(status) < 500
    assert not alive(pid) and not (settings.workdir() / "STOP").exists()
    assert slicer.util.calls[0][0] == "launchConsoleProcess"


def test_a_trainer_that_does_not_stop_is_killed_and_the_message_says_no_checkpoint(fake):
    script, settings = fake
    finished = []
    run, _ = _start_slow(settings, script, "--stubborn", on_finished=lambda ok, t: finished.append((ok, t)))
    pid = run.child.child_pid
    run.cancel(grace_seconds=0.5)
    run.wait(30)
    assert finished[0][0] is False and "killed: no checkpoint was saved" in finished[0][1]
    time.sleep(0.2)
    assert not alive(pid), "the real trainer is still running"


def test_closing_the_module_leaves_no_trainer_running(fake):
    script, settings = fake
    run, _ = _start_slow(settings, script, "--stubborn")
    pid = run.child.child_pid
    run.close(timeout=0.5)
    time.sleep(0.2)
    assert not alive(pid) and not run.child.running()


def test_output_that_is_not_utf8_is_shown_and_reading_goes_on(fake):
    script, settings = fake
    logs, finished, history = [], [], LossHistory()
    run = training_task(settings, history=history, python=sys.executable, script=script, launcher=slicer_launcher,
                        on_log=logs.append, on_finished=lambda ok, t: finished.append(ok))
    run.child.args.append("--bad-bytes")
    run.start().wait(30)
    assert finished == [True] and any(line.startswith("caf\ufffd") for line in logs)
    assert history.loss[-1] == (40.0, 0.25)                  # every record after it arrived


def test_the_trainer_is_told_the_models_folder_set_inside_slicer(fake, monkeypatch, tmp_path):
    """launchConsoleProcess starts the trainer in Slicer's startup environment: a VOLUMETRICSR_MODELS
    set in Slicer since then would be lost, so the command names the folder."""
    script, settings = fake
    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(tmp_path / "chosen"))       # set inside Slicer, at run time
    settings.modelsDir = ""
    run = training_task(settings, python=sys.executable, script=script, launcher=slicer_launcher)
    records, deliver = [], run.on_event
    run.on_event = lambda e: records.append(e) or deliver(e)
    run.start().wait(30)
    starts = [r for r in records if r.get("event") == "start"]
    assert starts and starts[0]["models_dir"] == str(tmp_path / "chosen")


def test_device_index_goes_to_cuda_visible_devices(fake):
    from VolumetricSRTrainingLib.command import environment

    script, settings = fake
    settings.device, settings.extraArgs = "cuda:1", "--crop 64 --arch '{\"channels\": 8}'"
    cmd = build_command(settings, python="py", script=script)
    assert cmd[cmd.index("--device") + 1] == "cuda" and cmd[-4:] == ["--crop", "64", "--arch", '{"channels": 8}']
    assert environment(settings)["CUDA_VISIBLE_DEVICES"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in environment(TrainingSettings(device="cpu"))


def test_resume_needs_no_data(fake):
    script, settings = fake
    resume = TrainingSettings(method="tvsrn", modelId="tvsrn-mine", resume=True)
    assert resume.problems() == []
    assert "--data" not in build_command(resume, python="py", script=script)
    assert TrainingSettings(method="tvsrn", modelId="m").problems()      # a fresh run needs data


def test_trainer_events_are_described():
    assert describe({"event": "step", "step": 5, "total": 20, "fraction": 0.25, "loss": 0.5, "eta": 75.0}) == \
        "step 5, loss 0.5, about 1 min 15 s left"
    assert progress_fraction({"event": "step", "step": 5, "total": 20, "fraction": 0.25}) == 0.25
    assert describe({"event": "stopped", "step": 7}) == "stopped, checkpoint saved, step 7"
    assert describe({"event": "model", "id": "tvsrn-mine"}) == "model tvsrn-mine written"


TRAIN_PY = slicer_standin.REPO / "VolumetricSRTraining" / "VolumetricSRTrainingLib" / "train.py"


@pytest.mark.skipif(not TRAIN_PY.is_file(), reason="VolumetricSRTraining/VolumetricSRTrainingLib/train.py is not there yet")
def test_real_trainer_end_to_end(tmp_path, monkeypatch):
    """The panel's glue drives the real train.py for one tiny step; the model then runs from a node."""
    from conftest import make_ct_volume, make_volume
    from test_slicer_scene import add_node
    from volumetricsr import write_volume
    from VolumetricSRLib.logic import SuperResolutionLogic
    from VolumetricSRLib.modelstore import model_choices

    slicer_standin.reset()
    data, models = tmp_path / "data", tmp_path / "models"
    data.mkdir()
    for i in range(2):
        v = make_volume(size_ijk=(40, 40, 41), spacing=(0.8, 0.8, 1.0), seed=i)
        write_volume(v.with_array((v.array * 5).astype("int16")), data / f"case{i}.nii.gz")
    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(models))
    settings = TrainingSettings(method="tvsrn", dataPath=str(data), modelId="tvsrn-tiny", epochs=1, device="cpu",
                                extraArgs="--max-steps 1 --crop 32 --val-crop 32 --threads 1 "
                                          "--arch '{\"channels\": 8, \"enc_layers\": 1, \"tab_layers\": 1, \"dec_layers\": 1}'")
    finished, logs, history, plot = [], [], LossHistory(), LossPlot("tvsrn-tiny")
    run = training_task(settings, history=history, plot=plot, python=sys.executable, script=TRAIN_PY,
                        on_log=logs.append, on_finished=lambda ok, t: finished.append(ok)).start()
    run.wait(120)
    assert finished == [True], "\n".join(logs[-20:])
    assert history.loss and plot.table.columns["loss"].size == len(history.loss)
    assert run.last_event.get("event") == "model"
    assert "tvsrn-tiny" in [i for i, _ in model_choices("tvsrn")]     # beside the shipped models

    thick = make_ct_volume(size_ijk=(24, 20, 5), spacing=(0.8, 0.8, 5.0), seed=3)
    node = add_node(thick.with_array(thick.array.astype("int16")), name="thick")
    out = SuperResolutionLogic().run(node, "tvsrn", 1.0, device="cpu", model="tvsrn-tiny")
    assert slicer.util.arrayFromVolume(out).shape == (21, 20, 24)
    assert np.allclose(out.ijk_to_ras[:3, 2], node.ijk_to_ras[:3, 2] / 5)


def test_the_ct_guided_method_trains_from_the_module_with_a_ct_and_mri_folder(tmp_path):
    """One data folder in the panel: for ctguided it holds ct/ and mri/ (the trainer's --data layout)."""
    from volumetricsr.methods.ctguided.task import CTGuidedTask
    from volumetricsr.app.train_cli import parse

    for d in ("ct", "mri"):
        (tmp_path / d).mkdir()
    command = build_command(TrainingSettings("ctguided", str(tmp_path), "ctg", 1, "cpu"), script=None)
    config = CTGuidedTask.config_from_args(parse(command[command.index("train") + 1:]))
    assert (config["ct"], config["mri"]) == (str(tmp_path / "ct"), str(tmp_path / "mri"))

"""The training core: one loop for every method, exact resume, the task contract, lazy data, the CLI."""
import io
import json
import os

import numpy as np
import pytest
import torch

from test_training import NORM, TINY_ARCH, thin_ct, thin_folder  # noqa: F401  (thin_folder: a fixture)
from volumetricsr import InputError, write_volume
from volumetricsr.app.cli import main as cli_main
from volumetricsr.methods.selfsr.method import BUDGETS
from volumetricsr.methods.selfsr.task import SelfSRTask
from volumetricsr.training.samplers import PatchSampler
from volumetricsr.compute.networks.row_upsampler import RowUpsampler
from volumetricsr.training import checkpoint as ckpt
from volumetricsr.training.pairs import CachedPair, discover, load_pair, open_pair
from volumetricsr.training.history import History
from volumetricsr.training.loop import Loop, optimize
from volumetricsr.training.tasks import Task, WarmupCosine
from volumetricsr.methods.tvsrn.task import TVSRNTask
from volumetricsr.training.trainer import STOPPED, Trainer


def train_args(tmp_path, out, *extra):
    return ["train", "--out", out, "--models-dir", str(tmp_path / "models"), "--workdir", str(tmp_path / out), *extra]


def tvsrn_args(thin_folder):
    return ["--method", "tvsrn", "--data", str(thin_folder), "--crop", "16", "--steps-per-epoch", "2",
            "--max-steps", "6", "--warmup", "2", "--device", "cpu", "--arch", json.dumps(TINY_ARCH)]


def test_stop_file_then_resume_alone_is_bit_for_bit_an_uninterrupted_run(thin_folder, tmp_path, monkeypatch):
    assert cli_main(train_args(tmp_path, "straight", *tvsrn_args(thin_folder))) == 0

    step = TVSRNTask.train_step

    def stop_after_step_3(self, n, rng):      # the GUI's Stop: WORKDIR/STOP appears during step 3
        out = step(self, n, rng)
        if n == 2:
            (tmp_path / "cut" / "STOP").touch()
        return out

    monkeypatch.setattr(TVSRNTask, "train_step", stop_after_step_3)
    assert cli_main(train_args(tmp_path, "cut", *tvsrn_args(thin_folder))) == STOPPED
    monkeypatch.setattr(TVSRNTask, "train_step", step)
    assert ckpt.load(tmp_path / "cut" / "checkpoints" / "last.pt")["step"] == 3
    torch.manual_seed(1234)                    # resuming must not depend on the fresh process's random state
    np.random.seed(99)
    assert cli_main(train_args(tmp_path, "cut", "--resume")) == 0     # nothing else: settings come from the run

    a = ckpt.load(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = ckpt.load(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 6
    for group in ("modules", "optimizers"):
        for name, state in a["task"][group].items():
            flat_a, flat_b = _tensors(state), _tensors(b["task"][group][name])
            assert flat_a.keys() == flat_b.keys()
            for k in flat_a:
                assert torch.equal(flat_a[k], flat_b[k]), f"{group}.{name}.{k}"
    rows_a, rows_b = (History(tmp_path / run / "log.jsonl").rows() for run in ("straight", "cut"))
    assert [r["step"] for r in rows_b] == list(range(1, 7))      # the stopped run's log, continued once
    assert [(r["lr"], r["loss"]) for r in rows_a] == [(r["lr"], r["loss"]) for r in rows_b]
    weights = [torch.load(tmp_path / "models" / f"{m}.pt", weights_only=True) for m in ("straight", "cut")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def _tensors(state, prefix=""):
    out = {}
    for k, v in (state.items() if isinstance(state, dict) else enumerate(state)):
        if isinstance(v, torch.Tensor):
            out[f"{prefix}{k}"] = v
        elif isinstance(v, (dict, list)):
            out.update(_tensors(v, f"{prefix}{k}."))
    return out


def test_resume_refuses_changed_data_and_keeps_the_horizon(thin_folder, tmp_path):
    args = tvsrn_args(thin_folder)
    args[args.index("--max-steps") + 1] = "2"
    assert cli_main(train_args(tmp_path, "run", *args)) == 0
    config = ckpt.load(tmp_path / "run" / "checkpoints" / "last.pt")["config"]
    assert (config["total_steps"], config["steps_per_epoch"], config["val_every"]) == (2, 2, 1)
    write_volume(thin_ct(5), thin_folder / "case2.nii.gz")          # a case added after the start
    with pytest.raises(InputError, match=r"training data changed.*\+case2"):
        _resume(tmp_path, "run")
    assert cli_main(train_args(tmp_path, "run", "--resume", "--max-steps", "3")) == 2   # said in one line


def _resume(tmp_path, out):
    from volumetricsr.app.train_cli import parse, run

    return run(parse(train_args(tmp_path, out, "--resume")[1:]))


def test_schedule_keeps_its_horizon_through_a_state_dict():
    def make(total):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return opt, WarmupCosine(opt, total, warmup=2)

    opt, sched = make(10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        if len(lrs) == 4:
            saved, saved_opt = sched.state_dict(), opt.state_dict()
    opt2, sched2 = make(1000)                 # a resumed run whose command line implies another horizon
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved)
    again = []
    for _ in range(6):
        again.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert again == pytest.approx(lrs[4:]) and sched2.total_steps == 10
    assert lrs[0] == 0.5 and lrs[1] == 1.0 and lrs[-1] < 0.05


class ToyGAN(Task):
    """Two networks, alternating steps, a GradScaler, two stages: the contract a GAN or a staged method needs."""

    method = "toy"
    final_stage = "adversarial"

    def __init__(self, switch=3):
        super().__init__({}, "cpu")
        torch.manual_seed(0)
        self.g, self.d = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
        self.opt_g = torch.optim.Adam(self.g.parameters(), 1e-2)
        self.opt_d = torch.optim.Adam(self.d.parameters(), 1e-2)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=8.0, growth_interval=1)
        self.switch, self.steps_seen, self.scores = switch, [], iter([0.1, 0.9, 0.2, 0.5, 0.3, 0.4])

    def stage(self, step):
        return "pretrain" if step < self.switch else "adversarial"

    def modules(self):
        return {"g": self.g, "d": self.d}

    def optimizers(self):
        return {"g": self.opt_g, "d": self.opt_d}

    def extras(self):
        return {"scaler": self.scaler}

    def train_step(self, step, rng):
        self.steps_seen.append((step, self.stage(step)))
        x = torch.from_numpy(rng.normal(size=(4, 2)).astype(np.float32))
        opt = self.opt_d if self.stage(step) == "adversarial" and step % 2 else self.opt_g
        loss = (self.d(self.g(x)) ** 2).mean()
        optimize(loss, opt, grad_clip=1.0, scaler=self.scaler)
        return {"loss": float(loss.detach())}

    def validate(self, cancel=None):
        return {"val_psnr": next(self.scores)}


def test_task_contract_several_networks_stages_extras_and_best_of_the_final_stage(tmp_path):
    task = ToyGAN()
    trainer = Trainer(task, tmp_path, total_steps=6, steps_per_epoch=1, config={}, stream=open(os.devnull, "w"))
    assert trainer.run() == 0
    assert task.steps_seen == [(0, "pretrain"), (1, "pretrain"), (2, "pretrain"), (3, "adversarial"),
                               (4, "adversarial"), (5, "adversarial")]
    assert [r["stage"] for r in trainer.history] == ["pretrain"] * 3 + ["adversarial"] * 3
    # validation scores 0.1 0.9 0.2 | 0.5 0.3 0.4: the best of the final stage is step 4 (0.5), not 0.9
    assert trainer.result == {"metric": "val_psnr", "value": 0.5, "step": 4}
    assert ckpt.load(trainer.best_path)["step"] == 4
    assert trainer.loop.best["pretrain"]["value"] == 0.9

    state = task.state_dict()                                    # extra state is saved and restored
    fresh = ToyGAN()
    fresh.load_state_dict(state)
    assert fresh.scaler.get_scale() == task.scaler.get_scale() == 8.0 * 2 ** 6
    for a, b in zip([*task.g.parameters(), *task.d.parameters()], [*fresh.g.parameters(), *fresh.d.parameters()]):
        assert torch.equal(a, b)
    assert fresh.opt_d.state_dict()["state"].keys() == task.opt_d.state_dict()["state"].keys()


def test_a_loss_that_is_not_finite_stops_the_run_before_any_checkpoint_holds_it(tmp_path):
    from volumetricsr import TrainingError

    task = ToyGAN()
    step = task.train_step
    task.train_step = lambda n, rng: {"loss": float("nan")} if n == 4 else step(n, rng)
    trainer = Trainer(task, tmp_path, total_steps=6, steps_per_epoch=1, config={}, stream=open(os.devnull, "w"))
    with pytest.raises(TrainingError, match=r"loss became nan at step 5 \(stage adversarial\): the run diverged"):
        trainer.run()
    saved = ckpt.load(trainer.last_path)
    assert saved["step"] == 4 and all(np.isfinite(r["loss"]) for r in trainer.history)


def test_stage_switch_survives_a_resume(tmp_path):
    quiet = open(os.devnull, "w")
    first = ToyGAN()
    trainer = Trainer(first, tmp_path, total_steps=6, steps_per_epoch=1, config={}, stream=quiet)
    trainer.loop.should_stop = lambda: trainer.step == 1     # asked during the second step: stops after it
    assert trainer.run() == STOPPED
    second = ToyGAN()
    second.scores = iter([0.2, 0.5, 0.3, 0.4])
    resumed = Trainer(second, tmp_path, total_steps=6, steps_per_epoch=1, config={}, stream=quiet)
    assert resumed.run(resume=True) == 0
    assert second.steps_seen == [(2, "pretrain"), (3, "adversarial"), (4, "adversarial"), (5, "adversarial")]


def test_tvsrn_and_selfsr_task_states_round_trip(thin_folder):
    config = json.loads(json.dumps(TVSRNTask.defaults))
    config["arch"].update(TINY_ARCH)
    config.update(crop=16, warmup=2, total_steps=4, data=str(thin_folder))
    rng = np.random.default_rng(0)
    slices = rng.random((3, 40, 40)).astype(np.float32)
    tasks = [lambda: TVSRNTask.from_config(config, "cpu"),
             lambda: SelfSRTask(RowUpsampler(4, 4, 1, 2), PatchSampler(slices, 4, np.array([1.0]), 40, 40, 16),
                                BUDGETS["fast"], 5, "cpu")]
    for make in tasks:
        torch.manual_seed(0)
        task = make()
        for n in range(2):
            task.train_step(n, rng)
        torch.manual_seed(1)
        fresh = make()
        fresh.load_state_dict(task.state_dict())
        a, b = _tensors(task.state_dict()), _tensors(fresh.state_dict())
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert fresh.schedulers()["sched"].state_dict()["last_epoch"] == 2
        s1, s2 = np.random.default_rng(7), np.random.default_rng(7)
        assert task.train_step(2, s1) == fresh.train_step(2, s2)        # and they continue identically


def test_cached_pairs_are_memory_mapped_equal_and_keyed_by_the_file(thin_folder, tmp_path):
    ds = discover(thin_folder)
    case = ds.train[0]
    in_ram = load_pair(case, 5, NORM)
    cached = open_pair(case, 5, NORM, tmp_path / "cache")
    assert isinstance(cached, CachedPair) and isinstance(cached.thin, np.memmap)
    np.testing.assert_array_equal(cached.thin, in_ram.thin)
    np.testing.assert_array_equal(cached.thick, in_ram.thick)
    assert open_pair(case, 5, NORM, tmp_path / "cache").folder == cached.folder          # prepared once
    write_volume(thin_ct(9), case.thin)                                                 # the file changes
    assert open_pair(case, 5, NORM, tmp_path / "cache").folder != cached.folder


def test_slab_split_validates_on_the_end_of_every_case(thin_folder):
    ds = discover(thin_folder, 0.2, "slab")
    assert [c.name for c in ds.train] == ["case0", "case1"]
    assert [c.name for c in ds.val] == ["case0-slab", "case1-slab"]
    assert ds.train[0].slab == (0.0, 0.8) and ds.val[1].slab == (0.8, 1.0)


def test_train_help_shows_the_methods_own_options(capsys):
    with pytest.raises(SystemExit):
        cli_main(["train", "--method", "tvsrn", "--help"])
    own = capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    common = capsys.readouterr().out
    assert "--crop" in own and "--fit-base" in own and "tvsrn options" in own
    assert "--crop" not in common and "--out" in common and "--method" in common


def test_loop_without_files_runs_selfsr_style_and_cancels():
    task = ToyGAN(switch=0)
    events = []
    loop = Loop(task, 10, steps_per_epoch=5, on_event=lambda n, f: events.append(n))
    loop.should_stop = lambda: loop.step == 6      # asked during the 7th step: stops after it
    loop.run()
    assert loop.step == 7 and loop.cancel.cancelled and events.count("epoch") == 1


def test_training_without_matplotlib_writes_the_log_and_says_curves_were_skipped(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)        # import matplotlib -> ImportError
    stream = io.StringIO()
    trainer = Trainer(ToyGAN(), tmp_path, total_steps=2, steps_per_epoch=1, config={}, stream=stream)
    assert trainer.run() == 0
    assert len(trainer.history) == 2 and not (tmp_path / "curves.png").exists()
    assert stream.getvalue().count("curves.png skipped") == 1


def test_the_log_is_appended_its_summary_stays_small_and_a_resume_cuts_it_back(tmp_path):
    log = History(tmp_path / "log.jsonl", points=50)
    rows = [{"step": n, "loss": float(n % 7), **({"val_psnr": float(n)} if n % 100 == 0 else {})}
            for n in range(1, 5001)]
    for start in range(0, 5000, 100):
        log.append(rows[start:start + 100])
    assert log.rows() == rows
    assert len(log.bins) < 100 and log.width >= 64                     # 5000 steps in under 100 points
    assert len(log.bins) * log.width + len(log.open) == 5000
    assert abs(np.mean([b["loss"] for b in log.bins]) - 3.0) < 0.1       # bin means keep the mean
    assert [r["step"] for r in log.val] == list(range(100, 5001, 100))   # every validation value kept
    size_at_3000 = len("".join(json.dumps(r) + "\n" for r in rows[:3000]).encode())
    resumed = History(tmp_path / "log.jsonl", points=50)
    assert resumed.restore(size_at_3000) is None and resumed.rows() == rows[:3000]
    assert "shorter than the checkpoint expects" in History(tmp_path / "log.jsonl").restore(10**9)


def test_a_new_run_in_the_same_folder_starts_a_new_log(tmp_path):
    quiet = open(os.devnull, "w")
    for steps in (4, 2):
        trainer = Trainer(ToyGAN(), tmp_path, total_steps=steps, steps_per_epoch=1, config={}, stream=quiet)
        assert trainer.run() == 0
    assert [r["step"] for r in History(tmp_path / "log.jsonl").rows()] == [1, 2]


def test_a_stop_file_during_validation_stops_the_run_with_a_checkpoint(tmp_path):
    task = ToyGAN()
    trainer = Trainer(task, tmp_path, total_steps=6, steps_per_epoch=2, config={}, stream=open(os.devnull, "w"))

    def long_validation(cancel=None):              # the GUI's Stop arrives while it validates
        trainer.stop_path.touch()
        cancel.raise_if_cancelled()
        return {"val_psnr": 1.0}

    task.validate = long_validation
    assert trainer.run() == STOPPED
    assert ckpt.load(trainer.last_path)["step"] == 2 and not trainer.stop_path.exists()

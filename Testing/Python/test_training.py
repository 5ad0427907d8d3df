"""Training: data layouts, crops, the trainer (checkpoints, resume, logs), the train command and script."""
import io
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import REPO, make_ct_volume, make_volume
from volumetricsr import InputError, super_resolve, write_volume
from volumetricsr.app.cli import main as cli_main
from volumetricsr.data.normalization import Normalization
from volumetricsr.data.simulate import simulate_thick
from volumetricsr.training import checkpoint as ckpt
from volumetricsr.training.pairs import Pair, discover, load_pair, random_crop
from volumetricsr.methods.tvsrn.task import TVSRN_DEFAULTS, TVSRNTask
from volumetricsr.training.trainer import STOPPED, Trainer

TINY_ARCH = {"channels": 4, "heads": 2, "window": 4, "group": 4, "tab_window": [2, 4], "enc_layers": 1,
             "tab_layers": 2, "dec_layers": 2}
NORM = Normalization.from_dict(TVSRN_DEFAULTS["normalization"])


def thin_ct(seed=0, n=26, rows=16, cols=16, origin=(0.0, 0.0, 0.0)):
    v = make_volume(size_ijk=(cols, rows, n), spacing=(0.8, 0.8, 1.0), origin=origin, seed=seed)
    return v.with_array((v.array * 8).astype(np.int16))


@pytest.fixture
def thin_folder(tmp_path):
    folder = tmp_path / "thin"
    folder.mkdir()
    for i in range(2):
        write_volume(thin_ct(i), folder / f"case{i}.nii.gz")
    return folder


def test_rplhr_layout_and_real_pairs(tmp_path):
    for split, seeds in (("train", (0, 1)), ("val", (2,))):
        for s in seeds:
            thin = thin_ct(s)
            for sub, vol in (("1mm", thin), ("5mm", simulate_thick(thin, 5))):
                (tmp_path / split / sub).mkdir(parents=True, exist_ok=True)
                write_volume(vol, tmp_path / split / sub / f"p{s}.nii.gz")
    ds = discover(tmp_path)
    assert ds.layout == "rplhr" and [c.name for c in ds.train] == ["p0", "p1"] and [c.name for c in ds.val] == ["p2"]
    assert ds.describe()["pairs"] == "real"
    real = load_pair(ds.train[0], 5, NORM)
    pseudo = load_pair(type(ds.train[0])("p0", ds.train[0].thin), 5, NORM)
    assert real.thick.shape == (6, 16, 16) and real.thin.shape == (26, 16, 16)
    np.testing.assert_allclose(real.thick, pseudo.thick, atol=1e-3)   # the same slices, read vs simulated


def test_pair_list_offsets_splits_and_pseudo(tmp_path):
    thin = thin_ct(0)
    thick = simulate_thick(thin, 5)
    shifted = thick.with_array(thick.array[1:], origin=(0.0, 0.0, 5.0))     # starts at thin slice 5
    write_volume(thin, tmp_path / "thin.nii.gz")
    write_volume(shifted, tmp_path / "thick.nii.gz")
    write_volume(thin_ct(1), tmp_path / "other.nii.gz")
    (tmp_path / "pairs.csv").write_text("thin,thick,split\nthin.nii.gz,thick.nii.gz,train\nother.nii.gz,,val\n")
    ds = discover(tmp_path / "pairs.csv")
    assert [c.pseudo for c in ds.train + ds.val] == [False, True]
    assert ds.describe()["pairs"] == "mixed"
    pair = load_pair(ds.train[0], 5, NORM)
    assert pair.thick.shape[0] == 5 and pair.thin.shape[0] == 21
    thin01 = NORM.forward(thin.array.astype(np.float32), -1024, 2048)
    np.testing.assert_array_equal(pair.thin, thin01[5:26])
    with pytest.raises(InputError, match="not the model's x4"):
        load_pair(ds.train[0], 4, NORM)


def test_single_thin_volume_is_split_by_slab(tmp_path):
    write_volume(thin_ct(0, n=51), tmp_path / "only.nii.gz")
    ds = discover(tmp_path / "only.nii.gz", val_fraction=0.3)
    train, val = load_pair(ds.train[0], 5, NORM), load_pair(ds.val[0], 5, NORM)
    assert ds.describe()["pairs"] == "pseudo"
    assert train.thick.shape[0] + val.thick.shape[0] == 11 and val.thick.shape[0] == 3


def test_random_crops_stay_aligned():
    rng = np.random.default_rng(0)
    thin = rng.random((31, 20, 24), dtype=np.float32)
    pair = Pair("x", thin[::5].copy(), thin, 5)
    flips = 0
    for _ in range(20):
        thick, t = random_crop(pair, rng, 4, 12)
        assert thick.shape == (4, 12, 12) and t.shape == (16, 12, 12)
        np.testing.assert_array_equal(thick, t[::5])
        flips += not any(np.array_equal(t, thin[z:z + 16, y:y + 12, x:x + 12])
                         for z in range(0, 16, 5) for y in range(9) for x in range(13))
    assert 0 < flips < 20


def test_foreground_crops_contain_the_body():
    """Crops centred on foreground pixels: every crop overlaps a small bright square in a dark field."""
    rng = np.random.default_rng(1)
    thin = np.zeros((16, 64, 64), np.float32)
    thin[:, 40:44, 8:12] = 0.8
    pair = Pair("x", thin[::5].copy(), thin, 5)
    hits = [random_crop(pair, rng, 4, 16, flip=False, foreground=0.5)[0].max() > 0.5 for _ in range(20)]
    anywhere = [random_crop(pair, rng, 4, 16, flip=False)[0].max() > 0.5 for _ in range(20)]
    assert all(hits) and not all(anywhere)


def _task(data_folder, total_steps=3, **settings):
    config = json.loads(json.dumps(TVSRN_DEFAULTS))
    config["arch"].update(TINY_ARCH)
    config.update(crop=16, warmup=2, total_steps=total_steps)
    config["arch"].update(settings.pop("arch", {}))
    config.update(settings)
    return TVSRNTask(config, "cpu", discover(data_folder)), config


def test_fitted_base_fits_the_training_pairs_better_than_bspline(thin_folder):
    """--fit-base: the linear base starts at the least-squares map, so its squared error on the
    training windows is below the B-spline start's."""
    plain, _ = _task(thin_folder, arch={"base": "bspline"}, fit_base=False)
    fitted, _ = _task(thin_folder, arch={"base": "bspline"}, fit_base=True)
    assert not torch.equal(plain.net.base_weights, fitted.net.base_weights)
    pair = fitted.train_pairs[0]
    windows = np.stack([pair.thick[k:k + 4] for k in range(pair.thick.shape[0] - 3)])      # (n, 4, h, w)
    targets = np.stack([pair.thin[5 * k:5 * k + 16] for k in range(pair.thick.shape[0] - 3)])
    errors = [np.square(np.einsum("dt,ndhw->nthw", task.net.base_weights.detach().numpy(), windows) - targets).mean()
              for task in (plain, fitted)]
    assert errors[1] < errors[0]
    with pytest.raises(InputError, match="linear base"):
        _task(thin_folder, arch={"base": None}, fit_base=True)


def test_interrupted_run_resumes_to_the_same_weights(thin_folder, tmp_path):
    torch.manual_seed(0)
    task, config = _task(thin_folder)
    quiet = io.StringIO()
    straight = Trainer(task, tmp_path / "a", total_steps=3, steps_per_epoch=2, config=config, stream=quiet)
    assert straight.run() == 0

    torch.manual_seed(0)
    task, config = _task(thin_folder)
    first = Trainer(task, tmp_path / "b", total_steps=3, steps_per_epoch=2, config=config, stream=quiet)
    step = task.train_step

    def step_then_stop(n, rng):   # a GUI asks to stop (STOP file) during the first step
        out = step(n, rng)
        first.stop_path.touch()
        return out

    task.train_step = step_then_stop
    assert first.run() == STOPPED
    assert ckpt.load(first.last_path)["step"] == 1 and not first.stop_path.exists()

    torch.manual_seed(123)   # resuming must not depend on the fresh process's random state
    task, config = _task(thin_folder)
    second = Trainer(task, tmp_path / "b", total_steps=3, steps_per_epoch=2, config=config, stream=quiet)
    assert second.run(resume=True) == 0
    assert second.step == 3 and [r["step"] for r in second.history] == [1, 2, 3]
    for k, v in straight.task.net.state_dict().items():
        torch.testing.assert_close(second.task.net.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    assert (tmp_path / "b" / "log.jsonl").read_text().count("\n") == 3
    assert (tmp_path / "b" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert second.best_path.is_file() and "val_psnr" in second.history[-1]


def test_train_script_stops_on_sigterm_then_resumes_and_the_model_runs(thin_folder, tmp_path, monkeypatch):
    models = tmp_path / "models"
    args = ["--method", "tvsrn", "--out", "tiny-run", "--models-dir", str(models), "--crop", "16",
            "--steps-per-epoch", "2", "--device", "cpu", "--progress-json"]
    proc = subprocess.Popen([sys.executable, str(REPO / "VolumetricSRTraining" / "VolumetricSRTrainingLib" / "train.py"), *args,
                             "--data", str(thin_folder), "--max-steps", "100000", "--arch", json.dumps(TINY_ARCH)],
                            stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "step":
            proc.send_signal(signal.SIGTERM)
            break
    events += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == STOPPED
    assert events[0]["event"] == "start" and events[-1]["event"] == "stopped"
    stopped_at = events[-1]["step"]
    assert ckpt.load(models / "runs" / "tiny-run" / "checkpoints" / "last.pt")["step"] == stopped_at >= 1

    assert cli_main(["train", *args, "--resume", "--max-steps", str(stopped_at + 1)]) == 0
    assert ckpt.load(models / "runs" / "tiny-run" / "checkpoints" / "last.pt")["step"] == stopped_at + 1
    card = json.loads((models / "tiny-run.json").read_text())
    assert card["training_data"]["pairs"] == "pseudo" and "pseudo-pairs" in card["training_data"]["note"]
    assert card["architecture"]["args"]["channels"] == 4 and "val_psnr" in card["metrics"]
    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(models))
    vol = make_ct_volume(size_ijk=(16, 16, 6), spacing=(0.8, 0.8, 4.0))
    out = super_resolve(vol, "tvsrn", 0.8, model="tiny-run", device="cpu")
    assert out.array.shape == (26, 16, 16) and np.isfinite(out.array).all()


def test_bf16_autocast_training_step(thin_folder, monkeypatch):
    import volumetricsr.methods.tvsrn.task as tasks

    monkeypatch.setattr(tasks, "native_bf16", lambda device: True)
    task, config = _task(thin_folder, amp=True)
    assert task.amp
    out = task.train_step(0, np.random.default_rng(0))
    assert np.isfinite(out["loss"]) and task.net.mask_token.grad is not None
    monkeypatch.setattr(tasks, "native_bf16", lambda device: False)    # emulated bf16: many times slower
    with pytest.warns(UserWarning, match="no native bf16"):
        task, config = _task(thin_folder, amp=True)
    assert not task.amp


def test_train_command_reports_bad_input_as_json(tmp_path, capsys):
    code = cli_main(["train", "--method", "tvsrn", "--data", str(tmp_path / "missing"), "--out", "x",
                     "--models-dir", str(tmp_path), "--progress-json"])
    assert code == 2
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["event"] == "error"


@pytest.mark.realdata
def test_real_thin_chest_ct_makes_aligned_pseudo_pairs(data_dir):
    thin_path = data_dir / "chest_ct_1p25mm_ricord_a.nii.gz"
    if not thin_path.is_file():
        pytest.skip("chest_ct_1p25mm_ricord_a.nii.gz is absent")
    ds = discover(thin_path, val_fraction=0.2)
    train, val = (load_pair(c, 5, NORM) for c in (ds.train[0], ds.val[0]))
    for pair in (train, val):
        n = pair.thick.shape[0]
        assert pair.thin.shape == ((n - 1) * 5 + 1, 512, 512) and pair.thick.shape[1:] == (512, 512)
        assert 0 <= pair.thin.min() and pair.thin.max() <= 1 and pair.thin.std() > 0.05
        # a thick slice is a slice-profile average centred on its thin slice: close to it, not equal
        err = np.abs(pair.thick - pair.thin[::5]).mean()
        assert 0 < err < 0.02
    assert train.thick.shape[0] + val.thick.shape[0] == 51     # 255 thin slices -> 51 thick, split by slab

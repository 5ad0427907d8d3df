"""CLADE: demodulated convolutions, the gradient-mapping loss, vectorised patch stitching, the
alternating GAN step on the training core with exact resume, and the method end to end."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from volumetricsr import super_resolve
from volumetricsr.compute import engine
from volumetricsr.compute.engine import sliding_window_inference
from volumetricsr.methods.clade import task as clade_task
from volumetricsr.methods.clade.data import PlanePatches
from volumetricsr.methods.clade.losses import ImagePool, gmap_loss
from volumetricsr.methods.clade.task import CladeTask
from volumetricsr.compute.networks.clade import DemodConv2d, Generator, PatchDiscriminator
from volumetricsr.data.phantom import make_phantom
from volumetricsr.data.simulate import simulate_thick
from volumetricsr.training.trainer import STOPPED, Trainer

CONFIG = {"features": 4, "blocks": 2, "norm": "demod", "lr": 2e-4, "batch_size": 3, "weights": (1.0, 1.0, 10.0)}


def test_demodulated_kernels_have_unit_norm_and_batches_do_not_mix():
    torch.manual_seed(0)
    conv = DemodConv2d(3, 5, 3, padding=1, padding_mode="reflect")
    with torch.no_grad():
        conv.weight.mul_(torch.arange(1, 6).view(5, 1, 1, 1) * 7.0)     # wildly different scales
    norms = conv.demodulated().pow(2).sum(dim=(1, 2, 3)).sqrt()
    torch.testing.assert_close(norms, torch.ones(5))
    x = torch.randn(4, 3, 8, 8)
    together = conv(x)
    alone = torch.cat([conv(x[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone)
    scaled = DemodConv2d(3, 5, 3, padding=1, padding_mode="reflect")
    scaled.load_state_dict(conv.state_dict())
    with torch.no_grad():
        scaled.weight.mul_(10.0)
    torch.testing.assert_close(scaled(x), together)           # the weights' scale no longer matters


def test_generators_and_discriminator_shapes():
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    for norm in ("demod", "instance"):
        for residual in (True, False):
            y = Generator(8, 2, norm, residual)(x)
            assert y.shape == x.shape and y.abs().max() <= 1
    assert PatchDiscriminator(8)(x).shape == (2, 1, 2, 2)


def test_gradient_map_loss_on_a_known_edge():
    w = 16
    step = torch.zeros(1, 1, 10, w)
    step[..., w // 2:] = 1.0
    # Sobel across a unit step: 1+2+1 = 4 in the two columns beside it, 0 elsewhere; both channels averaged
    assert float(gmap_loss(step, torch.zeros_like(step))) == pytest.approx(2 * 10 * 4 / (2 * 10 * w))
    assert float(gmap_loss(step + 0.3, step)) == pytest.approx(0.0, abs=1e-7)       # offsets have no gradient
    blurred = F.avg_pool2d(F.pad(step, (1, 1, 0, 0), mode="replicate"), (1, 3), stride=1)
    assert float(gmap_loss(blurred, step)) > 0.05


@pytest.mark.parametrize("shape,window,stride,blend", [
    ((3, 40, 40), (32, 1, 32), (8, 1, 8), "uniform"),      # strides that divide
    ((37, 4, 50), (32, 1, 32), (6, 1, 6), "uniform"),      # and that do not (a flush last window)
    ((33, 45, 3), (32, 32, 1), (12, 5, 1), "gaussian"),
    ((2, 64, 45), (1, 32, 32), (1, 32, 7), "uniform")])
def test_vectorised_plane_path_equals_the_general_engine(monkeypatch, shape, window, stride, blend):
    torch.manual_seed(1)
    volume = torch.rand(1, *shape)
    flat = window.index(1)

    def net(b):                      # depends on the position inside the window and on the whole window
        ramp = torch.linspace(0, 1, b.shape[-1] if flat != 2 else b.shape[-2])
        ramp = ramp if flat != 2 else ramp[:, None, None]
        return b * ramp + b.mean(dim=(2, 3, 4), keepdim=True)

    calls = []
    fast = sliding_window_inference(volume, lambda b: calls.append(len(b)) or net(b), window, stride=stride,
                                    blend=blend, batch_size=50)
    assert max(calls) <= 50
    monkeypatch.setattr(engine, "VECTORISE_FROM", 10**9)
    general = sliding_window_inference(volume, net, window, stride=stride, blend=blend, batch_size=7)
    torch.testing.assert_close(fast, general, rtol=1e-5, atol=1e-5)


def test_vectorised_path_halves_its_batch_when_memory_runs_out():
    volume = torch.rand(1, 4, 1, 80)
    sizes = []

    def net(b):
        sizes.append(len(b))
        if len(b) > 8:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return b * 2

    out = sliding_window_inference(volume, net, (1, 1, 8), stride=(1, 1, 1), blend="uniform", batch_size=64)
    torch.testing.assert_close(out, volume * 2)
    assert sizes[:4] == [64, 32, 16, 8]


def test_generator_takes_any_image_size():
    g = Generator(8, 1)
    assert g(torch.zeros(2, 1, 37, 30)).shape == (2, 1, 37, 30)


def _sampler(seed=0):
    rng = np.random.default_rng(seed)
    slices = np.tanh(rng.normal(size=(3, 36, 40))).astype(np.float32)
    iso = np.tanh(rng.normal(size=(33, 36, 40))).astype(np.float32)
    return PlanePatches([slices], [iso])


def test_generator_and_discriminator_steps_alternate(monkeypatch):
    torch.manual_seed(0)
    task = CladeTask(CONFIG, _sampler())
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in task.modules().items()}
    calls = []
    real = clade_task.optimize

    def spy(loss, opt, *a, **k):
        calls.append(("g" if opt is task.opt_g else "d",
                      all(p.grad is None for p in [*task.d_x.parameters(), *task.d_y.parameters()])))
        real(loss, opt, *a, **k)

    monkeypatch.setattr(clade_task, "optimize", spy)
    row = task.train_step(0, np.random.default_rng(0))
    assert [c[0] for c in calls] == ["g", "d"]
    assert calls[0][1], "the generator step must not backpropagate into the discriminators"
    for k, m in task.modules().items():
        assert any(not torch.equal(a, b) for a, b in zip(before[k], m.parameters())), f"{k} did not move"
    assert all(p.requires_grad for p in task.d_x.parameters())
    assert {"loss", "loss_d", "loss_adv", "loss_cycle", "loss_gmap"} <= set(row)
    assert len(task.pool_x.images) == CONFIG["batch_size"]


def test_image_pool_round_trips():
    pool, rng = ImagePool(4), np.random.default_rng(0)
    for _ in range(3):
        pool.query(torch.rand(3, 1, 2, 2), rng)
    fresh = ImagePool()
    fresh.load_state_dict(pool.state_dict())
    assert fresh.size == 4 and all(torch.equal(a, b) for a, b in zip(fresh.images, pool.images))


def test_a_gan_run_resumes_exactly(tmp_path):
    quiet = open(os.devnull, "w")

    def task():
        torch.manual_seed(0)
        return CladeTask(CONFIG, _sampler())

    straight = task()
    assert Trainer(straight, tmp_path / "a", total_steps=4, steps_per_epoch=1, config={}, stream=quiet).run() == 0
    first = task()
    trainer = Trainer(first, tmp_path / "b", total_steps=4, steps_per_epoch=1, config={}, stream=quiet)
    trainer.loop.should_stop = lambda: trainer.step == 2
    assert trainer.run() == STOPPED
    second = task()
    torch.manual_seed(77)
    assert Trainer(second, tmp_path / "b", total_steps=4, steps_per_epoch=1, config={}, stream=quiet).run(resume=True) == 0
    for name, module in straight.modules().items():
        for a, b in zip(module.state_dict().values(), second.modules()[name].state_dict().values()):
            assert torch.equal(a, b), name
    assert all(torch.equal(a, b) for a, b in zip(straight.pool_y.images, second.pool_y.images))


@pytest.mark.parametrize("stride", [0, 16])
def test_the_method_end_to_end_keeps_geometry_and_metal(stride):
    thin = make_phantom(size=(48, 40, 41))
    thick = simulate_thick(thin, 5)
    array = thick.array.astype(np.float32)
    array[3, 18:21, 20:23] = 12618
    results = {}
    out = super_resolve(thick.with_array(array), "clade", 1.0, device="cpu", iterations=2, stride=stride,
                        batch_size=2, results=results)
    assert out.array.shape == thin.array.shape and out.same_grid(thin)
    assert out.array[15].max() == pytest.approx(12618, rel=0.01)
    assert results["training"]["modality"] == "CT" and results["training"]["iterations"] == 2


def test_the_papers_plain_generator_is_an_option_per_volume():
    """``residual=False`` (``--plain-generator``) trains the paper's generator mapping: after one step
    it is far from the interpolation, where the residual default starts at it."""
    from volumetricsr.app.cli import _method_request, build_parser

    thick = simulate_thick(make_phantom(size=(40, 32, 33)), 4)
    bspline = super_resolve(thick, "bspline", 1.0).array
    change = {}
    for residual in (True, False):
        results = {}
        out = super_resolve(thick, "clade", 1.0, device="cpu", iterations=1, batch_size=2, residual=residual,
                            results=results)
        assert results["training"]["config"]["residual"] is residual
        change[residual] = np.abs(out.array - bspline).mean() / np.ptp(bspline)
    assert change[True] < 0.05 and change[False] > 0.5     # of the intensity range
    args = build_parser().parse_args(["infer", "a.nii", "b.nii", "--method", "clade", "--plain-generator"])
    assert _method_request(args)[1] == {"residual": False}


def test_experimental_methods_are_marked_and_left_out_of_the_demo():
    from volumetricsr.app.demo import default_methods
    from volumetricsr.methods import get_method

    assert get_method("clade").info()["experimental"] and "clade" not in default_methods()
    assert "selfsr" in default_methods() and not get_method("selfsr").experimental


def test_train_a_reusable_model_then_infer_with_it(tmp_path, capsys):
    """``train --method clade`` over several volumes (pseudo-thick from thin ones): checkpoints, a
    sample image per epoch, a card with the slice spacing; ``infer --model`` then runs without training."""
    import json

    from volumetricsr.app.cli import main
    from volumetricsr.data.io import read_volume, write_volume
    from volumetricsr.compute.models import ModelCard

    (tmp_path / "data").mkdir()
    for k, size in enumerate([(40, 36, 40), (44, 40, 38)]):
        write_volume(make_phantom(size=size, seed=k), tmp_path / "data" / f"thin{k}.nii.gz")
    code = main(["train", "--method", "clade", "--data", str(tmp_path / "data"), "--simulate-spacing", "5",
                 "--out", "clade-test", "--models-dir", str(tmp_path / "models"), "--max-steps", "4",
                 "--steps-per-epoch", "2", "--features", "4", "--blocks", "1", "--batch-size", "2", "--progress-json"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events].count("epoch") == 2
    workdir = tmp_path / "models" / "runs" / "clade-test"
    assert sorted(p.name for p in (workdir / "samples").iterdir()) == ["epoch_0001.png", "epoch_0002.png"]
    card = ModelCard.load(tmp_path / "models" / "clade-test.json")
    assert card.method == "clade" and card.modality == "CT" and card.training_spacing() == (5.0, 5.0)
    assert card.architecture["args"] == {"features": 4, "blocks": 1, "norm": "demod", "residual": True}

    thin = make_phantom(size=(48, 40, 41), seed=5)
    thick = simulate_thick(thin, 5)
    write_volume(thick, tmp_path / "thick.nii.gz")
    assert main(["infer", str(tmp_path / "thick.nii.gz"), str(tmp_path / "sr.nii.gz"), "--method", "clade",
                 "--model", str(card.path), "--stride", "16", "--quiet"]) == 0
    out = read_volume(tmp_path / "sr.nii.gz")
    assert out.same_grid(thin)
    # the saved generator, applied by hand to the interpolated input, gives the same volume
    results = {}
    again = super_resolve(thick, "clade", 1.0, device="cpu", model=str(card.path), stride=16, results=results)
    assert "training" not in results
    np.testing.assert_allclose(again.array, out.array, atol=1e-3)


@pytest.mark.parametrize("planes", [1, 2])
def test_patches_come_from_the_acquired_slices_and_the_planes_along_the_slices(planes):
    """High-resolution patches lie in one acquired slice; low-resolution ones in a plane containing
    the through-plane axis: across rows only with ``planes=1``, across rows or columns with 2."""
    z, r, c = np.meshgrid(np.arange(40), np.arange(36), np.arange(38), indexing="ij")
    slices = np.broadcast_to(np.arange(5, dtype=np.float32)[:, None, None], (5, 36, 38))
    sampler = PlanePatches([slices], [(1000 * r + c).astype(np.float32)], planes)
    x, y = sampler.batch(64, np.random.default_rng(0))
    assert x.shape == y.shape == (64, 1, 32, 32)
    assert all(len(torch.unique(p)) == 1 for p in y)                       # one slice each
    rows = (x // 1000).reshape(64, -1)
    one_row = torch.tensor([len(torch.unique(p)) == 1 for p in rows])       # plane across rows: one row index
    assert one_row.all() if planes == 1 else 0 < int(one_row.sum()) < 64

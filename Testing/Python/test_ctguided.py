"""The CT-guided MRI method: SRNet (RDN), CITNet losses, the three stages, resume, the model, inference."""
import copy
import os

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from volumetricsr import InputError, Volume, super_resolve, write_volume
from volumetricsr.app.cli import main
from volumetricsr.common.errors import ModelError
from volumetricsr.methods.ctguided.data import mr_kernel
from volumetricsr.methods.ctguided.losses import citnet_losses, crop4, degrade
from volumetricsr.methods.ctguided.task import CTGUIDED_DEFAULTS, CTGuidedTask
from volumetricsr.compute.models import ModelCard
from volumetricsr.compute.networks.munit import CITNet
from volumetricsr.compute.networks.rdn import RDN
from volumetricsr.compute.perceptual import VGG16Features, feature_extractor, load_vgg16
from volumetricsr.training import checkpoint as ckpt
from volumetricsr.training.history import History
from volumetricsr.training.trainer import STOPPED, Trainer
from volumetricsr.methods.ctguided.data import LowResMR

TINY = {"sr": {"features": 8, "growth": 4, "blocks": 1, "layers": 2},
        "citnet": {"dim": 4, "res": 1, "attribute": 8, "mlp": 8}, "discriminator": {"dim": 4, "scales": 1},
        "stage_iterations": 2, "batch_size": 2, "patch": 32, "val_patches": 4}


def blobs(shape, seed=0):
    rng = np.random.default_rng(seed)
    return np.tanh(gaussian_filter(rng.standard_normal(shape), 2) * 20).astype(np.float32)


def tiny_task(**changes):
    config = copy.deepcopy(CTGUIDED_DEFAULTS)
    config.update(copy.deepcopy(TINY), **changes)
    mr = LowResMR("mr", blobs((10, 36, 34), 1), 4.0, 1.0)
    return CTGuidedTask(config, [blobs((34, 36, 33))], [mr])


# ----------------------------------------------------------------------------- networks

@pytest.mark.parametrize("factor", [2, 3, 4, 5, 6])
def test_rdn_adds_factor_rows_per_row_and_starts_as_linear_interpolation(factor):
    net = RDN(factor, features=8, growth=4, blocks=2, layers=2)
    x = torch.rand(2, 1, 7, 11)
    out = net(x)
    assert out.shape == (2, 1, 6 * factor + 1, 11)
    torch.testing.assert_close(out[:, :, ::factor], x)          # acquired rows stay where they were
    linear = torch.nn.functional.interpolate(x, size=out.shape[-2:], mode="bilinear", align_corners=True)
    torch.testing.assert_close(out, linear)
    torch.nn.init.normal_(net.out.weight)                        # trained: more than an interpolation
    assert not torch.allclose(net(x), linear)


def test_attribute_codes_come_from_the_standard_normal_prior_and_the_run_rng():
    cit = CITNet(dim=4, res=1, attribute=8, mlp=8)
    codes = cit.sample_attribute(20000, np.random.default_rng(3))
    assert codes.shape == (20000, 8) and codes.dtype == torch.float32
    assert abs(float(codes.mean())) < 0.02 and abs(float(codes.std()) - 1) < 0.02
    assert abs(float(torch.corrcoef(codes.T)[0, 1])) < 0.03        # independent components
    assert torch.equal(codes[:5], cit.sample_attribute(5, np.random.default_rng(3)))


def test_citnet_shapes_and_multiscale_discriminator():
    from volumetricsr.compute.networks.munit import MultiScaleDiscriminator

    cit = CITNet(dim=4, res=1, attribute=8, mlp=8)
    x = torch.rand(3, 1, 20, 16) * 2 - 1
    c, a = cit.content_x(x), cit.attribute_x(x)
    assert c.shape == (3, 16, 5, 4) and a.shape == (3, 8)
    y = cit.gen_y(c, a)
    assert y.shape == x.shape and y.abs().max() <= 1
    assert [s.shape[-2:] for s in MultiScaleDiscriminator(dim=4, scales=2)(torch.rand(1, 1, 64, 64))] == \
        [(4, 4), (2, 2)]


# ----------------------------------------------------------------------------- losses

def test_degradation_blurs_along_rows_and_keeps_every_kth():
    kernel = torch.from_numpy(mr_kernel("gaussian", 4.0, 4).astype(np.float32))
    ramp = torch.arange(25.0).view(1, 1, 25, 1).expand(1, 1, 25, 5)
    low = degrade(ramp, kernel, 4)
    assert low.shape == (1, 1, 7, 5)
    half = len(kernel) // 2                       # away from the ends, a symmetric blur keeps a ramp
    inner = [k for k in range(7) if half <= 4 * k <= 24 - half]
    torch.testing.assert_close(low[0, 0, inner, 0], 4 * torch.tensor(inner, dtype=torch.float32))
    spike = torch.zeros(1, 1, 41, 1)
    spike[0, 0, 20] = 1
    np.testing.assert_allclose(degrade(spike, kernel, 1)[0, 0, 20 - half:21 + half, 0].numpy(), kernel.numpy(),
                               atol=1e-6)                            # the row profile is the slice profile


class Identity:
    """A CITNet stand-in whose encoders and generators are exact: content = image, attribute = 0."""

    def __init__(self, shift=0.0):
        self.shift = shift
        self.content_x = self.content_y = lambda x: x
        self.attribute_x = self.attribute_y = lambda x: torch.zeros(x.shape[0], 8)
        self.gen_x = lambda c, a: c + self.shift
        self.gen_y = lambda c, a: c


def test_each_citnet_loss_on_tiny_tensors():
    x, y = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    a_x, a_y = torch.randn(2, 8), torch.randn(2, 8)
    phi = feature_extractor()[0]
    losses, x_fake, y_fake = citnet_losses(Identity(), x, y, a_x, a_y, phi)
    assert torch.equal(x_fake, y) and torch.equal(y_fake, x)        # translations: the other domain's content
    assert float(losses["self"]) == 0 and float(losses["cycle"]) == 0 and float(losses["percep"]) == 0
    # latent: contents come back exactly; the encoders return 0 for the prior's codes
    assert float(losses["latent"]) == pytest.approx(float(a_x.abs().mean() + a_y.abs().mean()), rel=1e-6)
    shifted, x_fake, _ = citnet_losses(Identity(shift=0.5), x, y, a_x, a_y, phi)
    assert float(shifted["self"]) == pytest.approx(0.5)              # |G_X(E(x)) - x| = 0.5; G_Y exact
    assert float(shifted["cycle"]) == pytest.approx(0.5 + 0.5, rel=1e-5)   # both cycles pass G_X once
    assert float(shifted["percep"]) == pytest.approx(0.0, abs=1e-6)   # a constant shift has no edges
    assert float(shifted["latent"]) > float(losses["latent"])


def test_edge_pyramid_ignores_polarity_and_offset_but_sees_blur():
    phi = feature_extractor()[0]
    step = torch.zeros(1, 1, 16, 16)
    step[..., 8:] = 1
    from volumetricsr.compute.perceptual import perceptual_loss

    assert float(perceptual_loss(phi, step, 1 - step)) < 1e-9               # bone bright in CT, dark in T1
    assert float(perceptual_loss(phi, step, step + 0.3)) < 1e-9
    blurred = torch.from_numpy(gaussian_filter(step.numpy(), (0, 0, 0, 1.5)))
    assert float(perceptual_loss(phi, step, blurred)) > 1e-3


def test_lsgan_scores():
    from volumetricsr.training.losses import lsgan

    assert float(lsgan([torch.ones(2, 1, 3, 3), torch.ones(1, 1, 2, 2)], True)) == 0
    assert float(lsgan([torch.ones(2, 1, 3, 3)], False)) == 1
    assert float(lsgan([torch.zeros(4), torch.zeros(2)], True)) == 2      # summed over scales


# ----------------------------------------------------------------------------- perceptual weights

def test_vgg16_weights_load_by_hash_and_are_refused_when_it_is_wrong(tmp_path):
    from volumetricsr.compute.models import sha256_of

    state = {f"features.{k}": v for k, v in VGG16Features().features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)          # a full torchvision file has more: ignored
    path = tmp_path / "vgg16.pth"
    torch.save(state, path)
    digest = sha256_of(path)
    named = tmp_path / f"vgg16-{digest[:8]}.pth"
    path.rename(named)
    net, full = load_vgg16(named)                              # torchvision's name carries the hash
    assert full == digest and not any(p.requires_grad for p in net.parameters())
    assert torch.equal(net.features[0].weight, state["features.0.weight"])
    assert feature_extractor(str(named))[1]["sha256"] == digest
    with pytest.raises(ModelError, match="does not match"):
        load_vgg16(named, sha256="0" * 64)
    wrong = tmp_path / "vgg16-deadbeef.pth"
    wrong.write_bytes(named.read_bytes())
    with pytest.raises(ModelError, match="Refused"):
        load_vgg16(wrong)
    plain = tmp_path / "weights.pth"
    plain.write_bytes(named.read_bytes())
    with pytest.raises(InputError, match="perceptual-sha256"):
        load_vgg16(plain)
    assert load_vgg16(plain, digest)[1] == digest
    torch.save({"other.weight": torch.zeros(1)}, tmp_path / "x.pth")
    with pytest.raises(ModelError, match="not a torchvision VGG16"):
        load_vgg16(tmp_path / "x.pth", sha256_of(tmp_path / "x.pth"))


# ----------------------------------------------------------------------------- stages

def test_stages_switch_at_t_2t_and_run_to_10t(tmp_path):
    task = tiny_task(stage_iterations=3)
    assert [task.stage(s) for s in (0, 2, 3, 5, 6, 29)] == ["ct", "ct", "mri", "mri", "joint", "joint"]
    assert CTGuidedTask.default_total_steps(task.config, epochs=100) == 30
    assert CTGuidedTask.default_steps_per_epoch({"stage_iterations": 100}) == 25
    assert CTGuidedTask.default_steps_per_epoch({"stage_iterations": 6}) == 1
    rates = [task.sr_rate(s) for s in range(8)]
    assert rates[0] == rates[3] == task.config["sr_lr"] and rates[2] < rates[1] < rates[0]
    assert rates[6] == task.config["lr"]
    calls, joint = [], task._joint_step
    task._joint_step = lambda x, rng: calls.append("joint") or joint(x, rng)
    trainer = Trainer(task, tmp_path / "run", total_steps=9, steps_per_epoch=3, config={}, stream=open(os.devnull, "w"))
    assert trainer.run() == 0
    assert [r["stage"] for r in trainer.history] == ["ct"] * 3 + ["mri"] * 3 + ["joint"] * 3
    assert calls == ["joint"] * 3 and "loss_cycle" in trainer.history[-1] and "loss_cycle" not in trainer.history[5]
    saved = {s: ckpt.load(trainer.stage_path(s))["step"] for s in ("ct", "mri")}
    assert saved == {"ct": 3, "mri": 6} and not trainer.stage_path("joint").exists()


@pytest.mark.parametrize("stop_at", [4, 7])       # inside stage 2 and inside stage 3
def test_resume_inside_a_stage_is_bit_for_bit(tmp_path, stop_at):
    quiet = open(os.devnull, "w")
    straight = tiny_task()
    assert Trainer(straight, tmp_path / "a", total_steps=10, steps_per_epoch=1, config={}, stream=quiet).run() == 0
    first = tiny_task()
    trainer = Trainer(first, tmp_path / "b", total_steps=10, steps_per_epoch=1, config={}, stream=quiet)
    trainer.loop.should_stop = lambda: trainer.step == stop_at
    assert trainer.run() == STOPPED
    torch.manual_seed(5)
    np.random.seed(5)
    second = tiny_task()
    resumed = Trainer(second, tmp_path / "b", total_steps=10, steps_per_epoch=1, config={}, stream=quiet)
    assert resumed.run(resume=True) == 0
    for name, module in straight.modules().items():
        for (k, a), b in zip(module.state_dict().items(), second.modules()[name].state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k}"
    for name, opt in straight.optimizers().items():
        assert torch.equal(torch.tensor(opt.param_groups[0]["lr"]),
                           torch.tensor(second.optimizers()[name].param_groups[0]["lr"]))
    a, b = (History(tmp_path / run / "log.jsonl").rows() for run in "ab")
    assert len(a) == 10 and [r["loss"] for r in a] == [r["loss"] for r in b]


def test_the_result_is_the_best_of_the_final_stage_even_when_an_earlier_stage_scored_higher(tmp_path):
    task = tiny_task()
    scores = iter([30.0, 29.0, 28.0, 27.0, 20.0, 22.0, 21.0, 19.0, 18.0, 17.0])   # stage 1 scores highest
    task.validate = lambda cancel=None: {"val_psnr": next(scores)}
    trainer = Trainer(task, tmp_path / "run", total_steps=10, steps_per_epoch=1, config={}, stream=open(os.devnull, "w"))
    assert trainer.run() == 0
    assert trainer.result == {"metric": "val_psnr", "value": 22.0, "step": 6}
    assert ckpt.load(trainer.best_path)["step"] == 6


# ----------------------------------------------------------------------------- end to end

def _mri(shape=(8, 36, 34), spacing=(1.0, 1.0, 4.0), seed=1):
    array = (blobs(shape, seed) + 1.5) * 400
    return Volume(array.astype(np.float32), spacing)


def test_train_with_the_cli_then_infer_any_factor(tmp_path, capsys):
    data = tmp_path / "data"
    (data / "ct").mkdir(parents=True)
    (data / "mri").mkdir()
    write_volume(Volume(blobs((30, 46, 44)) * 800, (0.8, 0.8, 1.25)), data / "ct" / "head.nii.gz")
    for k in range(2):
        write_volume(_mri(seed=k), data / "mri" / f"mr{k}.nii.gz")
    models = tmp_path / "models"
    args = ["train", "--method", "ctguided", "--ct", str(data / "ct"), "--mri", str(data / "mri"), "--out", "ctg",
            "--models-dir", str(models), "--stage-iterations", "2", "--batch-size", "2", "--patch", "32"]
    assert main(args) == 0
    card = ModelCard.load(models / "ctg.json")
    assert card.method == "ctguided" and card.native_factor == 4 and card.modality == "MR"
    assert card.extra["stages"] == {"T": 2, "ct": [0, 2], "mri": [2, 4], "joint": [4, 20]}
    assert card.extra["training"]["best_step"] > 4 and card.extra["training"]["steps"] == 20
    assert card.extra["perceptual"]["kind"] == "edge-pyramid" and card.training_spacing() == (4.0, 4.0)
    assert card.training_data["ct"] == ["head.nii.gz"]
    assert (models / "runs" / "ctg" / "checkpoints" / "stage_mri.pt").exists()

    mr = _mri(seed=7)
    write_volume(mr, tmp_path / "mr.nii.gz")
    for spacing, slices in ((None, 29), (2.0, 15)):          # native x4 (1 mm), and x2 resampled
        extra = [] if spacing is None else ["--spacing", str(spacing)]
        out_path = tmp_path / f"sr{slices}.nii.gz"
        assert main(["infer", str(tmp_path / "mr.nii.gz"), str(out_path), "--method", "ctguided",
                     "--model", str(card.path), "--quiet", *extra]) == 0
        from volumetricsr import read_volume

        out = read_volume(out_path)
        assert out.array.shape == (slices, 36, 34)
        np.testing.assert_allclose(out.spacing, (1.0, 1.0, 1.0 if spacing is None else 2.0), rtol=1e-6)
    # the model on the acquired slices, by hand: the network's planes through the engine, both orientations
    native = read_volume(tmp_path / "sr29.nii.gz").array
    assert np.abs(native[::4] - mr.array).mean() < 0.1 * mr.array.std()


def test_a_ct_input_is_refused_unless_forced(tmp_path):
    from volumetricsr.compute.export import write_model

    net = RDN(4, features=4, growth=2, blocks=1, layers=1)
    write_model(tmp_path, "m", net.state_dict(), {
        "method": "ctguided", "architecture": {"name": "rdn", "args": {"factor": 4, "features": 4, "growth": 2,
                                                                       "blocks": 1, "layers": 1}},
        "native_factor": 4, "modality": "MR", "normalization": {"kind": "percentile", "low": 0.5, "high": 99.5},
        "training_data": {}}, slice_spacing_mm=[4.0, 4.0])
    ct = Volume((blobs((6, 20, 20)) * 900).astype(np.float32), (1.0, 1.0, 4.0))
    with pytest.raises(InputError, match="looks like a CT"):
        super_resolve(ct, "ctguided", model=str(tmp_path / "m.json"))
    out = super_resolve(ct, "ctguided", model=str(tmp_path / "m.json"), force=True)
    assert out.array.shape == (21, 20, 20)
    results = {}
    super_resolve(_mri(), "ctguided", 1.0, model=str(tmp_path / "m.json"), results=results)  # an MR at 4 mm
    assert not results.get("warnings")
    super_resolve(_mri(spacing=(1.0, 1.0, 7.0)), "ctguided", model=str(tmp_path / "m.json"), results=results)
    assert "trained on slices 4 mm apart" in results["warnings"][0]


def test_training_options_are_checked_before_any_data_is_read(tmp_path):
    args = ["train", "--method", "ctguided", "--ct", str(tmp_path / "none"), "--mri", str(tmp_path / "none"),
            "--out", "x", "--models-dir", str(tmp_path)]
    assert main([*args, "--stage-iterations", "0"]) == 2
    (tmp_path / "pair" / "ct").mkdir(parents=True)
    layout = ["train", "--method", "ctguided", "--data", str(tmp_path / "pair"), "--out", "x", "--models-dir",
              str(tmp_path)]
    with pytest.raises(InputError, match="needs sub-folders ct/.*and mri/"):
        from volumetricsr.app.train_cli import parse

        CTGuidedTask.config_from_args(parse(layout[1:]))
    bad = tmp_path / "vgg16-00000000.pth"
    torch.save({}, bad)
    assert main([*args, "--perceptual-weights", str(bad)]) != 0
    assert main(args) == 2                                    # the folders do not exist: one line


def test_the_joint_stage_switches_add_their_terms():
    rng = np.random.default_rng(0)
    paper = tiny_task(stage_iterations=1).train_step(2, rng)
    assert "loss_consistency" not in paper and "loss_translated" not in paper
    task = tiny_task(stage_iterations=1, consistency=10.0, translated_pairs=10.0, fixed_targets=True)
    before = {k: v.clone() for k, v in task.sr.state_dict().items()}
    out = task.train_step(2, rng)
    assert out["loss_consistency"] > 0 and out["loss_translated"] > 0
    assert any(not torch.equal(before[k], v) for k, v in task.sr.state_dict().items())   # the SRNet trains
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    losses, _, _ = citnet_losses(Identity(shift=0.5), x, torch.rand(2, 1, 8, 8), torch.zeros(2, 8),
                                 torch.zeros(2, 8), feature_extractor()[0], x_target=x.detach())
    assert float(losses["self"]) == pytest.approx(0.5)           # compared with the fixed copy


def test_lpips_is_skipped_with_a_message_when_it_cannot_run(tmp_path, capsys, monkeypatch):
    import sys

    from volumetricsr.data.metrics import lpips_scorer

    with pytest.raises(InputError, match="AlexNet's pretrained weights"):
        lpips_scorer(None)
    weights = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({}, weights)
    monkeypatch.setitem(sys.modules, "lpips", None)            # not installed
    with pytest.raises(InputError, match="needs the lpips package"):
        lpips_scorer(str(weights))
    mr = _mri()
    write_volume(mr, tmp_path / "a.nii.gz")
    assert main(["evaluate", str(tmp_path / "a.nii.gz"), str(tmp_path / "a.nii.gz"), "--protocol", "plain",
                 "--lpips", str(weights)]) == 0
    out = capsys.readouterr()
    assert "LPIPS skipped: LPIPS needs the lpips package" in out.err and "PSNR inf" in out.out

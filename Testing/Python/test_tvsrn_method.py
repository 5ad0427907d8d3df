"""The tvsrn method end to end through the engine, its model checks, and ONNX export/inference."""
import itertools

import numpy as np
import pytest
import torch

from conftest import make_volume
from volumetricsr import InputError, ModelError, super_resolve
from volumetricsr.app.cli import main as cli_main
from volumetricsr.compute.models import find_model
from volumetricsr.compute.networks import TVSRN
from volumetricsr.compute.export import write_model

TINY = dict(factor=5, depth=4, channels=4, heads=2, window=4, group=4, tab_window=[2, 4], enc_layers=2,
            tab_layers=2, dec_layers=2)
NORM = {"kind": "window", "low": -1024.0, "high": 2048.0}


def card_fields(args=TINY, native=5, arch="tvsrn"):
    return {"method": "tvsrn", "architecture": {"name": arch, "args": dict(args)}, "native_factor": native,
            "modality": "CT", "normalization": NORM, "training_data": "none: random weights for tests"}


@pytest.fixture
def models(tmp_path, monkeypatch):
    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(tmp_path))
    torch.manual_seed(0)
    net = TVSRN(**TINY)
    with torch.no_grad():   # random weights large enough that the output depends on the input
        for p in net.parameters():
            p.normal_(0, 0.2)
    write_model(tmp_path, "tiny", net.state_dict(), card_fields())
    return tmp_path, net.eval()


def ct_volume(n_slices, rows=18, cols=20, seed=0):
    v = make_volume(size_ijk=(cols, rows, n_slices), spacing=(0.8, 0.8, 4.0), seed=seed)
    return v.with_array(v.array * 8)     # +-800 HU


def paper_tiling(net, stack01, window, factor=5):
    """Expected output, written out: depth stride 3, in-plane stride = window, last windows flush, mean."""
    n, h, w = stack01.shape
    d, wh, ww = window

    def starts(size, win, stride):
        s = list(range(0, size - win + 1, stride))
        return s if s[-1] == size - win else s + [size - win]

    out = torch.zeros((n - 1) * factor + 1, h, w, dtype=torch.float64)
    count = torch.zeros_like(out)
    x = torch.from_numpy(stack01)
    for z, y, v in itertools.product(starts(n, d, 3), starts(h, wh, wh), starts(w, ww, ww)):
        with torch.no_grad():
            p = net(x[None, None, z:z + d, y:y + wh, v:v + ww])[0, 0].double()
        out[factor * z:factor * z + p.shape[0], y:y + wh, v:v + ww] += p
        count[factor * z:factor * z + p.shape[0], y:y + wh, v:v + ww] += 1
    return (out / count).numpy()


@pytest.mark.parametrize("n_slices,window", [(7, None), (8, (4, 16, 16))])
def test_super_resolve_follows_the_papers_tiling(models, n_slices, window):
    _, net = models
    vol = ct_volume(n_slices)
    options = {"window": window} if window else {}
    out = super_resolve(vol, "tvsrn", 0.8, model="tiny", device="cpu", precision="fp32", overlap=(0.25, 0, 0),
                        blend="uniform", **options)
    assert out.array.shape == ((n_slices - 1) * 5 + 1, 18, 20)
    assert out.spacing == pytest.approx((0.8, 0.8, 0.8))
    stack01 = np.clip((vol.array.astype(np.float32) + 1024) / 3072, 0, 1)
    expected = paper_tiling(net, stack01, window or (4, 18, 20)) * 3072 - 1024
    np.testing.assert_allclose(out.array, np.clip(expected, -1024, 2048), atol=0.02)   # HU, held to the window
    assert np.std(out.array) > 10


def test_other_target_spacing_resamples_the_native_output(models):
    out = super_resolve(ct_volume(6), "tvsrn", 2.0, model="tiny", device="cpu")
    assert out.array.shape == (11, 18, 20)


def test_too_few_slices(models):
    with pytest.raises(InputError, match="at least 4 slices"):
        super_resolve(ct_volume(3), "tvsrn", 0.8, model="tiny", device="cpu")


def test_weights_of_another_architecture(models):
    folder, _ = models
    other = torch.nn.Sequential(torch.nn.Conv3d(1, 8, 3), torch.nn.Conv3d(8, 1, 1))
    write_model(folder, "impostor", other.state_dict(), card_fields())
    with pytest.raises(ModelError, match="do not fit architecture tvsrn"):
        super_resolve(ct_volume(6), "tvsrn", 0.8, model="impostor", device="cpu")


def test_card_of_another_architecture_or_factor(models):
    folder, net = models
    write_model(folder, "not-tvsrn", net.state_dict(), card_fields(arch="unet"))
    with pytest.raises(ModelError, match="not tvsrn"):
        super_resolve(ct_volume(6), "tvsrn", 0.8, model="not-tvsrn", device="cpu")
    write_model(folder, "wrong-factor", net.state_dict(), card_fields(native=4))
    with pytest.raises(ModelError, match="x5 but the card says native factor 4"):
        super_resolve(ct_volume(6), "tvsrn", 0.8, model="wrong-factor", device="cpu")


def test_onnx_runtime_matches_torch(models):
    vol = ct_volume(8)
    ref = super_resolve(vol, "tvsrn", 0.8, model="tiny", device="cpu", precision="fp32")
    onnx = super_resolve(vol, "tvsrn", 0.8, model="tiny", device="cpu", backend="onnx")
    assert np.abs(onnx.array - ref.array).max() / 3072 < 1e-3      # on [0, 1] intensities


def test_export_onnx_command_and_card_entry(models, capsys):
    folder, _ = models
    out = folder / "tiny.onnx"
    assert cli_main(["export-onnx", "--model", "tiny", str(out), "--window", "4", "18", "20", "--update-card"]) == 0
    diff = float(capsys.readouterr().out.split("= ")[1].split()[0])
    assert diff < 1e-3 and out.is_file()
    card = find_model("tiny")
    assert card.extra["onnx"] == "tiny.onnx" and card.extra["onnx_window"] == [4, 18, 20]
    vol = ct_volume(7)
    ref = super_resolve(vol, "tvsrn", 0.8, model="tiny", device="cpu", precision="fp32")
    via_file = super_resolve(vol, "tvsrn", 0.8, model="tiny", device="cpu", backend="onnx")
    assert np.abs(via_file.array - ref.array).max() / 3072 < 1e-3


def test_compile_failure_falls_back_to_eager(models, monkeypatch):
    vol = ct_volume(7)
    eager = super_resolve(vol, "tvsrn", 0.8, model="tiny", device="cpu", compile=False)

    def broken(*args, **kwargs):
        def fail(x):
            raise RuntimeError("no C++ compiler")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        out = super_resolve(vol, "tvsrn", 0.8, model="tiny", device="cpu", compile=True)
    np.testing.assert_array_equal(out.array, eager.array)


def test_compile_auto_only_for_many_windows():
    from volumetricsr.methods.tvsrn.method import compile_pays_off

    assert not compile_pays_off(2, "cpu") and not compile_pays_off(80, "cpu")
    assert compile_pays_off(80, "cuda") and not compile_pays_off(10, "cuda")


@pytest.mark.slow
def test_compiled_network_matches_eager(models):
    vol = ct_volume(7)
    eager = super_resolve(vol, "tvsrn", 0.8, model="tiny", device="cpu", precision="fp32", compile=False)
    compiled = super_resolve(vol, "tvsrn", 0.8, model="tiny", device="cpu", precision="fp32", compile=True)
    np.testing.assert_allclose(compiled.array, eager.array, atol=0.05)


def test_a_ct_model_refuses_what_is_not_hu_unless_forced(models):
    mr = make_volume(size_ijk=(20, 18, 7), spacing=(0.8, 0.8, 4.0))
    mr = mr.with_array(np.abs(mr.array) * 3)                       # 0 ... 300: MR-like, no air
    with pytest.raises(InputError, match="tiny is a CT model, but its intensities do not look like Hounsfield"):
        super_resolve(mr, "tvsrn", model="tiny", device="cpu")
    assert super_resolve(mr, "tvsrn", 0.8, model="tiny", device="cpu", force=True).array.shape[0] == 31
    tagged = ct_volume(7).with_array(ct_volume(7).array, metadata={"dicom": {"0008|0060": "MR"}})
    with pytest.raises(InputError, match="its DICOM modality is MR"):
        super_resolve(tagged, "tvsrn", model="tiny", device="cpu")
    assert super_resolve(ct_volume(7), "tvsrn", 0.8, model="tiny", device="cpu").array.shape[0] == 31


def test_a_spacing_far_from_training_is_warned_on_every_path(models, capsys, tmp_path):
    from volumetricsr.data.io import write_volume
    from volumetricsr.common.errors import Notice

    folder, net = models
    write_model(folder, "at5mm", net.state_dict(), card_fields(), slice_spacing_mm=[5.0, 6.25])
    results = {}
    with pytest.warns(Notice, match="8 mm apart, but model at5mm was trained on slices 5 to 6.25 mm"):
        v8 = ct_volume(7).with_array(ct_volume(7).array, spacing=(0.8, 0.8, 8.0))
        super_resolve(v8, "tvsrn", 1.6, model="at5mm", device="cpu", results=results)
    assert len(results["warnings"]) == 1
    results = {}
    super_resolve(ct_volume(7), "tvsrn", 0.8, model="at5mm", device="cpu", results=results)   # 4 mm: near 5
    assert "warnings" not in results
    write_volume(v8, tmp_path / "v8.nii.gz")
    assert cli_main(["infer", str(tmp_path / "v8.nii.gz"), str(tmp_path / "o.nii.gz"), "--method", "tvsrn",
                     "--model", "at5mm", "--spacing", "1.6", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "volumetricsr: warning: The slices are 8 mm apart" in err


def test_metal_keeps_its_value_at_the_acquired_slices(models):
    """What the HU window clips (metal at 12,618 HU) comes back from the input, and the network's own
    output stays in the window it was trained for."""
    v = ct_volume(7)
    array = v.array.copy()
    array[3, 5:8, 6:9] = 12618
    out = super_resolve(v.with_array(array), "tvsrn", 0.8, model="tiny", device="cpu").array
    assert out[15].max() == pytest.approx(12618, rel=0.01) and out[15, 6, 7] == pytest.approx(12618, rel=1e-4)
    plain = super_resolve(v, "tvsrn", 0.8, model="tiny", device="cpu").array
    assert plain.max() <= 2048 and plain.min() >= -1024

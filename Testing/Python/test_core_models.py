"""Model files (card + weights) and a network method run through them end to end."""
import json
import re

import numpy as np
import pytest
import torch

from test_core_engine import LinearUpsampler, global_linear
from volumetricsr import InputError, ModelError, super_resolve
from volumetricsr.methods import register
from volumetricsr.methods.base import _REGISTRY
from volumetricsr.methods.network import NetworkMethod
from volumetricsr.compute.models import ModelCard, find_model, list_models, sha256_of
from volumetricsr.compute.networks import register_architecture
from volumetricsr.data.volume import Volume

register_architecture("test-linear-upsampler")(LinearUpsampler)


class ToyNetworkMethod(NetworkMethod):
    name = "toy-net"
    title = "Toy network"
    native_factor = 5
    window = (4, 16, 16)
    min_slices = 2


def write_model(folder, model_id="toy-x5", factor=5, state=None, **overrides):
    weights = folder / f"{model_id}.pt"
    torch.save(state if state is not None else LinearUpsampler(factor).state_dict(), weights)
    card = {"id": model_id, "method": "toy-net",
            "architecture": {"name": "test-linear-upsampler", "args": {"factor": factor}},
            "native_factor": factor, "modality": "CT",
            "normalization": {"kind": "window", "low": -1024, "high": 2048},
            "training_data": "none (exact linear upsampler for tests)", "metrics": {},
            "weights": weights.name, "sha256": sha256_of(weights)}
    card.update(overrides)
    (folder / f"{model_id}.json").write_text(json.dumps(card))
    return folder / f"{model_id}.json"


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(tmp_path))
    register(ToyNetworkMethod())
    yield tmp_path
    _REGISTRY.pop("toy-net", None)


def ct_volume(n=7):
    rng = np.random.default_rng(4)
    return Volume(np.clip(rng.normal(size=(n, 20, 18)) * 300, -1000, 2000).astype(np.int16), (0.7, 0.7, 5.0))


def test_network_method_runs_model_through_engine(models_dir):
    write_model(models_dir)
    assert [c.id for c in list_models("toy-net")] == ["toy-x5"]
    vol = ct_volume()
    out = super_resolve(vol, "toy-net", 1.0, device="cpu", model="toy-x5")
    assert out.array.shape == (31, 20, 18) and out.spacing[2] == pytest.approx(1.0)
    np.testing.assert_allclose(out.array, global_linear(vol.array, 5), atol=0.05)


def test_other_factor_is_resampled_from_native_output(models_dir):
    write_model(models_dir)
    out = super_resolve(ct_volume(), "toy-net", 2.5, device="cpu")
    assert out.array.shape[0] == 13
    np.testing.assert_allclose(out.array[::2], ct_volume().array, atol=0.05)


def test_onnx_backend_matches_torch(models_dir):
    write_model(models_dir)
    a = super_resolve(ct_volume(), "toy-net", 1.0, device="cpu", backend="torch")
    b = super_resolve(ct_volume(), "toy-net", 1.0, device="cpu", backend="onnx")
    np.testing.assert_allclose(a.array, b.array, atol=1e-3 * 3072)


def test_corrupt_weights_are_refused(models_dir):
    card = ModelCard.load(write_model(models_dir))
    card.weights_path.write_bytes(card.weights_path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelError, match="does not match its card"):
        card.build()


def test_weights_for_another_architecture_are_refused(models_dir):
    write_model(models_dir, state={"conv.weight": torch.zeros(3, 3)})
    with pytest.raises(ModelError, match="Card and weights disagree"):
        super_resolve(ct_volume(), "toy-net", 1.0, device="cpu")


def test_card_problems_are_named(models_dir):
    path = write_model(models_dir)
    data = json.loads(path.read_text())
    del data["sha256"]
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="lacks sha256"):
        ModelCard.load(path)
    path.write_text("{not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        ModelCard.load(path)
    with pytest.raises(ModelError, match="No model 'missing'"):
        find_model("missing", "toy-net")
    write_model(models_dir, "other", architecture={"name": "no-such-net"})
    with pytest.raises(ModelError, match="unknown architecture"):
        find_model("other").build()
    bad = models_dir / "junk.pt"
    bad.write_bytes(b"not a torch file")
    write_model(models_dir, "junk-model")
    card = find_model("junk-model")
    card.weights_path.write_bytes(bad.read_bytes())
    card.sha256 = sha256_of(card.weights_path)
    with pytest.raises(ModelError, match="not a loadable weights file"):
        card.build()


def test_card_update_adds_fields_and_keeps_the_checksum(models_dir):
    card = ModelCard.load(write_model(models_dir))
    updated = card.update(heldout={"psnr": 30.5})
    assert updated.extra["heldout"] == {"psnr": 30.5} and updated.sha256 == card.sha256
    updated.verify()
    assert not list(models_dir.glob(".vsr-*"))
    with pytest.raises(ModelError, match="cannot change"):
        card.update(sha256="0" * 64)


def test_too_few_slices_for_a_method(models_dir):
    write_model(models_dir)
    with pytest.raises(InputError, match="at least 4 slices"):
        super_resolve(ct_volume(3), "bspline", 1.0)


def test_shipped_models_load_verify_and_run():
    """Every card in models/ matches its weights, builds, and its network runs on a small window."""
    from volumetricsr.compute.models import SHIPPED_DIR

    cards = sorted(SHIPPED_DIR.glob("*.json"))
    assert cards, f"no shipped model cards in {SHIPPED_DIR}"
    for path in cards:
        card = ModelCard.load(path)
        card.verify()
        net = card.build()
        with torch.inference_mode():
            if card.method == "clade":                     # a 2-D generator: planes in, planes out
                out = net(torch.rand(1, 1, 24, 24) * 2 - 1)
                assert out.shape == (1, 1, 24, 24)
            elif card.method in ("ctguided", "selfsr"):    # a 2-D plane network: K rows per thick row
                out = net(torch.rand(1, 1, 6, 24) * 2 - 1)
                assert out.shape == (1, 1, 5 * card.native_factor + 1, 24)
            else:
                depth = card.architecture["args"].get("depth", 4)
                out = net(torch.rand(1, 1, depth, 24, 24))
                assert out.shape[2] == (depth - 1) * card.native_factor + 1
        assert torch.isfinite(out).all()
        assert "heldout" in card.extra and "limits" in card.extra


def test_shipped_tvsrn_models_beat_bspline_on_a_synthetic_pseudo_pair():
    """The procedural chest phantom (never trained on) made x5 thick: every shipped TVSRN model must
    score above B-spline on both metrics (RPLHR protocol)."""
    from volumetricsr.data.metrics import evaluate
    from volumetricsr.compute.models import SHIPPED_DIR
    from volumetricsr.data.phantom import make_phantom
    from volumetricsr.data.simulate import simulate_thick

    phantom = make_phantom((96, 96, 46), spacing=1.0, seed=0)
    thick = simulate_thick(phantom, 5, axis=2)
    bspline = evaluate(super_resolve(thick, "bspline", 1.0, axis=2), phantom, "rplhr")
    cards = [ModelCard.load(p) for p in sorted(SHIPPED_DIR.glob("*.json"))]
    cards = [c for c in cards if c.method == "tvsrn"]
    assert cards
    for card in cards:
        out = super_resolve(thick, "tvsrn", 1.0, axis=2, model=card.id, device="cpu", precision="fp32", compile=False)
        m = evaluate(out, phantom, "rplhr")
        assert m["psnr"] > bspline["psnr"] + 0.2 and m["ssim"] > bspline["ssim"], (card.id, m, bspline)


def test_intensities_outside_the_window_are_restored(models_dir):
    """Metal (12,618 HU) and outside-the-field -3024 HU survive a network whose window is
    [-1024, 2048]: the clipped part comes back, so the linear toy network's output equals linear
    interpolation of the unclipped input, and the acquired slices keep their values."""
    write_model(models_dir)
    vol = ct_volume()
    array = vol.array.copy()
    array[3, 5:8, 5:8] = 12618
    array[:, 0, :] = -3024
    vol = vol.with_array(array)
    out = super_resolve(vol, "toy-net", 1.0, device="cpu", model="toy-x5")
    np.testing.assert_allclose(out.array, global_linear(array.astype(np.float32), 5), atol=0.05)
    assert out.array[15].max() == pytest.approx(12618, rel=1e-4) and out.array[:, 0].min() == pytest.approx(-3024)


def test_weights_of_the_wrong_size_are_a_model_error_naming_the_card(models_dir):
    write_model(models_dir, state={"gain": torch.zeros(3)})          # the architecture's gain is a scalar
    with pytest.raises(ModelError, match=r"Model toy-x5 \(.*toy-x5.json\): the weights do not fit"):
        find_model("toy-x5").build()


@pytest.mark.parametrize("name", ["../escape.pt", "/tmp/elsewhere.pt", "sub/../../x.pt"])
def test_card_files_must_sit_next_to_the_card(models_dir, name):
    write_model(models_dir, weights=name)
    with pytest.raises(ModelError, match="not a file in the card's folder"):
        find_model("toy-x5").verify()


def test_onnx_file_of_a_card_is_checked(models_dir):
    path = write_model(models_dir)
    onnx = models_dir / "toy-x5.onnx"
    onnx.write_bytes(b"pretend onnx")
    ModelCard.load(path).update(onnx=onnx.name)
    with pytest.raises(ModelError, match="without its onnx_sha256"):
        find_model("toy-x5").onnx_path()
    ModelCard.load(path).update(onnx_sha256=sha256_of(onnx))
    assert find_model("toy-x5").onnx_path() == onnx.resolve()
    onnx.write_bytes(b"tampered onnx")
    with pytest.raises(ModelError, match="does not match its card"):
        super_resolve(ct_volume(), "toy-net", 1.0, device="cpu", backend="onnx")


def test_models_command_lists_a_malformed_card_with_its_reason(models_dir, capsys):
    from volumetricsr.app.cli import main

    write_model(models_dir)
    (models_dir / "broken.json").write_text("{not json")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "toy-x5" in out and "broken.json  [not usable]" in out and "not readable JSON" in out


#: Cards of other JSON shapes and fields of the wrong type, each with words of its reason.
MALFORMED = {"null": ("null", "holds null, not a card"), "list": ("[1, 2]", "holds \\[1, 2\\], not a card"),
             "text": ('"x"', 'holds "x", not a card'), "deep": ("[" * 100000, "not readable JSON"),
             "factor": ({"native_factor": "five"}, 'native_factor must be a number above 0, not "five"'),
             "bool-factor": ({"native_factor": True}, "native_factor must be a number above 0"),
             "arch-list": ({"architecture": ["tvsrn"]}, "architecture must be an object"),
             "arch-name": ({"architecture": {"name": ["x"]}}, "architecture must be an object"),
             "arch-args": ({"architecture": {"name": "test-linear-upsampler", "args": None}}, "architecture must be"),
             "metrics": ({"metrics": [1]}, "metrics must be an object"),
             "norm": ({"normalization": None}, "normalization must be an object"),
             "spacing": ({"slice_spacing_mm": "5"}, "slice_spacing_mm must be a spacing in mm"),
             "window": ({"window": [4, 0, 16]}, "window must be three whole numbers above 0"),
             "id": ({"id": 7}, "id must be a name, not 7")}


def test_cards_of_any_shape_are_listed_as_unusable_and_break_no_run(models_dir, capsys):
    from volumetricsr.app.cli import main

    write_model(models_dir)
    for name, (content, _) in MALFORMED.items():
        if isinstance(content, dict):
            write_model(models_dir, name, **content)
        else:
            (models_dir / f"{name}.json").write_text(content)
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    for name, (_, reason) in MALFORMED.items():
        line = next(ln for ln in out if ln.startswith(f"{name}.json  [not usable]"))
        assert re.search(reason, line), line
    assert main(["models", "--json"]) == 0       # every usable card, and each bad one with its error
    assert len(json.loads(capsys.readouterr().out)) == len(list_models(None)) + len(MALFORMED)
    assert super_resolve(ct_volume(), "toy-net", 1.0, device="cpu").array.shape[0] == 31   # lists the models
    with pytest.raises(ModelError, match='native_factor must be a number above 0, not "five"'):
        find_model("factor")             # asked for by name: its own reason, not "no model"

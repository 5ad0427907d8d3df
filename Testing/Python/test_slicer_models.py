"""Model list, card text, model import, and a network method run from a node through the logic."""
from __future__ import annotations


import numpy as np
import pytest

import slicer_standin
from test_core_models import models_dir, write_model  # noqa: F401  (fixture: a toy network method + models folder)
from test_slicer_scene import add_node

slicer = slicer_standin.install()

from VolumetricSRLib.logic import SuperResolutionLogic  # noqa: E402
from VolumetricSRLib.modelstore import card_html, import_model, model_choices  # noqa: E402
from VolumetricSRLib.panel import method_html, method_items  # noqa: E402
from VolumetricSRLib.settings import RunSettings  # noqa: E402
from volumetricsr import ModelError, Volume, get_method  # noqa: E402
from volumetricsr.compute.models import ModelCard  # noqa: E402


@pytest.fixture(autouse=True)
def clean_scene():
    slicer_standin.reset()


def ct_node():
    rng = np.random.default_rng(1)
    array = np.clip(rng.normal(size=(5, 20, 18)) * 300, -1000, 2000).astype(np.int16)
    return add_node(Volume(array, (0.7, 0.7, 5.0), (1.0, 2.0, 3.0)), name="CT")


def test_every_registered_method_is_offered_with_its_needs(models_dir):
    names = [n for n, _ in method_items()]
    assert {"linear", "bspline", "sinc", "toy-net"} <= set(names)
    assert "a trained model" in method_html(get_method("toy-net"))
    assert "a trained model" not in method_html(get_method("bspline"))


def test_the_time_a_run_takes_follows_the_measurements_and_the_output_size():
    """selfsr on the measured CT (256 x 256, 25 slices at 6.25 mm -> 121 at 1.25 mm: 68 s on 2 cores)."""
    from VolumetricSRLib.panel import run_time_text

    ct = Volume(np.zeros((25, 256, 256), np.int16), (0.7, 0.7, 6.25))
    assert run_time_text(get_method("selfsr"), ct, 1.25) == "about 1 min 10 s on 2 CPU cores (measured)"
    assert run_time_text(get_method("bspline"), ct, 1.25) == "a few seconds"
    assert run_time_text(get_method("selfsr"), None) == ""
    node = add_node(Volume(np.zeros((8, 30, 30), np.int16), (1.0, 1.0, 3.0)))
    job = SuperResolutionLogic().prepare_from_settings(node, RunSettings(), interactive=False)
    assert job.method == "selfsr"                     # no method set: the panel's default, with PyTorch


def test_model_list_and_card(models_dir):
    write_model(models_dir, timing={"GPU": "2 s", "CPU": "40 s"})
    assert model_choices("toy-net") == [("toy-x5", "toy-x5  (x5, CT)")]
    assert model_choices("bspline") == []
    text = card_html(ModelCard.load(models_dir / "toy-x5.json"))
    assert "Timing:</b> GPU: 2 s, CPU: 40 s" in text and "exact linear upsampler" in text


def test_import_copies_a_checked_model(models_dir, tmp_path_factory):
    src = tmp_path_factory.mktemp("download")
    card = import_model(write_model(src, "toy-b"), destination=models_dir)
    assert card.path.parent == models_dir and card.verify() == models_dir / "toy-b.pt"
    assert "toy-b" in [i for i, _ in model_choices("toy-net")]
    with pytest.raises(ModelError, match="already in"):
        import_model(src / "toy-b.json", destination=models_dir)


def test_import_refuses_bad_or_mismatched_models(models_dir, tmp_path_factory):
    src = tmp_path_factory.mktemp("download")
    with pytest.raises(ModelError, match="method 'tvsrn-unknown'"):
        import_model(write_model(src, "a", method="tvsrn-unknown"), destination=models_dir)
    path = write_model(src, "b")
    (src / "b.pt").write_bytes(b"not weights")
    with pytest.raises(ModelError, match="does not match its card"):
        import_model(path, destination=models_dir)
    (src / "c.json").write_text("{ not json")
    with pytest.raises(ModelError, match="not readable JSON"):
        import_model(src / "c.json", destination=models_dir)
    assert list(models_dir.iterdir()) == []


def test_network_method_from_a_node_with_panel_settings(models_dir):
    write_model(models_dir)
    node = ct_node()
    settings = RunSettings(method="toy-net", isotropic=False, spacing=1.0, device="cpu",
                           windowSlices=3, windowSize=12, overlapSlices=0.5, overlapInPlane=0.25, batchSize=2)
    logic = SuperResolutionLogic()
    job = logic.prepare_from_settings(node, settings, interactive=False)
    assert job.options == dict(model="toy-x5", backend="torch", precision="auto", batch_size=2,
                               overlap=(0.5, 0.25, 0.25), window=(3, 12, 12))
    out = logic.finish(job, logic.compute(job))
    assert out.GetName() == "CT SR toy-net"
    result = slicer.util.arrayFromVolume(out)
    assert result.shape == (21, 20, 18)
    np.testing.assert_allclose(result[::5], slicer.util.arrayFromVolume(node), atol=0.5)


def test_missing_model_is_a_clear_error_before_anything_runs(models_dir):
    node = ct_node()
    with pytest.raises(ModelError, match="No model for method 'toy-net'"):
        SuperResolutionLogic().run(node, "toy-net", device="cpu")
    write_model(models_dir)
    with pytest.raises(ModelError, match="No model 'nope'.*known: toy-x5"):
        SuperResolutionLogic().run(node, "toy-net", device="cpu", model="nope")
    assert len(slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")) == 1


def test_overlap_defaults_to_the_methods_own():
    from volumetricsr.methods.network import NetworkMethod

    tvsrn_like = type("M", (), {"needs_model": True, "trains_per_volume": False, "overlap": (0.25, 0.0, 0.0),
                                "window": (4, 256, 256),
                                "options": tuple(NetworkMethod.option_rules)})()
    assert "overlap" not in RunSettings().method_options(tvsrn_like)
    assert RunSettings(overlapInPlane=0.5).method_options(tvsrn_like)["overlap"] == (0.25, 0.5, 0.5)
    assert RunSettings(overlapSlices=0.5).method_options(tvsrn_like)["overlap"] == (0.5, 0.0, 0.0)
    assert RunSettings(windowSize=128).method_options(tvsrn_like)["window"] == (4, 128, 128)
    assert RunSettings(model="x").method_options(get_method("bspline")) == {}


def test_self_supervised_settings_reach_the_method():
    selfsr = get_method("selfsr")
    assert RunSettings().method_options(selfsr) == {"seed": 0}
    opts = RunSettings(budget="balanced", iterations=300, seed=7, backend="onnx").method_options(selfsr)
    assert opts == {"budget": "balanced", "iterations": 300, "seed": 7}
    assert RunSettings(budget="balanced", iterations=300).method_options(get_method("bspline")) == {}
    assert RunSettings(budget="prior").method_options(selfsr) == {"budget": "prior", "seed": 0}   # the prior alone
    clade = get_method("clade")
    assert RunSettings(stride=6, planes=1).method_options(clade) == {"seed": 0, "stride": 6, "planes": 1}
    assert RunSettings(stride=0).method_options(clade)["stride"] == 0          # 0: whole planes, not "default"
    assert "stride" not in RunSettings(stride=6).method_options(selfsr)
    assert RunSettings(model="clade-x").method_options(clade)["model"] == "clade-x"


def test_the_panel_offers_saved_models_to_per_volume_methods():
    from VolumetricSRLib.modelstore import method_model_choices, uses_models
    from volumetricsr.methods import get_method

    clade, tvsrn, bspline = get_method("clade"), get_method("tvsrn"), get_method("bspline")
    assert method_model_choices(clade)[0] == ("", "none: train on this volume")
    assert all(model_id for model_id, _ in method_model_choices(tvsrn))        # a network method needs one
    assert not uses_models(bspline) and method_model_choices(bspline) == []


def test_prepare_reports_fitness_before_the_run(models_dir):
    write_model(models_dir)
    from volumetricsr.compute.models import find_model

    find_model("toy-x5").update(slice_spacing_mm=1.0)      # trained on 1 mm slices; the node has 5 mm
    job = SuperResolutionLogic().prepare(ct_node(), "toy-net", 1.0, device="cpu")
    assert len(job.warnings) == 1 and "5 mm apart, but model toy-x5 was trained on slices 1 mm apart" in job.warnings[0]


def test_the_ct_guided_method_runs_from_a_node_with_its_model(models_dir):
    """A needs-a-model method whose options are not the 3-D network's (no backend, window, overlap)."""
    from VolumetricSRLib.modelstore import method_model_choices
    from volumetricsr.compute.networks.rdn import RDN
    from volumetricsr.compute.export import write_model as save

    args = {"factor": 4, "features": 4, "growth": 2, "blocks": 1, "layers": 1}
    save(models_dir, "mr-x4", RDN(**args).state_dict(), {
        "method": "ctguided", "architecture": {"name": "rdn", "args": args}, "native_factor": 4, "modality": "MR",
        "normalization": {"kind": "percentile", "low": 0.5, "high": 99.5}, "training_data": {}},
        slice_spacing_mm=[4.0, 4.0])
    method = get_method("ctguided")
    assert ("mr-x4", "mr-x4  (x4, MR)") in method_model_choices(method)
    rng = np.random.default_rng(2)
    node = add_node(Volume((rng.random((6, 16, 14)) * 500).astype(np.float32), (0.9, 0.9, 4.0)), name="MR")
    logic = SuperResolutionLogic()
    job = logic.prepare_from_settings(node, RunSettings(method="ctguided", model="mr-x4", device="cpu", isotropic=False,
                                                        spacing=1.0),
                                      interactive=False)
    assert job.options == {"model": "mr-x4"} and not job.warnings      # its own plane batches, not one plane
    out = logic.finish(job, logic.compute(job))
    result = slicer.util.arrayFromVolume(out)
    assert result.shape == (21, 16, 14)
    np.testing.assert_allclose(result[::4], slicer.util.arrayFromVolume(node), rtol=1e-4, atol=1e-2)

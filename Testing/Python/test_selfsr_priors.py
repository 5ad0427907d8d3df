"""selfsr's priors: picked by modality and factor only, trained by `volumetricsr train --method selfsr`."""
import json

import numpy as np
import pytest
import torch

from volumetricsr import InputError, Volume, super_resolve
from volumetricsr.app.cli import main
from volumetricsr.methods.selfsr.method import BUDGETS, RowUpsampler, find_prior
from volumetricsr.data.normalization import guess_modality
from volumetricsr.compute.export import write_model


def prior_card(folder, model_id, modality, factor, seed=0):
    b = BUDGETS["fast"]
    torch.manual_seed(seed)
    net = RowUpsampler(factor, b.features, b.blocks, b.expansion)
    for p in net.parameters():           # a network that is not the untrained one (its tail starts at zero)
        p.data.add_(0.01 * torch.randn_like(p))
    return write_model(folder, model_id, net.state_dict(), {
        "method": "selfsr", "prior": True, "native_factor": factor, "modality": modality,
        "architecture": {"name": "row-upsampler", "args": {"factor": factor, "features": b.features,
                                                           "blocks": b.blocks, "expansion": b.expansion}},
        "normalization": {"kind": "percentile", "low": 0.5, "high": 99.5}, "training_data": "test"})


@pytest.fixture
def priors(tmp_path, monkeypatch):
    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(tmp_path))
    monkeypatch.setattr("volumetricsr.compute.models.SHIPPED_DIR", tmp_path / "none")      # only these priors
    return {key: prior_card(tmp_path, f"test-{key[0].lower()}-x{key[1]}", *key) for key in [("MR", 4), ("CT", 3)]}


def volume(kind: str, slices=8):
    rng = np.random.default_rng(0)
    a = rng.random((slices, 24, 24)).astype(np.float32)
    if kind == "CT":
        a = a * 2000 - 1000
        a[:, :4] = -1000                  # air
    elif kind == "unknown":
        a = a - 0.5                       # negative, not Hounsfield units
    return Volume(a, (1.0, 1.0, 4.0 if kind != "CT" else 3.0))


def test_modality_is_told_from_dicom_hounsfield_units_or_nothing():
    assert guess_modality(volume("MR").array) == "MR" and guess_modality(volume("CT").array) == "CT"
    assert guess_modality(volume("unknown").array) is None
    assert guess_modality(volume("unknown").array, {"dicom": {"0008|0060": "MR"}}) == "MR"


def test_the_prior_of_the_volumes_modality_and_factor_and_no_other(priors):
    assert find_prior("MR", 4).id == "test-mr-x4" and find_prior("CT", 3).id == "test-ct-x3"
    assert find_prior("MR", 3) is None and find_prior("CT", 4) is None and find_prior(None, 4) is None
    for kind, expect in [("MR", "test-mr-x4"), ("CT", "test-ct-x3"), ("unknown", None)]:
        results = {}
        super_resolve(volume(kind), "selfsr", iterations=2, thickness=4.0, results=results)     # auto: the default
        assert results["prior"] == expect
    mr_at_x3 = volume("MR")
    mr_at_x3 = mr_at_x3.with_array(mr_at_x3.array, spacing=(1.0, 1.0, 3.0))    # only a CT prior exists at x3
    results = {}
    super_resolve(mr_at_x3, "selfsr", iterations=2, thickness=3.0, prior="auto", results=results)
    assert results["prior"] is None
    results = {}
    super_resolve(volume("MR"), "selfsr", iterations=2, thickness=4.0, prior="none", results=results)
    assert "prior" not in results          # none: from scratch
    with pytest.raises(InputError, match="budget balanced trains its own"):
        super_resolve(volume("MR"), "selfsr", budget="balanced", prior="auto", thickness=4.0)


def test_budget_prior_runs_the_prior_alone_and_refuses_without_one(priors):
    results = {}
    alone = super_resolve(volume("MR"), "selfsr", budget="prior", thickness=4.0, results=results)
    assert results["prior"] == "test-mr-x4" and "training" not in results
    again = super_resolve(volume("MR"), "selfsr", budget="prior", thickness=4.0)
    np.testing.assert_array_equal(alone.array, again.array)
    for options in ({"prior": "none"}, {}):
        with pytest.raises(InputError, match="Budget prior needs a prior"):
            super_resolve(volume("unknown" if not options else "MR"), "selfsr", budget="prior", thickness=4.0,
                          **options)
    scratch, warm = ({}, {})
    a = super_resolve(volume("MR"), "selfsr", iterations=3, seed=1, thickness=4.0, prior="none", results=scratch)
    b = super_resolve(volume("MR"), "selfsr", iterations=3, seed=1, thickness=4.0, results=warm)
    c = super_resolve(volume("MR"), "selfsr", iterations=3, seed=1, thickness=4.0, prior="test-mr-x4")
    assert "prior" not in scratch and warm["prior"] == "test-mr-x4"
    assert not np.allclose(a.array, b.array) and np.array_equal(b.array, c.array)    # reproducible with a seed


def test_train_writes_a_prior_that_is_then_picked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(tmp_path))
    from volumetricsr.data.io import write_volume

    rng = np.random.default_rng(0)
    write_volume(Volume((rng.random((20, 40, 40)) * 100).astype(np.float32), (1.0, 1.0, 1.0)), tmp_path / "a.nii.gz")
    assert main(["train", "--method", "selfsr", "--data", str(tmp_path / "a.nii.gz"), "--factor", "5",
                 "--out", "mine-mr-x5", "--max-steps", "4", "--steps-per-epoch", "2"]) == 0
    card = json.loads((tmp_path / "mine-mr-x5.json").read_text())
    assert card["prior"] is True and card["modality"] == "MR" and card["native_factor"] == 5
    assert find_prior("MR", 5).id == "mine-mr-x5"


def test_the_panel_offers_every_budget():
    from VolumetricSRLib.settings import offered

    assert offered()["budget"].choices == ("auto",) + tuple(BUDGETS)

"""The confidence map: the spread of a method's predictions, for every method, from the API and the CLI."""
import json

import numpy as np
import pytest
import torch

from conftest import make_ct_volume, make_volume
from volumetricsr import Volume, read_volume, super_resolve, write_volume
from volumetricsr.app.cli import main as cli_main
from volumetricsr.compute.confidence import Spread, combine, mirror_axis
from volumetricsr.methods.network import NetworkMethod
from volumetricsr.data.phantom import make_phantom
from volumetricsr.data.resampling import apply_along_first_axis, linear_weights
from volumetricsr.data.simulate import simulate_thick


def test_spread_is_the_population_sd_and_combine_fuses_or_keeps_the_first():
    rng = np.random.default_rng(0)
    parts = [rng.normal(size=(3, 4, 5)).astype(np.float32) for _ in range(3)]
    s = Spread()
    for p in parts:
        s.add(p)
    np.testing.assert_allclose(s.std(), np.std(parts, axis=0), atol=1e-6)
    double = lambda y: y * 2
    for fuse, expected in ((True, np.mean(parts, axis=0) * 2), (False, parts[0] * 2)):
        plain = combine((p.copy() for p in parts), double, None, fuse)
        spread = Spread()
        mapped = combine((p.copy() for p in parts), double, spread, fuse)
        np.testing.assert_allclose(plain, expected, rtol=1e-6)
        np.testing.assert_array_equal(plain, mapped)          # asking for the map never changes the result
        np.testing.assert_allclose(spread.std(), np.std(parts, axis=0) * 2, atol=1e-5)
    pulled = []
    combine((pulled.append(i) or p.copy() for i, p in enumerate(parts)), double, None, fuse=False)
    assert pulled == [0]         # a single-prediction method makes its other predictions only for a map


def test_the_mirror_axis_runs_closest_to_left_right():
    assert mirror_axis(np.eye(3), 2) == 2        # axial: the stack's columns are i, patient x
    assert mirror_axis(np.eye(3), 1) == 2        # coronal: (j, k, i), columns i
    swapped = np.eye(3)[:, [1, 0, 2]]             # index axis j runs along patient x
    assert mirror_axis(swapped, 2) == 1


def _ct_phantom():
    thin = make_phantom(size=(48, 40, 41))
    return thin, simulate_thick(thin, 5)


def _ctguided_card(tmp_path, seed=None):
    from volumetricsr.compute.networks.rdn import RDN
    from volumetricsr.compute.export import write_model

    torch.manual_seed(0)
    net = RDN(4, features=4, growth=2, blocks=1, layers=1)
    if seed is not None:     # weights that make the network more than linear interpolation
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0, 0.3)
    write_model(tmp_path, f"m{seed}", net.state_dict(), {
        "method": "ctguided", "architecture": {"name": "rdn", "args": {"factor": 4, "features": 4, "growth": 2,
                                                                       "blocks": 1, "layers": 1}},
        "native_factor": 4, "modality": "MR", "normalization": {"kind": "percentile", "low": 0.5, "high": 99.5},
        "training_data": {}}, slice_spacing_mm=[4.0, 4.0])
    return str(tmp_path / f"m{seed}.json")


def _mri():
    v = make_volume(size_ijk=(24, 20, 6), spacing=(1.0, 1.0, 4.0), seed=3)
    return v.with_array(np.abs(v.array) * 100 + 50)


@pytest.mark.parametrize("method,options", [
    ("linear", {}), ("bspline", {}), ("sinc", {}),
    ("selfsr", {"iterations": 3}),
    ("clade", {"iterations": 2, "batch_size": 2}),
    ("clade", {"iterations": 2, "batch_size": 2, "planes": 2, "stride": 16}),
    ("tvsrn", {"model": "tvsrn-ct-x5"}),
    ("ctguided", {}),
])
def test_every_method_makes_a_map_on_the_output_grid_and_the_result_is_unchanged(method, options, tmp_path):
    thin, thick = _ct_phantom()
    spacing = 1.0
    if method == "ctguided":
        thick, spacing, options = _mri(), 1.0, {"model": _ctguided_card(tmp_path, seed=1)}
    plain = super_resolve(thick, method, spacing, device="cpu", **options)
    results = {}
    out = super_resolve(thick, method, spacing, device="cpu", confidence_map=True, results=results, **options)
    np.testing.assert_array_equal(out.array, plain.array)
    m = results["confidence_map"]
    assert m.same_grid(out) and m.array.dtype == np.float32 and m.array.shape == out.array.shape
    assert np.isfinite(m.array).all() and m.array.min() >= 0
    assert m.array.max() > 1e-3 * np.ptp(out.array)        # these predictions do differ somewhere
    assert "confidence map" in m.metadata["derivation"]["description"]


def _linear_network(self, card, x, window, ctx, backend, precision, span=(0.0, 0.95), **engine):
    """Stands in for a network: linear interpolation along the slices, which commutes with mirroring
    and shifting, so that every prediction agrees once brought back to the plain frame."""
    n, factor = x.shape[1], engine["scale"][0]
    weights = linear_weights(np.arange((n - 1) * factor + 1) / factor, n)
    return torch.from_numpy(apply_along_first_axis(weights, x[0].numpy()))[None]


def test_the_map_is_zero_where_the_predictions_agree(monkeypatch, tmp_path):
    _, thick = _ct_phantom()
    monkeypatch.setattr(NetworkMethod, "run_network", _linear_network)
    results = {}
    out = super_resolve(thick, "tvsrn", 1.0, confidence_map=True, results=results, model="tvsrn-ct-x5")
    assert np.abs(results["confidence_map"].array).max() < 1e-4 * np.ptp(out.array)
    # a plane method whose network is linear interpolation (an untrained RDN): both orientations agree
    results = {}
    out = super_resolve(_mri(), "ctguided", 1.0, confidence_map=True, results=results,
                        model=_ctguided_card(tmp_path))
    assert np.abs(results["confidence_map"].array).max() < 1e-4 * np.ptp(out.array)


def test_the_interpolations_map_follows_their_error():
    """Not a benchmark (benchmarks/trust.py is): the kernels disagree where they are wrong."""
    thin, thick = _ct_phantom()
    results = {}
    out = super_resolve(thick, "bspline", 1.0, confidence_map=True, results=results)
    error = np.abs(out.array - thin.array.astype(np.float32)).ravel()
    spread = results["confidence_map"].array.ravel()
    assert np.corrcoef(spread, error)[0, 1] > 0.5


def test_the_cli_writes_both_maps(tmp_path, capsys):
    _, thick = _ct_phantom()
    src = write_volume(thick, tmp_path / "thick.nii.gz")
    assert cli_main(["infer", str(src), str(tmp_path / "o.nii.gz"), "--method", "sinc", "--quiet", "--spacing", "1",
                     "--confidence-map", str(tmp_path / "conf.nrrd"), "--consistency-map", str(tmp_path / "c.nrrd"),
                     "--progress-json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    done = records[-1]
    assert done["consistency"]["rms"] > 0 and set(done["maps"]) == {"consistency_map", "confidence_map"}
    out, conf = read_volume(tmp_path / "o.nii.gz"), read_volume(tmp_path / "conf.nrrd")
    assert conf.same_grid(out) and read_volume(tmp_path / "c.nrrd").same_grid(thick)


def test_a_ct_with_metal_keeps_a_finite_map():
    v = make_ct_volume(size_ijk=(20, 18, 8))
    array = v.array.astype(np.float32)
    array[4, 8:10, 8:10] = 15000
    results = {}
    super_resolve(v.with_array(array), "tvsrn", confidence_map=True, results=results, model="tvsrn-ct-x5",
                  force=True)
    assert np.isfinite(results["confidence_map"].array).all()

"""Agreement with the acquired slices: the re-thickening operator is simulate-thick's, a consistent
volume has no residual, and enforcement reproduces the input exactly with the smallest change."""
import json

import numpy as np
import pytest

from volumetricsr import read_volume, super_resolve, write_volume
from conftest import make_volume
from volumetricsr.app.cli import main
from volumetricsr.compute.consistency import consistency, enforce_consistency, thickening_matrix
from volumetricsr.data.phantom import make_phantom
from volumetricsr.data.profiles import slice_profile_weights
from volumetricsr.data.simulate import simulate_thick, thick_weights


@pytest.fixture(scope="module")
def pair():
    thin = make_phantom((64, 48, 41), 1.0)
    thin = thin.with_array(thin.array.astype(np.float32))
    return thin, simulate_thick(thin, 5)


@pytest.mark.parametrize("profile", ["gaussian", "rect", "triangle"])
def test_the_operator_is_simulate_thicks_for_a_whole_factor(profile):
    d = thickening_matrix(9, 41, 5.0, 5.0, profile)
    assert np.allclose(d, thick_weights(41, 5, slice_profile_weights(profile, 5.0, 1.0)), atol=2e-4)
    assert np.allclose(d.sum(axis=1), 1.0)


def test_the_true_thin_volume_agrees_with_its_thick_slices(pair):
    thin, thick = pair
    check = consistency(thin, thick)
    assert check.summary()["rms"] < 1e-3 * np.abs(thick.array).max()
    assert check.residual.size == thick.size and check.residual.spacing == thick.spacing
    assert check.residual.origin == thick.origin
    assert consistency(super_resolve(thick, "linear", 1.0), thick).summary()["rms"] > 10 * check.summary()["rms"]


@pytest.mark.parametrize("method, options", [("bspline", {}), ("sinc", {}), ("selfsr", {"iterations": 20})])
def test_enforced_results_reproduce_the_input_with_the_smallest_change(pair, method, options):
    thin, thick = pair
    options = {**options, "thickness": 5.0, "profile": "gaussian"}      # how the slices were made (not estimated)
    plain = super_resolve(thick, method, 1.0, **options)
    enforced = super_resolve(thick, method, 1.0, enforce_consistency=True, **options)
    assert enforced.size == plain.size and enforced.spacing == plain.spacing and enforced.origin == plain.origin
    assert consistency(enforced, thick).summary()["max"] < 1e-5 * np.abs(thick.array).max()   # float precision
    # the least-squares change: no volume that agrees with the input (the true thin one does) is closer
    assert np.linalg.norm(enforced.array - plain.array) <= np.linalg.norm(thin.array - plain.array)


def test_enforcement_on_a_grid_that_is_not_a_whole_multiple(pair):
    _, thick = pair
    out = super_resolve(thick, "bspline", 1.3)
    enforced = enforce_consistency(out, thick)
    assert consistency(enforced, thick).summary()["max"] < 1e-5 * np.abs(thick.array).max()
    assert consistency(out, thick).summary()["rms"] > 1.0


def test_the_command_line_writes_the_map_and_evaluate_reports_it(pair, tmp_path, capsys):
    _, thick = pair
    write_volume(thick, tmp_path / "thick.nii.gz")
    assert main(["infer", str(tmp_path / "thick.nii.gz"), str(tmp_path / "sr.nii.gz"), "--spacing", "1",
                 "--enforce-consistency", "--consistency-map", str(tmp_path / "map.nii.gz"), "--quiet"]) == 0
    assert "consistency with the acquired slices: RMS" in capsys.readouterr().err
    residual = read_volume(tmp_path / "map.nii.gz")
    assert residual.size == thick.size and np.abs(residual.array).max() < 1e-5 * np.abs(thick.array).max()
    assert main(["evaluate", str(tmp_path / "sr.nii.gz"), "--consistency", str(tmp_path / "thick.nii.gz"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["consistency"]["slices"] == thick.size[2] and "no_reference" not in report
    with pytest.raises(Exception, match="more slices than the acquired"):
        consistency(thick, thick)


def test_a_cohort_can_enforce_consistency_too(pair, tmp_path):
    _, thick = pair
    (tmp_path / "in").mkdir()
    write_volume(thick, tmp_path / "in" / "a.nii.gz")
    assert main(["infer-batch", str(tmp_path / "in"), str(tmp_path / "out"), "--spacing", "1",
                 "--enforce-consistency", "--quiet"]) == 0
    out = read_volume(tmp_path / "out" / "a.nii.gz")
    assert consistency(out, thick).summary()["max"] < 1e-5 * np.abs(thick.array).max()


def test_every_method_takes_the_slice_profile_for_consistency(tmp_path):
    from volumetricsr import InputError

    v = make_volume(size_ijk=(16, 14, 9), spacing=(1.0, 1.0, 4.0))
    results = {}
    out = super_resolve(v, "bspline", 1.0, thickness=6.0, profile="rect", enforce_consistency=True, results=results)
    assert consistency(out, v, 6.0, "rect").summary()["rms"] < 1e-3 * v.array.std()
    assert results["consistency"]["rms"] < 1e-3 * v.array.std()      # reported with the same profile
    assert consistency(out, v).summary()["rms"] > 1e-2 * v.array.std()   # not with another
    with pytest.raises(InputError, match="thickness"):
        super_resolve(v, "linear", thickness=-1.0)
    with pytest.raises(InputError, match="profile"):
        super_resolve(v, "linear", profile="boxcar")


def test_a_dicom_inputs_stated_thickness_is_the_default():
    v = make_volume(size_ijk=(16, 14, 9), spacing=(1.0, 1.0, 4.0))
    v = v.with_array(v.array, metadata={"dicom": {"0018|0050": "6.0 "}})   # 6 mm slices every 4 mm
    results = {}
    out = super_resolve(v, "sinc", 1.0, enforce_consistency=True, results=results)
    assert consistency(out, v, 6.0).summary()["rms"] < 1e-3 * v.array.std()
    assert results["consistency"]["rms"] < 1e-3 * v.array.std()


def test_a_consistency_map_without_new_slices_is_refused_before_any_work():
    from volumetricsr import InputError

    iso = make_volume(size_ijk=(10, 10, 10), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="No consistency map"):
        super_resolve(iso, "bspline", force=True, consistency_map=True,
                      progress=lambda f, m: pytest.fail("work started"))
    results = {}
    super_resolve(iso, "bspline", force=True, results=results)     # the same spacing: nothing to check
    assert "consistency" not in results

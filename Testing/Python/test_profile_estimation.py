"""The slice profile estimated from the volume: known profiles recovered, stated values win, used by selfsr."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from volumetricsr import Volume, super_resolve
from volumetricsr.app.api import acquired_profile, describe_profile
from volumetricsr.methods.selfsr.method import SelfSupervised
from volumetricsr.data.profile_estimation import estimate_profile
from volumetricsr.data.simulate import simulate_thick


@pytest.fixture(scope="module")
def isotropic():
    """Blobs with soft texture, statistically the same along every axis (1 mm voxels)."""
    rng = np.random.default_rng(0)
    blobs = gaussian_filter(rng.standard_normal((160, 128, 128)), 2.0) > 0.02
    texture = gaussian_filter(rng.standard_normal((160, 128, 128)), 1.0)
    return Volume((100 * blobs + 20 * texture).astype(np.float32), (1.0, 1.0, 1.0))


def estimate(volume):
    return estimate_profile(volume.array, volume.spacing[1::-1], volume.spacing[2])


@pytest.mark.parametrize("shape,factor,ratio", [("gaussian", 4, 1.0), ("rect", 4, 1.0), ("gaussian", 4, 0.5),
                                                ("rect", 4, 0.5), ("rect", 3, 1.0), ("gaussian", 5, 1.25)])
def test_known_profiles_are_recovered(isotropic, shape, factor, ratio):
    """FWHM within 10 %, gaps seen as gaps and overlaps as overlaps (an overlap is reported, and the
    spacing used); a box is told from a smooth profile (Gaussian and triangle are close cousins:
    either counts for the other)."""
    fwhm = ratio * factor
    e = estimate(simulate_thick(isotropic, factor, fwhm, shape))
    raw = e.capped_from_mm or e.thickness
    assert raw == pytest.approx(fwhm, rel=0.10)
    assert e.fwhm_range_mm[0] <= fwhm <= e.fwhm_range_mm[1]
    assert (raw < factor) == (ratio < 1) or ratio == 1
    assert e.thickness == min(raw, factor)
    assert (e.profile == "rect") == (shape == "rect") or e.capped_from_mm


def test_a_stated_value_is_kept_and_the_rest_estimated(isotropic):
    """A stated thickness (the user's or DICOM's) keeps today's Gaussian unless a profile is stated too;
    a stated profile alone gets its FWHM estimated."""
    thick = simulate_thick(isotropic, 4, 2.0, "rect")
    for stated, expect in [({"thickness": 3.0, "profile": "triangle"}, {"thickness": 3.0, "profile": "triangle"}),
                           ({"thickness": 5.0}, {"thickness": 5.0, "profile": "gaussian"})]:
        results = {}
        assert acquired_profile(thick, None, stated.get("thickness"), stated.get("profile"), results) == expect
        assert results["slice_profile"]["source"] == "stated"
        assert describe_profile(results["slice_profile"]).startswith("slice profile ")
    results = {}
    used = acquired_profile(thick, None, None, "rect", results)
    assert used["profile"] == "rect" and used["thickness"] == pytest.approx(2.0, rel=0.10)
    assert results["slice_profile"]["source"] == "stated profile, thickness estimated"
    results = {}
    assert acquired_profile(thick, None, None, None, results)["thickness"] == pytest.approx(2.0, rel=0.10)
    assert results["slice_profile"]["source"] == "estimated" and "confidence" in results["slice_profile"]
    assert "estimated from the volume" in describe_profile(results["slice_profile"])


def test_too_few_slices_keep_the_default():
    vol = Volume(np.random.default_rng(0).random((4, 32, 32)).astype(np.float32), (1.0, 1.0, 5.0))
    results = {}
    assert acquired_profile(vol, None, None, None, results) == {"thickness": 5.0, "profile": "gaussian"}
    assert results["slice_profile"]["source"] == "default"


def test_selfsr_and_enforcement_get_the_estimate_unless_stated(isotropic, monkeypatch):
    thick = simulate_thick(isotropic, 4, 2.0, "rect")
    seen = []
    monkeypatch.setattr(SelfSupervised, "upsample", lambda self, stack, grid, ctx, **kw: seen.append(kw) or
                        np.repeat(stack, 4, axis=0)[:grid.n_out])
    results = {}
    super_resolve(thick, "selfsr", results=results, enforce_consistency=True)
    est = results["slice_profile"]
    assert seen[-1]["thickness"] == est["thickness"] < 3.0 and seen[-1]["profile"] == est["profile"]
    super_resolve(thick, "selfsr", results=results, thickness=4.0, profile="gaussian")
    assert (seen[-1]["thickness"], seen[-1]["profile"]) == (4.0, "gaussian")
    assert results["slice_profile"]["source"] == "stated"


def test_an_interpolation_does_not_estimate(isotropic):
    results = {}
    super_resolve(simulate_thick(isotropic, 4), "linear", results=results)
    assert "slice_profile" not in results and "consistency" in results


def test_every_simulation_takes_the_same_profile_description(tmp_path):
    """(shape, FWHM) means the same in simulate-thick, TVSRN's pseudo-pairs, the CT-guided degradation
    and consistency: the thick slices of one are the thick slices of the others."""
    from volumetricsr.compute.consistency import thickening_matrix
    from volumetricsr.data.io import write_volume
    from volumetricsr.methods.ctguided.data import mr_kernel
    from volumetricsr.data.normalization import Normalization
    from volumetricsr.data.profiles import slice_profile_weights
    from volumetricsr.data.simulate import thick_weights
    from volumetricsr.training.pairs import Case, load_pair

    rng = np.random.default_rng(0)
    thin = Volume((rng.random((21, 12, 10)) * 100).astype(np.float32), (1.0, 1.0, 1.0))
    write_volume(thin, tmp_path / "thin.nii.gz")
    norm = Normalization("window", 0.0, 100.0)
    pair = load_pair(Case("c", tmp_path / "thin.nii.gz"), 4, norm, profile=("rect", 0.5))
    made = simulate_thick(thin, 4, 2.0, "rect")
    np.testing.assert_allclose(pair.thick, norm.forward(made.array, 0.0, 100.0), atol=1e-6)
    np.testing.assert_allclose(mr_kernel("rect", 4.0, 4, 0.5), slice_profile_weights("rect", 2.0, 1.0))
    made_by_simulate = thick_weights(21, 4, slice_profile_weights("rect", 2.0, 1.0))
    assert np.allclose(thickening_matrix(6, 21, 4.0, 2.0, "rect"), made_by_simulate, atol=2e-4)


def test_a_wide_estimate_is_not_used():
    """Structures along the slice axis (the phantom's body outline and spine) make the through-plane
    axis look smoother than its slices: the wide estimate is reported, the spacing used, and the shape
    estimated again at that width (the joint fit said box)."""
    from volumetricsr.data.phantom import make_phantom

    for size in ((64, 56, 41), (160, 128, 121)):          # the demo's phantom too
        e = estimate(simulate_thick(make_phantom(size=size), 5))
        assert e.capped_from_mm > 6.0 and (e.profile, e.thickness) == ("gaussian", 5.0)    # the truth
        assert "capped" in e.describe()


def test_the_command_line_says_which_profile_it_used(isotropic, tmp_path, capsys):
    from volumetricsr.app.cli import main
    from volumetricsr.data.io import write_volume

    thick = simulate_thick(isotropic, 4, 2.0, "rect")
    thick = thick.with_array(np.ascontiguousarray(thick.array[:, :48, :48]))
    write_volume(thick, tmp_path / "thick.nii.gz")
    assert main(["infer", str(tmp_path / "thick.nii.gz"), str(tmp_path / "sr.nii.gz"), "--method", "selfsr",
                 "--iterations", "2", "--enforce-consistency", "--quiet"]) == 0
    said = capsys.readouterr().err
    assert "slice profile " in said and "estimated from the volume" in said
    assert main(["infer", str(tmp_path / "thick.nii.gz"), str(tmp_path / "sr2.nii.gz"), "--method", "selfsr",
                 "--iterations", "2", "--profile", "rect", "--thickness", "2", "--quiet"]) == 0
    assert "slice profile rect, FWHM 2 mm (stated)" in capsys.readouterr().err

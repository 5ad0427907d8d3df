"""End to end on the real volumes in ../shared/data (skipped when it is absent)."""
import json

import numpy as np
import pytest

from volumetricsr import read_volume
from volumetricsr.app.cli import main

pytestmark = pytest.mark.realdata


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


@pytest.mark.parametrize("name", ["chest_ct_8mm_lungpetctdx.nii.gz", "brain_mri_t1c_6p5mm_pgbm.nii.gz"])
def test_real_thick_volume_is_upsampled_in_place(data_dir, tmp_path, capsys, name):
    src = read_volume(data_dir / name)
    cli(capsys, "infer", data_dir / name, tmp_path / "sr.nrrd", "--method", "bspline", "--quiet")
    out = read_volume(tmp_path / "sr.nrrd")
    # same origin, direction and physical extent: Slicer shows it exactly over the input
    np.testing.assert_allclose(out.origin, src.origin, atol=1e-3)
    np.testing.assert_allclose(out.direction, src.direction, atol=1e-6)
    last = np.array(src.size) - 1
    np.testing.assert_allclose(out.index_to_physical(np.array(out.size) - 1), src.index_to_physical(last), atol=1e-3)
    assert out.spacing[2] == pytest.approx(min(src.spacing[:2]), rel=0.01)
    np.testing.assert_allclose(out.array[[0, -1]], src.array[[0, -1]], atol=0.5)   # end slices are kept


def test_simulate_infer_evaluate_on_thin_ct(data_dir, tmp_path, capsys):
    thin = data_dir / "chest_ct_1p25mm_ricord_b.nii.gz"
    cli(capsys, "simulate-thick", thin, tmp_path / "thick.nii.gz", "--factor", "5")
    scores = {}
    for method in ("linear", "bspline"):
        cli(capsys, "infer", tmp_path / "thick.nii.gz", tmp_path / f"{method}.nii.gz", "--method", method,
            "--spacing", "1.25", "--quiet")
        scores[method] = json.loads(cli(capsys, "evaluate", tmp_path / f"{method}.nii.gz", thin, "--json"))
    print(scores)
    assert 28 < scores["linear"]["psnr"] < scores["bspline"]["psnr"]
    assert scores["linear"]["ssim"] < scores["bspline"]["ssim"]


def test_oblique_mri_thickened_along_i_comes_back_on_its_grid(data_dir, tmp_path, capsys):
    thin = data_dir / "brain_mri_t1_0p9mm_sag.nii.gz"      # oblique direction cosines
    cli(capsys, "simulate-thick", thin, tmp_path / "thick.nii.gz", "--factor", "4", "--axis", "I")
    cli(capsys, "infer", tmp_path / "thick.nii.gz", tmp_path / "sr.nii.gz", "--spacing", "0.8594", "--quiet")
    src, sr = read_volume(thin), read_volume(tmp_path / "sr.nii.gz")
    assert sr.size == (253, 256, 192)                    # (64-1)*4+1 along I
    np.testing.assert_allclose(sr.origin, src.origin, atol=1e-3)
    np.testing.assert_allclose(sr.direction, src.direction, atol=1e-5)
    result = json.loads(cli(capsys, "evaluate", tmp_path / "sr.nii.gz", thin, "--protocol", "plain", "--axis", "I",
                            "--json"))
    assert result["slices"] == 253 and result["psnr"] > 25


def test_shipped_ctguided_model_beats_bspline_on_the_held_out_brain_mri(data_dir):
    """The held-out T1 (never trained on), a central slab made x4 thick: the shipped CT-guided model
    scores above B-spline on both metrics."""
    from volumetricsr import super_resolve
    from volumetricsr.data.metrics import evaluate
    from volumetricsr.data.simulate import simulate_thick

    thin = read_volume(data_dir / "brain_mri_t1_0p88mm_chris.nii.gz")
    thin = thin.with_array(thin.array[:, 64:192, 30:160].astype(np.float32))
    thick = simulate_thick(thin, 4, axis=2)
    scores = {m: evaluate(super_resolve(thick, m, thin.spacing[2], **o), thin, "plain", "K")
              for m, o in (("bspline", {}), ("ctguided", {"model": "ctguided-mri-x4"}))}
    assert scores["ctguided"]["psnr"] > scores["bspline"]["psnr"] + 0.3
    assert scores["ctguided"]["ssim"] > scores["bspline"]["ssim"]

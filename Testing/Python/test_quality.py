"""No-reference metrics: PIQE against pypiqe, edge sharpness on analytic edges, SNR, the CLI."""
import json

import numpy as np
import pytest
from scipy import ndimage
from scipy.special import erf

from volumetricsr.app.cli import main
from volumetricsr.data.io import write_volume
from volumetricsr.data.quality import auto_regions, edge_sharpness, no_reference, piqe, snr
from volumetricsr.data.volume import Volume


def _textured(rng, shape, blur, noise):
    image = ndimage.gaussian_filter(rng.random(shape), blur) + rng.normal(0, noise, shape)
    return (image - image.min()) / (image.max() - image.min())


@pytest.mark.parametrize("seed", range(5))
def test_piqe_equals_pypiqe_on_full_range_images(seed):
    """On images whose maximum is 1, pypiqe's per-image scaling equals MATLAB's (ours); sizes that are
    not multiples of the 16-pixel block exercise the padding."""
    pypiqe = pytest.importorskip("pypiqe")
    rng = np.random.default_rng(seed)
    image = _textured(rng, tuple(rng.integers(40, 160, 2)), rng.uniform(0.5, 3), rng.uniform(0, 0.05))
    assert piqe(image) == pytest.approx(pypiqe.piqe(image)[0], abs=1e-9)


def test_piqe_scores_a_flat_image_worst_and_follows_matlab_scaling():
    assert piqe(np.full((64, 64), 0.3)) == 100.0
    image = _textured(np.random.default_rng(1), (96, 96), 2, 0.02)
    # the score is of round(255 * I): an image with a lower maximum is not rescaled to full range
    assert piqe(image * 0.5) != pytest.approx(piqe(image), abs=1e-3)


def _blurred_step(sigma_mm, spacing, angle_deg, n=160):
    r, c = np.mgrid[:n, :n] * spacing
    t = np.deg2rad(angle_deg)
    d = (r - n * spacing / 2) * np.cos(t) + (c - n * spacing / 2) * np.sin(t)
    return 0.5 * (1 + erf(d / (sigma_mm * np.sqrt(2))))


@pytest.mark.parametrize("sigma_mm, spacing, angle", [(1.0, 0.5, 0), (2.0, 0.7, 30), (3.0, 1.0, 45), (1.2, 0.4, 70)])
def test_edge_sharpness_of_a_blurred_step_is_its_peak_slope(sigma_mm, spacing, angle):
    """A 0 -> 1 step blurred by a Gaussian of sigma s mm has a peak slope of 1 / (s sqrt(2 pi)) per mm."""
    value, points = edge_sharpness(_blurred_step(sigma_mm, spacing, angle), (spacing, spacing))
    assert points > 100
    assert value == pytest.approx(1 / (sigma_mm * np.sqrt(2 * np.pi)), rel=0.02)


def test_edge_sharpness_uses_the_given_border_and_ranks_blur():
    sharp, blurred = _blurred_step(0.8, 0.5, 10), _blurred_step(2.4, 0.5, 10)
    border = np.zeros(sharp.shape, bool)
    border[78:82, 60:100] = True       # along the edge (it runs nearly along the rows)
    a, count = edge_sharpness(sharp, (0.5, 0.5), border)
    b, _ = edge_sharpness(blurred, (0.5, 0.5), border)
    assert count == border.sum() and a > 2.5 * b


def test_snr_of_known_regions():
    rng = np.random.default_rng(0)
    array = rng.normal(0, 5, (20, 40, 40))
    array[:, 10:30, 10:30] += 100
    signal = np.zeros(array.shape, bool)
    signal[:, 14:26, 14:26] = True
    noise = np.zeros(array.shape, bool)
    noise[:, :6, :] = True
    assert snr(array, signal, noise)["snr"] == pytest.approx(20, rel=0.05)
    array[noise] = 0.0                        # a zeroed background has no noise to measure
    assert snr(array, signal, noise)["snr"] is None


def test_auto_regions_find_bone_and_the_air_outside_the_body():
    """A body (soft tissue) with a bone and a lung in air inside a field of view: the signal is the
    bone, the noise is the air outside, not the lung and not the fill outside the field of view."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:24, :96, :96]
    array = rng.normal(-1000, 10, z.shape)
    body = (y - 48) ** 2 + (x - 48) ** 2 < 34 ** 2
    array[body] = rng.normal(40, 10, body.sum())
    lung = (y - 48) ** 2 + (x - 36) ** 2 < 8 ** 2
    array[lung] = rng.normal(-850, 10, lung.sum())
    bone = (y - 48) ** 2 + (x - 62) ** 2 < 7 ** 2
    array[bone] = rng.normal(900, 10, bone.sum())
    array[(y - 48) ** 2 + (x - 48) ** 2 > 47 ** 2] = -3024
    signal, noise = auto_regions(array)
    assert signal.any() and bone[signal].mean() > 0.95
    assert noise.any() and not (noise & (lung | body)).any() and (array[noise] > -2000).all()
    assert snr(array, signal, noise)["snr"] == pytest.approx(90, rel=0.1)


def test_no_reference_on_the_planes_along_the_axis():
    rng = np.random.default_rng(0)
    array = ndimage.gaussian_filter(rng.random((40, 48, 56)), 2).astype(np.float32) * 1000
    out = no_reference(Volume(array, (1.0, 1.0, 1.0)))
    assert out["axis"] == "K" and set(out["orientations"]) == {"across I", "across J"}
    assert out["orientations"]["across I"]["planes"] == len(range(56 // 4, 3 * 56 // 4))


def test_evaluate_without_a_reference_and_with_masks(tmp_path, capsys):
    rng = np.random.default_rng(0)
    array = (ndimage.gaussian_filter(rng.random((32, 48, 48)), 2) * 800).astype(np.float32)
    write_volume(Volume(array, (0.8, 0.8, 0.8)), tmp_path / "sr.nii.gz")
    mask = np.zeros(array.shape, np.uint8)
    mask[:, 10:30, 10:30] = 1
    write_volume(Volume(mask, (0.8, 0.8, 0.8)), tmp_path / "edges.nii.gz")
    assert main(["evaluate", str(tmp_path / "sr.nii.gz"), "--edges", str(tmp_path / "edges.nii.gz"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["no_reference"]
    assert result["orientations"]["across I"]["edge_points"] > 0
    assert main(["evaluate", str(tmp_path / "sr.nii.gz")]) == 0
    assert "PIQE" in capsys.readouterr().out

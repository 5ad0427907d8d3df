"""Slice-profile simulation of thick volumes, and the PSNR/SSIM evaluation protocols."""
import numpy as np
import pytest

from conftest import make_volume
from volumetricsr import InputError, Volume
from volumetricsr.data.metrics import evaluate, psnr, ssim_per_slice
from volumetricsr.data.profiles import slice_profile_weights
from volumetricsr.data.simulate import simulate_thick


def test_profiles_have_the_stated_width():
    rect = slice_profile_weights("rect", 5.0, 1.0)
    np.testing.assert_allclose(rect, np.full(5, 0.2))
    gauss = slice_profile_weights("gaussian", 5.0, 0.25)
    x = (np.arange(len(gauss)) - len(gauss) // 2) * 0.25
    sigma = 5.0 / 2.3548
    assert np.sqrt((gauss * x ** 2).sum()) == pytest.approx(np.sqrt(sigma ** 2 + 0.25 ** 2 / 12), rel=0.01)
    tri = slice_profile_weights("triangle", 2.0, 1.0)
    # FWHM 2 mm: 1 - |t|/2 on |t| < 2, integrated over each 1 mm slice, normalised (area 2)
    np.testing.assert_allclose(tri, np.array([0.0625, 0.5, 0.875, 0.5, 0.0625]) / 2, atol=1e-12)


def test_thick_slice_is_centred_on_thin_slice_factor_k():
    thin = Volume(np.zeros((41, 3, 3), np.float32), (0.5, 0.5, 1.0))
    thin.array[20] = 1.0                    # an impulse at thin slice 20 = thick slice 4 for factor 5
    thick = simulate_thick(thin, 5, profile="rect")
    assert thick.array.shape == (9, 3, 3) and thick.spacing[2] == 5.0
    np.testing.assert_allclose(thick.array[:, 1, 1], [0, 0, 0, 0, 0.2, 0, 0, 0, 0])
    ramp = Volume(np.broadcast_to(np.arange(41, dtype=np.float32)[:, None, None], (41, 2, 2)).copy(), (1, 1, 1.0))
    g = simulate_thick(ramp, 5, thickness=7.0, profile="gaussian")
    np.testing.assert_allclose(g.array[3:-3, 0, 0], [15, 20, 25], atol=1e-4)   # symmetric, untruncated profile
    assert g.array[0, 0, 0] > 0                  # truncated profile at the end, renormalised
    assert g.origin == ramp.origin


def test_simulate_keeps_voxel_type_and_refuses_bad_factors():
    vol = make_volume(size_ijk=(4, 4, 12), spacing=(1, 1, 1.5), dtype=np.int16)
    assert simulate_thick(vol, 3).array.dtype == np.int16
    with pytest.raises(InputError, match="whole number"):
        simulate_thick(vol, 2.5)
    with pytest.raises(InputError, match="too few"):
        simulate_thick(vol, 20)


def test_psnr_and_ssim_basics():
    rng = np.random.default_rng(0)
    ref = rng.uniform(size=(4, 32, 32)).astype(np.float32)
    assert psnr(ref + 0.1, ref) == pytest.approx(20.0, abs=1e-4)
    np.testing.assert_allclose(ssim_per_slice(ref, ref), 1.0, atol=1e-6)
    noisy = ref + rng.normal(scale=0.2, size=ref.shape).astype(np.float32)
    assert (ssim_per_slice(noisy, ref) < 0.9).all()


def test_ssim_matches_a_direct_2d_convolution():
    """Cross-check the separable implementation against the plain 11x11 window (zero padding)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    a, b = rng.uniform(size=(2, 2, 40, 33))
    g = np.exp(-(np.arange(11) - 5) ** 2 / 4.5)
    w = torch.from_numpy(np.outer(g, g) / g.sum() ** 2)[None, None]
    conv = lambda t: F.conv2d(torch.from_numpy(t)[:, None], w, padding=5)[:, 0].numpy()  # noqa: E731
    ma, mb = conv(a), conv(b)
    va, vb, cab = conv(a * a) - ma ** 2, conv(b * b) - mb ** 2, conv(a * b) - ma * mb
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    direct = (((2 * ma * mb + c1) * (2 * cab + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2))).mean(axis=(1, 2))
    np.testing.assert_allclose(ssim_per_slice(a, b), direct, rtol=1e-10)


def test_rplhr_protocol_windows_and_skips_end_slices():
    ref = Volume(np.full((30, 16, 16), -1024, np.int16), (0.7, 0.7, 1.0))
    pred = ref.with_array(ref.array.astype(np.float32))
    pred.array[:5] = 3000                       # errors only in the skipped slices
    pred.array[5:, 0, 0] = -5000                # errors below the window vanish
    r = evaluate(pred, ref, "rplhr")
    assert r["slices"] == 20 and r["psnr"] == float("inf") and r["ssim"] == pytest.approx(1.0)
    pred.array[10, 4, 4] = -1024 + 3072 * 0.5   # one voxel off by 0.5 on the [0, 1] scale
    assert evaluate(pred, ref, "rplhr")["psnr"] == pytest.approx(10 * np.log10(20 * 256 / 0.25), abs=1e-3)
    assert evaluate(pred, ref, "plain")["slices"] == 30


def test_evaluate_compares_on_physical_overlap():
    ref = make_volume(size_ijk=(12, 10, 20), spacing=(1, 1, 1.0))
    part = ref.with_array(ref.array[3:15].copy(), origin=ref.index_to_physical(np.array([0, 0, 3])))
    r = evaluate(part, ref, "plain")
    assert r["slices"] == 12 and r["psnr"] == float("inf")


def test_reformat_puts_superior_up():
    from volumetricsr.app.figures import reformat

    vol = Volume(np.arange(4, dtype=np.float32)[:, None, None] * np.ones((4, 3, 5), np.float32), (1, 1, 2.0))
    image, (width, height) = reformat(vol, axis=2)
    assert image[0, 0] == 3 and image[-1, 0] == 0        # last slice (most superior) on top
    assert (width, height) == (5.0, 8.0)


def test_sagittal_reformat_holds_a_column():
    from volumetricsr.app.figures import reformat

    array = np.random.default_rng(0).random((4, 3, 5)).astype(np.float32)     # [k, j, i]
    vol = Volume(array, (0.5, 0.8, 2.0))
    image, (width, height) = reformat(vol, axis=2, row_fraction=0.5, view="sagittal")
    np.testing.assert_array_equal(image, array[::-1, :, 2])                   # column i = 2, superior up
    assert (width, height) == (3 * 0.8, 8.0)

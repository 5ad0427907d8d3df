"""Self-supervised per-volume SR: degradation model, orientations, geometry, determinism, cancel."""
import numpy as np
import pytest
import torch

from volumetricsr import CancelToken, Cancelled, InputError, Volume, get_method, super_resolve
from volumetricsr.methods.base import RunContext
from volumetricsr.methods.selfsr.method import SELFSR
from volumetricsr.training.samplers import PatchSampler, degrade_rows
from volumetricsr.compute.networks.row_upsampler import RowUpsampler
from volumetricsr.data.phantom import make_phantom
from volumetricsr.data.metrics import evaluate
from volumetricsr.data.profiles import slice_profile_weights
from volumetricsr.data.resampling import apply_along_first_axis, linear_weights
from volumetricsr.data.simulate import simulate_thick


def smooth_volume(shape=(6, 40, 36), spacing=(0.8, 0.8, 4.0), seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=shape).cumsum(0).cumsum(1).cumsum(2)
    return Volume((a / np.abs(a).max()).astype(np.float32), spacing)


def linear_along_depth(stack, factor):
    n = stack.shape[0]
    return apply_along_first_axis(linear_weights(np.arange((n - 1) * factor + 1) / factor, n), stack)


def test_known_profile_gives_the_expected_blur():
    image = np.zeros((1, 21, 3), np.float32)
    image[0, 10] = 1.0
    blurred = degrade_rows(image, slice_profile_weights("rect", 5.0, 1.0))
    np.testing.assert_allclose(blurred[0, :, 1], [0] * 8 + [0.2] * 5 + [0] * 8, atol=1e-7)
    g = degrade_rows(image, slice_profile_weights("gaussian", 4.0, 1.0))[0, :, 0]
    sigma = 4.0 / 2.3548
    x = np.arange(21) - 10
    assert np.sqrt((g * x ** 2).sum()) == pytest.approx(np.sqrt(sigma ** 2 + 1 / 12), rel=0.02)


def test_training_pairs_keep_thick_row_k_at_thin_row_factor_k():
    rng = np.random.default_rng(0)
    slices = rng.random((3, 60, 50)).astype(np.float32)
    sampler = PatchSampler(slices, 4, np.array([1.0]), 60, 50, 24)    # no blur: low = every 4th row
    low, high = sampler.batch(8, rng)
    assert low.shape == (8, 1, 6, 24) and high.shape == (8, 1, 21, 24)
    torch.testing.assert_close(low, high[:, :, ::4])


def test_both_orientations_of_an_untrained_network_are_linear_interpolation():
    vol = smooth_volume()
    net = RowUpsampler(5).eval()                      # zero tail: exactly linear interpolation
    expected = linear_along_depth(vol.array, 5)
    outs = list(SELFSR.predictions(net, vol.array, RunContext("cpu"), batch_size=7))
    assert len(outs) == 2                             # planes across rows, then across columns
    for out in outs:
        np.testing.assert_allclose(out, expected, atol=1e-5)


def test_orientations_are_fused_and_geometry_kept_with_anisotropic_in_plane_spacing():
    vol = smooth_volume(shape=(6, 40, 30), spacing=(0.5, 0.8, 2.5))   # columns 0.5 mm, rows 0.8 mm
    out = super_resolve(vol, "selfsr", 0.5, device="cpu", iterations=1)
    assert out.array.shape == (26, 40, 30) and out.spacing == pytest.approx((0.5, 0.8, 0.5))
    assert out.origin == vol.origin
    # untrained: linear interpolation, up to the in-plane B-spline round trip
    np.testing.assert_allclose(out.array, linear_along_depth(vol.array, 5), atol=0.02)
    trained = super_resolve(vol, "selfsr", 0.5, device="cpu", iterations=30)
    assert trained.array.shape == out.array.shape and not np.allclose(trained.array, out.array)


def test_tiny_volumes_work_and_too_tiny_ones_say_why():
    tiny = smooth_volume(shape=(3, 12, 12), spacing=(1.0, 1.0, 3.0))
    assert super_resolve(tiny, "selfsr", device="cpu", iterations=5).array.shape == (7, 12, 12)
    # non-square slices and a non-integer factor: patches must fit both orientations
    oblong = smooth_volume(shape=(7, 40, 48), spacing=(1.0, 1.0, 6.5))
    assert super_resolve(oblong, "selfsr", 1.0, device="cpu", iterations=5).array.shape == (40, 40, 48)
    with pytest.raises(InputError, match="too small to learn from"):
        super_resolve(smooth_volume(shape=(3, 6, 6), spacing=(1.0, 1.0, 4.0)), "selfsr", device="cpu", iterations=5)


def test_seed_makes_results_repeatable():
    vol = smooth_volume()
    a = super_resolve(vol, "selfsr", device="cpu", iterations=20, seed=3)
    b = super_resolve(vol, "selfsr", device="cpu", iterations=20, seed=3)
    c = super_resolve(vol, "selfsr", device="cpu", iterations=20, seed=4)
    np.testing.assert_array_equal(a.array, b.array)
    assert not np.array_equal(a.array, c.array)


def test_cancel_during_training():
    token = CancelToken()
    with pytest.raises(Cancelled):
        super_resolve(smooth_volume(), "selfsr", device="cpu", iterations=500, cancel=token,
                      progress=lambda f, m: token.cancel() if "training" in m else None)


def test_saved_model_reruns_without_training_and_warm_starts(tmp_path):
    vol = smooth_volume()
    card = tmp_path / "mine.json"
    first = super_resolve(vol, "selfsr", device="cpu", iterations=20, save_model=str(card))
    again = super_resolve(vol, "selfsr", device="cpu", model=str(card), progress=lambda f, m: None)
    np.testing.assert_allclose(again.array, first.array, atol=1e-6)
    warm = super_resolve(vol, "selfsr", device="cpu", iterations=5, warm_start=str(card))
    assert warm.array.shape == first.array.shape
    with pytest.raises(InputError, match="needs x"):
        super_resolve(smooth_volume(spacing=(0.8, 0.8, 2.4)), "selfsr", device="cpu", model=str(card))


def test_bad_options_are_named():
    with pytest.raises(InputError, match="budget .* must be one of fast"):
        super_resolve(smooth_volume(), "selfsr", device="cpu", budget="huge")
    with pytest.raises(InputError, match="has no option backend"):
        super_resolve(smooth_volume(), "selfsr", device="cpu", backend="onnx")


def test_learns_more_than_interpolation_on_the_phantom():
    thin = make_phantom(size=(64, 56, 41))
    thick = simulate_thick(thin, 5)
    base = evaluate(super_resolve(thick, "linear", 1.0), thin, "plain")
    results = {}
    torch.manual_seed(123)
    before = torch.get_rng_state()
    learned = evaluate(super_resolve(thick, "selfsr", 1.0, device="cpu", iterations=200, results=results), thin,
                       "plain")
    assert learned["psnr"] > base["psnr"] + 1.0
    assert results["training"]["iterations"] == 200 and not hasattr(get_method("selfsr"), "last_training")
    assert torch.equal(torch.get_rng_state(), before)          # the process's random state is untouched


def test_metal_keeps_its_value_at_the_acquired_slices():
    """Far beyond the volume's percentile range (metal), the input's values come back at the acquired
    slices instead of the network's overshoot."""
    thin = make_phantom(size=(48, 40, 31))
    thick = simulate_thick(thin, 5)
    array = thick.array.astype(np.float32)
    array[3, 18:21, 20:23] = 12618
    out = super_resolve(thick.with_array(array), "selfsr", 1.0, device="cpu", iterations=60).array
    assert out[15].max() == pytest.approx(12618, rel=0.01)

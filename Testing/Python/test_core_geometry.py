"""Geometry of through-plane upsampling: axis detection, output grid, oblique volumes."""
import numpy as np
import pytest

from conftest import make_volume, random_rotation
from volumetricsr import AlreadyIsotropicError, InputError, Volume, super_resolve
from volumetricsr.data.geometry import from_stack, plan_grid, through_plane_axis, to_stack


def smooth_field(points: np.ndarray) -> np.ndarray:
    """An analytic function of physical position (mm), smooth on the scale of a few mm."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.sin(x / 9.0 + 0.3) * np.cos(y / 11.0) + 0.5 * np.sin((x + z) / 13.0) + 0.002 * z * y


def test_oblique_thick_axis_i_bspline_matches_analytic_function():
    rng = np.random.default_rng(7)
    direction = random_rotation(rng)
    spacing = (2.5, 0.7, 0.8)          # thick along I, not K; factor 2.5/0.7 is not an integer
    thick = Volume(np.zeros((22, 24, 14), np.float32), spacing, (12.0, -30.0, 4.0), direction)
    thick = thick.with_array(smooth_field(thick.voxel_centres()).astype(np.float32))

    out = super_resolve(thick, "bspline")

    assert through_plane_axis(thick) == 0
    assert out.array.shape[2] == round(13 * 2.5 / 0.7) + 1
    np.testing.assert_allclose(out.origin, thick.origin)
    np.testing.assert_allclose(out.direction, direction)
    np.testing.assert_allclose(out.spacing[1:], spacing[1:])
    last_in = thick.index_to_physical(np.array([13, 0, 0]))
    last_out = out.index_to_physical(np.array([out.size[0] - 1, 0, 0]))
    np.testing.assert_allclose(last_out, last_in, atol=1e-9)      # same physical extent

    truth = smooth_field(out.voxel_centres())
    err = np.abs(out.array - truth)
    # nearest neighbour along the thick axis, for scale
    nearest_i = np.rint(np.arange(out.size[0]) * (thick.size[0] - 1) / (out.size[0] - 1)).astype(int)
    nn_err = np.abs(thick.array[:, :, nearest_i] - truth)
    inner = (slice(None), slice(None), slice(4, -4))              # away from the spline's ends
    assert err[inner].max() < 0.1 * nn_err[inner].max()
    assert err.mean() < 0.1 * nn_err.mean()


def test_integer_factor_keeps_thick_slices_in_place():
    vol = make_volume(size_ijk=(6, 5, 7), spacing=(0.5, 0.5, 2.0))
    for method in ("linear", "bspline", "sinc"):
        out = super_resolve(vol, method, 0.5)
        assert out.array.shape == (25, 5, 6)
        np.testing.assert_allclose(out.array[::4], vol.array, atol=1e-3)


def test_non_integer_factor_grid():
    vol = make_volume(size_ijk=(4, 4, 11), spacing=(0.7, 0.7, 2.5))
    grid = plan_grid(vol, 0.7)
    assert grid.n_out == round(10 * 2.5 / 0.7) + 1
    assert grid.spacing_out == pytest.approx(2.5 * 10 / (grid.n_out - 1))
    assert abs(grid.spacing_out - 0.7) < 0.01
    np.testing.assert_allclose(grid.input_positions()[[0, -1]], [0, 10])


def test_default_spacing_is_finest_in_plane():
    vol = make_volume(spacing=(0.9, 0.8, 3.2))
    grid = plan_grid(vol)
    assert grid.axis == 2 and grid.spacing_out == pytest.approx(0.8, rel=0.02)


def test_named_axis_and_stack_round_trip():
    vol = make_volume(size_ijk=(5, 6, 7))
    for axis in (0, 1, 2):
        stack = to_stack(vol.array, axis)
        assert stack.shape[0] == vol.size[axis]
        np.testing.assert_array_equal(from_stack(stack, axis), vol.array)
    assert plan_grid(vol, 0.5, axis="J", force=True).axis == 1


def test_ambiguous_and_isotropic_and_coarser_targets():
    with pytest.raises(InputError, match="ambiguous"):
        through_plane_axis(make_volume(spacing=(3.0, 3.0, 1.0)))
    iso = make_volume(spacing=(1.0, 1.0, 1.0))
    with pytest.raises(AlreadyIsotropicError, match="nothing to do"):
        plan_grid(iso)
    assert plan_grid(iso, force=True).n_out == iso.size[2]
    with pytest.raises(InputError, match="coarser"):
        plan_grid(make_volume(spacing=(1, 1, 2.0)), 3.0)
    with pytest.raises(InputError, match="positive"):
        plan_grid(make_volume(), -1.0)


@pytest.mark.parametrize("confidence", [False, True])
def test_a_run_too_large_for_memory_is_refused_before_any_allocation(monkeypatch, confidence):
    """``--spacing 0.00001``: refused with the size and the finest spacing that fits, which does fit
    (and one 10 % finer does not); nothing output-sized is allocated before the refusal."""
    import re
    import tracemalloc

    from volumetricsr.app import api

    monkeypatch.setattr(api, "available_bytes", lambda: 64 << 20)
    thick = make_volume(size_ijk=(24, 20, 6), spacing=(0.8, 0.8, 4.0))
    tracemalloc.start()
    with pytest.raises(InputError, match=r"Not enough memory: the result would be 24 x 20 x 2000001 voxels "
                                         r"\(3\.58 GiB as float32\).* 64 MiB are available") as refused:
        super_resolve(thick, "linear", 0.00001, confidence_map=confidence)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20
    finest = float(re.search(r"--spacing ([0-9.e+-]+)\)", str(refused.value)).group(1))
    api.check_memory(api.get_method("linear"), thick, finest, confidence=confidence)
    with pytest.raises(InputError, match="Not enough memory"):
        api.check_memory(api.get_method("linear"), thick, finest * 0.9, confidence=confidence)
    out = super_resolve(thick, "linear", finest, confidence_map=confidence)
    assert out.array.nbytes < 64 << 20


def test_finest_spacing_for_a_slice_budget():
    from volumetricsr.data.geometry import finest_spacing

    grid = plan_grid(make_volume(size_ijk=(8, 8, 11), spacing=(1.0, 1.0, 3.0)), 1.0)
    assert finest_spacing(grid, 31) == 1.0 and plan_grid(make_volume(size_ijk=(8, 8, 11), spacing=(1, 1, 3)),
                                                          finest_spacing(grid, 31)).n_out == 31
    assert finest_spacing(grid, 40) == 0.77          # 30/39 = 0.769..., rounded up
    assert finest_spacing(grid, 11) is None and finest_spacing(grid, 5) is None

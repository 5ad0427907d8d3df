"""The sliding-window engine, checked with small torch modules whose exact output is known."""
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from volumetricsr import CancelToken, Cancelled, InputError
from volumetricsr.compute.engine import importance_1d, sliding_window_inference, window_starts
from volumetricsr.compute.export import export_onnx
from volumetricsr.compute.predictors import OnnxPredictor, TorchPredictor
from volumetricsr.data.resampling import apply_along_first_axis, linear_weights


class Identity(torch.nn.Module):
    def forward(self, x):
        return x * 1.0


class LinearUpsampler(torch.nn.Module):
    """``d`` thick slices -> ``(d-1)*factor+1`` thin slices by linear interpolation (TVSRN's shape)."""

    def __init__(self, factor: int = 5):
        super().__init__()
        self.factor = factor
        self.gain = torch.nn.Parameter(torch.ones(()))

    def forward(self, x):
        d, h, w = x.shape[2:]
        return self.gain * F.interpolate(x, size=((d - 1) * self.factor + 1, h, w), mode="trilinear",
                                         align_corners=True)


def global_linear(volume: np.ndarray, factor: int) -> np.ndarray:
    n = volume.shape[0]
    positions = np.arange((n - 1) * factor + 1) / factor
    return apply_along_first_axis(linear_weights(positions, n), volume.astype(np.float32))


@pytest.fixture
def vol():
    return torch.from_numpy(np.random.default_rng(1).normal(size=(1, 11, 37, 29)).astype(np.float32))


@pytest.mark.parametrize("blend", ["gaussian", "uniform"])
@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("accumulate_on", ["cpu", "device"])
def test_identity_is_reproduced_everywhere(vol, blend, batch_size, accumulate_on):
    out = sliding_window_inference(vol, Identity(), (4, 16, 12), overlap=(0.5, 0.25, 0.4),
                                   blend=blend, batch_size=batch_size, accumulate_on=accumulate_on)
    assert out.shape == vol.shape
    torch.testing.assert_close(out, vol, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("factor", [2, 5])
def test_depth_changing_windows_match_global_linear_interpolation(vol, factor):
    out = sliding_window_inference(vol, LinearUpsampler(factor), (4, 16, 16), scale=(factor, 1, 1),
                                   overlap=(0.5, 0.25, 0.25), blend="gaussian", batch_size=2)
    expected = global_linear(vol[0].numpy(), factor)
    assert out.shape == (1, (11 - 1) * factor + 1, 37, 29)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)


def test_volume_smaller_than_window_is_padded_and_cropped():
    small = torch.from_numpy(np.random.default_rng(2).normal(size=(1, 3, 10, 7)).astype(np.float32))
    out = sliding_window_inference(small, LinearUpsampler(5), (4, 16, 16), scale=(5, 1, 1))
    assert out.shape == (1, 11, 10, 7)
    np.testing.assert_allclose(out[0].numpy(), global_linear(small[0].numpy(), 5), atol=1e-5)


def test_window_starts_end_flush_and_cover():
    assert window_starts(11, 4, 2) == [0, 2, 4, 6, 7]
    assert window_starts(3, 4, 2) == [0]
    assert window_starts(8, 4, 4) == [0, 4]


def test_importance_maps():
    g = importance_1d(9, "gaussian")
    assert g.argmax() == 4 and g.min() > 0 and torch.allclose(g, g.flip(0))
    assert torch.equal(importance_1d(5, "uniform"), torch.ones(5))
    with pytest.raises(ValueError):
        importance_1d(5, "median")


def test_gaps_between_windows_are_refused(vol):
    with pytest.raises(ValueError, match="gaps"):
        sliding_window_inference(vol, Identity(), (2, 8, 8), stride=(4, 8, 8))


def test_progress_and_cancel(vol):
    seen = []
    sliding_window_inference(vol, Identity(), (4, 16, 16), progress=lambda f, m: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 3

    token = CancelToken()

    def cancel_after_first(fraction, message):
        token.cancel()

    with pytest.raises(Cancelled):
        sliding_window_inference(vol, Identity(), (4, 16, 16), progress=cancel_after_first, cancel=token)


def test_torch_and_onnx_predictors_agree(vol, tmp_path):
    net = LinearUpsampler(5)
    path = tmp_path / "up.onnx"
    export_onnx(net, path, (1, 1, 4, 16, 16), (0, 3, 4))
    kwargs = dict(window=(4, 16, 16), scale=(5, 1, 1), batch_size=2)
    a = sliding_window_inference(vol, TorchPredictor(net), **kwargs)
    b = sliding_window_inference(vol, OnnxPredictor(path), **kwargs)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_bf16_autocast_runs_close_to_fp32(vol):
    conv = torch.nn.Conv3d(1, 1, 3, padding=1)
    a = sliding_window_inference(vol, TorchPredictor(conv, precision="fp32"), (4, 16, 16))
    b = sliding_window_inference(vol, TorchPredictor(conv, precision="bf16"), (4, 16, 16))
    assert (a - b).abs().max() < 0.05 * a.abs().max()


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    from volumetricsr.compute import predictors

    monkeypatch.setattr(predictors, "native_bf16", lambda device: native)
    assert predictors.resolve_precision("auto", "cpu") == ("bf16" if native else "fp32")
    assert TorchPredictor(torch.nn.Identity(), "cpu", "auto").precision == ("bf16" if native else "fp32")
    assert predictors.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(InputError, match="Unknown precision 'half'"):
        TorchPredictor(torch.nn.Identity(), "cpu", "half")


def test_cpu_calls_keep_freed_memory_only_while_running():
    from volumetricsr.compute import cpu_memory

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(cpu_memory.active())
            return x

    assert not cpu_memory.active()
    TorchPredictor(Probe())(torch.zeros(1, 1, 2, 2, 2))
    with cpu_memory.keep_freed_memory():
        with cpu_memory.keep_freed_memory():
            assert cpu_memory.active()
        assert cpu_memory.active()
    assert seen == [True] and not cpu_memory.active()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_kept_memory_is_reused_inside_and_returned_after():
    from volumetricsr.compute import cpu_memory

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20

    start = rss_mib()
    with cpu_memory.keep_freed_memory():
        blocks = [torch.ones(25_000_000) for _ in range(4)]    # 4 x 100 MB, above glibc's 32 MiB ceiling
        del blocks
        kept = rss_mib()
    after = rss_mib()
    assert kept > start + 300          # freed, but kept for the next layer
    assert after < start + 100         # handed back on leaving

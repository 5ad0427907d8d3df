"""GPUs as users meet them (out of memory, GPUs the installed torch cannot drive) and thread set-up,
tested with fakes: a predictor that raises torch.cuda.OutOfMemoryError, a faked device report."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from test_tvsrn_method import ct_volume, models  # noqa: F401  (models: a fixture)
from volumetricsr import InputError, Volume, super_resolve
from volumetricsr.compute import device as dev
from volumetricsr.compute.engine import sliding_window_inference
from volumetricsr.common.errors import Notice
from volumetricsr.methods import get_method, network


def doubling(batch: torch.Tensor) -> torch.Tensor:
    return batch * 2 + batch.mean(dim=(1, 2, 3, 4), keepdim=True)     # per window


def oom_above(limit: int, calls: list):
    def predictor(batch):
        calls.append(len(batch))
        if len(batch) > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return doubling(batch)
    return predictor


def test_out_of_memory_halves_the_batch_and_gives_the_same_result():
    x = torch.rand(1, 10, 20, 20)
    expected = sliding_window_inference(x, doubling, (4, 8, 8), overlap=0.5, batch_size=1)
    calls, messages = [], []
    got = sliding_window_inference(x, oom_above(2, calls), (4, 8, 8), overlap=0.5, batch_size=8,
                                   progress=lambda f, m: messages.append(m))
    assert torch.equal(got, expected)
    assert calls[:3] == [8, 4, 2] and max(calls[3:]) <= 2
    assert any("out of memory: batches of 2 windows" in m for m in messages)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        sliding_window_inference(x, oom_above(0, []), (4, 8, 8), batch_size=4)


def test_out_of_memory_at_batch_1_shrinks_windows_then_falls_back_to_the_cpu(models, monkeypatch):
    """``Method.run`` on device 'cuda' with a predictor that always runs out of memory there."""
    original = network.NetworkMethod.predictor
    used = []

    def gpu_that_is_too_small(self, card, window, device, backend, precision):
        used.append((device, tuple(window)))
        if device != "cpu":
            return oom_above(0, [])
        return original(self, card, window, device, backend, precision)

    monkeypatch.setattr(network.NetworkMethod, "predictor", gpu_that_is_too_small)
    monkeypatch.setattr(network, "MIN_WINDOW", 8)
    vol = ct_volume(7, rows=16, cols=16)
    results = {}
    with pytest.warns(Notice, match=r"ran out of memory even with one 4x8x8 window at a time; running on the CPU"):
        got = get_method("tvsrn").run(vol, 0.8, device="cuda", model="tiny", window=(4, 16, 16), results=results,
                                     force=True)
    assert used == [("cuda", (4, 16, 16)), ("cuda", (4, 8, 8)), ("cpu", (4, 8, 8))]
    expected = super_resolve(vol, "tvsrn", 0.8, model="tiny", device="cpu", window=(4, 8, 8), force=True)
    np.testing.assert_array_equal(got.array, expected.array)
    assert "running on the CPU" in results["warnings"][0]


@pytest.fixture
def fake_gpus(monkeypatch):
    """Two GPUs: cuda:0 too new for this build (sm_120), cuda:1 an sm_86 it can drive."""
    capability = {0: (12, 0), 1: (8, 6)}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: capability[i])
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: ["sm_75", "sm_80", "sm_90"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: ["RTX 5090", "RTX 3090"][i])
    monkeypatch.setattr(dev, "_first_operation", lambda index: None)
    return capability


def test_auto_skips_a_gpu_this_torch_cannot_drive_and_says_why(fake_gpus):
    with pytest.warns(Notice, match=r"Skipping GPU cuda:0: RTX 5090 has compute capability 12.0 \(sm_120\), which "
                                    r"this PyTorch .* was not compiled for \(it has sm_75 sm_80 sm_90\)"):
        assert dev.resolve_device("auto") == "cuda:1"           # sm_86 runs sm_80 code
    with pytest.raises(InputError, match="GPU cuda cannot be used: RTX 5090 has compute capability 12.0"):
        dev.resolve_device("cuda")
    assert dev.resolve_device("cuda:1") == "cuda:1"


def test_a_gpu_that_fails_its_first_operation_is_skipped(fake_gpus, monkeypatch):
    fake_gpus[0] = (8, 0)

    def broken(index):
        if index == 0:
            raise RuntimeError("CUDA error: CUDA driver version is insufficient for CUDA runtime version")

    monkeypatch.setattr(dev, "_first_operation", broken)
    with pytest.warns(Notice, match="cuda:0: RTX 5090 fails a first operation .*driver version is insufficient"):
        assert dev.resolve_device("auto") == "cuda:1"


def test_a_cpu_only_build_picks_the_cpu_quietly(monkeypatch, recwarn):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert dev.resolve_device("auto") == "cpu"
    assert not [w for w in recwarn if issubclass(w.category, Notice)]


def test_threads_follow_the_usable_cores_or_the_users_choice(monkeypatch):
    import os

    from volumetricsr.compute import threads

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"           # set before torch loaded OpenMP
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(threads, "_cgroup_quota", lambda: 1.5)     # a container allowed 1.5 cores
        assert threads.usable_cores() == 1 and threads.configure() == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
        assert threads.configure(3) == 3 and torch.get_num_threads() == 3
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert threads.configure() == 2
    finally:
        torch.set_num_threads(before)


def test_selfsr_trains_small_steps_on_one_thread_and_repeats_on_any_thread_count():
    """Steps too small to share (SelfSRTask.SHARED_ABOVE) run on one thread whatever the pool, and
    inference does not depend on the pool's size: such a seeded run repeats bit for bit on a loaded
    or a quiet machine. Larger steps use the pool."""
    from volumetricsr.methods.selfsr.task import SelfSRTask

    seen = []
    real = SelfSRTask.train_step

    def step(task, *args):
        seen.append(torch.get_num_threads())
        return real(task, *args)

    def volume(size, thick):
        return Volume(np.random.default_rng(0).normal(size=(6, size, size)).cumsum(1).astype(np.float32),
                      (0.8, 0.8, thick), (0.0, 0.0, 0.0), np.eye(3))

    small, large = volume(24, 8.0), volume(64, 4.8)    # x10: 16 x 2 x 24 x 16 values; x6: 16 x 8 x 48 x 16
    before, results = torch.get_num_threads(), []
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(SelfSRTask, "train_step", step)
            for n in (2, 1):
                torch.set_num_threads(n)
                results.append(super_resolve(small, "selfsr", iterations=30).array)
                assert torch.get_num_threads() == n          # the pool is given back
            assert set(seen) == {1} and len(seen) == 60
            torch.set_num_threads(2)
            seen.clear()
            super_resolve(large, "selfsr", iterations=3)
            assert seen == [2, 2, 2]
    finally:
        torch.set_num_threads(before)
    assert np.array_equal(*results)


def test_a_plane_method_out_of_memory_on_the_gpu_finishes_on_the_cpu(monkeypatch):
    """The plane methods share the fallback: CT-guided (its shipped model) on 'cuda' with a predictor
    that always runs out of memory there gives the CPU's result, with a warning."""
    from volumetricsr.methods.plane import PlaneMethod

    original = PlaneMethod.predictor
    used = []

    def gpu_that_is_too_small(self, net, device):
        used.append(device)
        return oom_above(0, []) if device != "cpu" else original(self, net, device)

    monkeypatch.setattr(PlaneMethod, "predictor", gpu_that_is_too_small)
    rng = np.random.default_rng(0)
    mr = Volume((rng.random((6, 24, 24)) * 300).astype(np.float32), spacing=(1.0, 1.0, 4.0))
    results = {}
    with pytest.warns(Notice, match=r"ran out of memory even with one plane at a time; running on the CPU"):
        got = get_method("ctguided").run(mr, None, device="cuda", results=results)
    assert used == ["cuda", "cpu", "cuda", "cpu"]          # each orientation: the GPU, then the CPU
    expected = get_method("ctguided").run(mr, None, device="cpu")
    np.testing.assert_array_equal(got.array, expected.array)
    assert all("running on the CPU" in w for w in results["warnings"])

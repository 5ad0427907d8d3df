"""The command line, including every bad input: a clear message, exit code 2, nothing written."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_volume
from volumetricsr import CancelToken, Cancelled, read_volume, super_resolve, write_volume
from volumetricsr.app.cli import main


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def thick(tmp_path):
    return write_volume(make_volume(size_ijk=(12, 10, 6), spacing=(0.8, 0.8, 4.0), dtype=np.int16),
                        tmp_path / "thick.nii.gz")


def test_infer_writes_isotropic_volume(tmp_path, thick, capsys):
    code, out, _ = run(capsys, "infer", thick, tmp_path / "sr.nrrd", "--method", "sinc", "--quiet")
    assert code == 0 and "wrote" in out
    sr = read_volume(tmp_path / "sr.nrrd")
    assert sr.array.shape == (26, 10, 12) and sr.array.dtype == np.float32
    assert sr.spacing == pytest.approx((0.8, 0.8, 0.8))


def test_infer_options_dtype_spacing_axis(tmp_path, thick, capsys):
    code, *_ = run(capsys, "infer", thick, tmp_path / "a.nii.gz", "--spacing", "1.0", "--dtype", "input",
                   "--axis", "K", "--quiet")
    a = read_volume(tmp_path / "a.nii.gz")
    assert code == 0 and a.array.dtype == np.int16 and a.array.shape[0] == 21


def test_infer_to_dicom_folder(tmp_path, thick, capsys):
    code, *_ = run(capsys, "infer", thick, tmp_path / "dicom_out", "--quiet")
    assert code == 0 and read_volume(tmp_path / "dicom_out").array.shape == (26, 10, 12)


def bad_inputs(tmp_path, thick):
    """(description, argv, expected message) for every bad input the CLI must catch."""
    iso = write_volume(make_volume(spacing=(1, 1, 1)), tmp_path / "iso.nii.gz")
    few = write_volume(make_volume(size_ijk=(8, 8, 3)), tmp_path / "few.nii.gz")
    nan_vol = make_volume()
    nan_vol.array[2, 3, 4] = np.inf
    nan = write_volume(nan_vol, tmp_path / "nan.mha")
    (tmp_path / "garbage.nii.gz").write_bytes(b"garbage")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    return [
        ("already isotropic", ["infer", iso, tmp_path / "o1.nii.gz"], "already has 1 mm"),
        ("too few slices", ["infer", few, tmp_path / "o2.nii.gz", "--method", "bspline"], "at least 4 slices"),
        ("NaN/inf voxels", ["infer", nan, tmp_path / "o3.nii.gz"], "NaN or infinite"),
        ("missing file", ["infer", tmp_path / "none.nii.gz", tmp_path / "o4.nii.gz"], "No such file"),
        ("unreadable file", ["infer", tmp_path / "garbage.nii.gz", tmp_path / "o5.nii.gz"], "Could not read"),
        ("unwritable output", ["infer", thick, tmp_path / "no" / "o6.nii.gz"], "does not exist"),
        ("output folder in use", ["infer", thick, tmp_path / "full"], "not an empty folder"),
        ("unknown method", ["infer", thick, tmp_path / "o7.nii.gz", "--method", "magic"], "Unknown method"),
        ("coarser target", ["infer", thick, tmp_path / "o8.nii.gz", "--spacing", "9"], "coarser"),
        ("option of another method", ["infer", thick, tmp_path / "o9.nii.gz", "--method", "bspline", "--model", "x"],
         "has no option model"),
    ]


def test_every_bad_input_gets_a_clear_error_and_nothing_is_written(tmp_path, thick, capsys):
    before = sorted(p.name for p in tmp_path.iterdir())
    for what, argv, message in bad_inputs(tmp_path, thick):
        created = sorted(p.name for p in tmp_path.iterdir())
        code, out, err = run(capsys, *argv)
        assert code == 2, what
        last = err.strip().splitlines()[-1]
        assert message in last and last.startswith("volumetricsr: error:"), (what, err)
        assert sorted(p.name for p in tmp_path.iterdir()) == created, what
    assert set(before) <= {p.name for p in tmp_path.iterdir()}


def test_force_resamples_an_isotropic_volume(tmp_path, capsys):
    iso = write_volume(make_volume(spacing=(1, 1, 1)), tmp_path / "iso.nii.gz")
    code, *_ = run(capsys, "infer", iso, tmp_path / "o.nii.gz", "--force", "--quiet")
    assert code == 0 and read_volume(tmp_path / "o.nii.gz").array.shape == read_volume(iso).array.shape


def test_cancel_stops_a_run_and_leaves_the_input_alone():
    vol = make_volume(size_ijk=(64, 64, 10))
    original = vol.array.copy()
    token = CancelToken()
    with pytest.raises(Cancelled):
        super_resolve(vol, "bspline", progress=lambda f, m: token.cancel(), cancel=token)
    np.testing.assert_array_equal(vol.array, original)
    super_resolve(vol, "bspline")
    np.testing.assert_array_equal(vol.array, original)


def test_methods_models_info_and_simulate_evaluate(tmp_path, thick, capsys, monkeypatch):
    code, out, _ = run(capsys, "methods", "--json")
    names = {m["name"] for m in json.loads(out)}
    assert code == 0 and {"linear", "bspline", "sinc"} <= names
    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(tmp_path))
    assert run(capsys, "models")[0] == 0
    code, out, _ = run(capsys, "info", thick)
    assert code == 0 and "axis K: 6 slices at 4 mm -> 26 slices at 0.8 mm (x5)" in out
    thin = write_volume(make_volume(size_ijk=(16, 16, 31), spacing=(0.8, 0.8, 0.8), dtype=np.int16),
                        tmp_path / "thin.nii.gz")
    assert run(capsys, "simulate-thick", thin, tmp_path / "t.nii.gz", "--factor", "5", "--axis", "K")[0] == 0
    assert read_volume(tmp_path / "t.nii.gz").array.shape == (7, 16, 16)
    assert run(capsys, "infer", tmp_path / "t.nii.gz", tmp_path / "p.nii.gz", "--spacing", "0.8", "--quiet")[0] == 0
    code, out, _ = run(capsys, "evaluate", tmp_path / "p.nii.gz", thin, "--protocol", "plain", "--json")
    result = json.loads(out)
    assert code == 0 and result["slices"] == 31 and 10 < result["psnr"] < 100 and 0 < result["ssim"] < 1


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("volumetricsr")
    out = subprocess.run([str(exe), "methods"], capture_output=True, text=True, check=True).stdout
    assert "bspline" in out


def test_demo_runs_the_main_job_on_the_built_in_phantom(tmp_path, capsys):
    code, out, _ = run(capsys, "demo", tmp_path / "demo", "--methods", "linear", "bspline", "sinc")
    assert code == 0 and "bspline" in out
    results = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert results["linear"]["psnr"] < results["bspline"]["psnr"]       # the phantom tells methods apart
    assert (tmp_path / "demo" / "comparison.png").stat().st_size > 10_000
    thin, thick = read_volume(tmp_path / "demo" / "thin.nii.gz"), read_volume(tmp_path / "demo" / "thick.nii.gz")
    assert thick.spacing[2] == 5 * thin.spacing[2]


@pytest.mark.parametrize("torch_is", ["missing", "broken"])
def test_interpolation_works_without_torch(tmp_path, thick, torch_is):
    """A fresh environment (a new Slicer) can interpolate before PyTorch is installed, and with a
    PyTorch whose libraries fail to load (Windows: OSError from a DLL)."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise OSError('[WinError 126] a DLL could not be loaded')\n")
    hide = ("sys.modules['torch'] = None" if torch_is == "missing" else f"sys.path.insert(0, {str(fake.parent)!r})")
    script = (
        f"import sys; {hide}\n"                               # makes `import torch` fail
        "from volumetricsr.app.cli import main\n"
        f"code = main(['infer', {str(thick)!r}, {str(tmp_path / 'o.nii.gz')!r}, '--quiet'])\n"
        "assert code == 0 and 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "from volumetricsr import get_method\n"
        "try:\n    get_method('tvsrn')\nexcept Exception as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "need PyTorch" in done.stdout and (tmp_path / "o.nii.gz").is_file()
    assert ("OSError" in done.stdout) == (torch_is == "broken")


def test_the_torch_methods_listed_before_an_install_are_the_registered_ones():
    from volumetricsr import get_method
    from volumetricsr.methods import TORCH_METHODS, TORCH_PROBLEM, load_torch_methods

    assert TORCH_PROBLEM == "" and load_torch_methods() == ""
    assert {name: get_method(name).title for name in TORCH_METHODS} == TORCH_METHODS


@pytest.fixture
def wide(tmp_path):
    """int32 beyond 2^24, constant along the slices: every output slice must equal them exactly."""
    plane = 100000001 + np.arange(20)[None, :] * 3 - np.arange(16)[:, None]
    vol = make_volume(size_ijk=(20, 16, 6), spacing=(0.8, 0.8, 4.0)).with_array(
        np.repeat(plane[None], 6, axis=0).astype(np.int32))
    return write_volume(vol, tmp_path / "wide.nrrd"), plane


@pytest.mark.parametrize("method", ["linear", "bspline", "sinc"])
@pytest.mark.parametrize("extra", [[], ["--enforce-consistency", "--thickness", "4"]])
def test_integers_beyond_float32_keep_their_values(tmp_path, capsys, wide, method, extra):
    path, plane = wide
    code, _, err = run(capsys, "infer", path, tmp_path / "o.nrrd", "--method", method, "--dtype", "input",
                       "--quiet", *extra)
    out = read_volume(tmp_path / "o.nrrd").array
    assert code == 0 and "warning" not in err, err
    assert out.dtype == np.int32 and out.shape[0] == 26 and (out == plane).all()    # float32: 100000008


def test_integers_beyond_float32_rounded_get_one_warning_saying_so(tmp_path, capsys, wide, monkeypatch):
    from volumetricsr.methods.interpolation import LINEAR

    path, plane = wide
    code, _, err = run(capsys, "infer", path, tmp_path / "f.nrrd", "--method", "linear", "--quiet")
    warned = [ln for ln in err.splitlines() if "warning" in ln]
    assert code == 0 and len(warned) == 1 and "the result is float32 (--dtype input keeps them): they were " \
        "rounded, by up to 4" in warned[0], err
    monkeypatch.setattr(LINEAR, "keeps_wide_values", False)          # a method that computes in float32
    code, _, err = run(capsys, "infer", path, tmp_path / "i.nrrd", "--method", "linear", "--dtype", "input", "--quiet")
    warned = [ln for ln in err.splitlines() if "warning" in ln]
    assert code == 0 and len(warned) == 1 and "Linear computes in float32: they were rounded" in warned[0], err
    assert not (read_volume(tmp_path / "i.nrrd").array == plane).all()      # it said so because they were

"""Reading and writing volumes: formats, geometry, DICOM series, atomic writes, bad files."""
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import edit_nifti, make_volume, random_rotation
from volumetricsr import InputError, OutputError, read_volume, write_volume
from volumetricsr.data.io import check_writable


def oblique_volume(dtype=np.int16):
    return make_volume(size_ijk=(9, 7, 5), spacing=(0.7, 0.8, 2.5),
                       direction=random_rotation(np.random.default_rng(3)), dtype=dtype)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_file_round_trip_keeps_geometry(tmp_path, suffix):
    vol = oblique_volume(np.float32)
    path = write_volume(vol, tmp_path / f"v{suffix}")
    back = read_volume(path)
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-6)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []   # no leftovers


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_dicom_series_round_trip(tmp_path, dtype):
    vol = oblique_volume(dtype)
    write_volume(vol, tmp_path / "series")
    assert len(list((tmp_path / "series").glob("*.dcm"))) == vol.size[2]
    back = read_volume(tmp_path / "series")
    tol = 0 if dtype == np.int16 else 0.01      # float stored with a rescale slope of 0.01 here
    np.testing.assert_allclose(back.array, vol.array, atol=tol)
    np.testing.assert_allclose(back.spacing, vol.spacing, rtol=1e-5)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-3)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-5)
    # a single file of the series stands for the series
    one = sorted((tmp_path / "series").glob("*.dcm"))[0]
    assert read_volume(one).array.shape == vol.array.shape


def test_dicom_with_missing_slice_is_refused(tmp_path):
    write_volume(oblique_volume(), tmp_path / "series")
    sorted((tmp_path / "series").glob("*.dcm"))[2].unlink()
    with pytest.raises(InputError, match="unequal slice spacing"):
        read_volume(tmp_path / "series")


def test_write_is_atomic_when_the_writer_fails(tmp_path, monkeypatch):
    target = tmp_path / "out.nii.gz"
    target.write_bytes(b"previous result")

    def failing_write(image, path, *args):
        Path(path).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", failing_write)
    with pytest.raises(OutputError, match="disk full"):
        write_volume(oblique_volume(), target)
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_missing_unreadable_and_wrong_kind_of_files(tmp_path):
    with pytest.raises(InputError, match="No such file"):
        read_volume(tmp_path / "nope.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="Could not read"):
        read_volume(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="No DICOM series"):
        read_volume(tmp_path / "empty")


def test_2d_4d_vector_and_nan_images_are_refused(tmp_path):
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32), str(tmp_path / "2d.nrrd"))
    sitk.WriteImage(sitk.Image([4, 4, 4, 3], sitk.sitkFloat32), str(tmp_path / "4d.nii.gz"))
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3), str(tmp_path / "vec.nrrd"))
    sitk.WriteImage(sitk.Image([8, 8, 1], sitk.sitkInt16), str(tmp_path / "slice.nii.gz"))
    nan = np.zeros((4, 5, 6), np.float32)
    nan[1, 2, 3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(nan), str(tmp_path / "nan.mha"))  # ITK's NIfTI IO reads NaN as 0
    for name, message in [("2d.nrrd", "2-D image"), ("4d.nii.gz", "4-D image"), ("vec.nrrd", "components"),
                          ("slice.nii.gz", "single slice"), ("nan.mha", "NaN")]:
        with pytest.raises(InputError, match=message):
            read_volume(tmp_path / name)


def test_unwritable_outputs_fail_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    cases = [(tmp_path / "missing" / "o.nii.gz", "does not exist"),
             (tmp_path / "file" / "o.nii.gz", "does not exist"),
             (tmp_path / "o.png", "Unknown volume format"),
             (Path("/proc/o.nii.gz"), "not writable")]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases.append((tmp_path / "full", "not an empty folder"))
    for path, message in cases:
        with pytest.raises(OutputError, match=message):
            check_writable(path)


def _tags(path: Path) -> dict:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return {k: reader.GetMetaData(k).strip() for k in reader.GetMetaDataKeys()}


def test_dicom_output_is_a_derived_series_that_keeps_the_window(tmp_path):
    from volumetricsr import super_resolve

    thick = make_volume(size_ijk=(12, 10, 6), spacing=(0.8, 0.8, 4.0), dtype=np.int16)
    write_volume(thick, tmp_path / "thick")
    for f in sorted((tmp_path / "thick").glob("*.dcm")):      # a scanner's window and thickness
        image = sitk.ReadImage(str(f))
        for tag, value in (("0028|1050", "40"), ("0028|1051", "400"), ("0018|0050", "5")):
            image.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(f))
        writer.Execute(image)
    out = super_resolve(read_volume(tmp_path / "thick"), "linear", 1.0)
    write_volume(out, tmp_path / "thin")
    files = sorted((tmp_path / "thin").glob("*.dcm"))
    assert len(files) == 21
    tags = _tags(files[3])
    assert tags["0008|0008"] == "DERIVED\\SECONDARY"
    assert "Linear" in tags["0008|2111"] and "from 4 mm slices to 1 mm spacing" in tags["0008|2111"]
    assert (tags["0028|1050"], tags["0028|1051"]) == ("40", "400")        # the window is kept
    assert float(tags["0018|0088"]) == pytest.approx(1.0)                  # true spacing between slices
    assert float(tags["0018|0050"]) == 5.0           # the acquired thickness, not the 1 mm spacing
    assert float(_tags(sorted((tmp_path / "thick").glob("*.dcm"))[0])["0018|0050"]) == 5.0   # input untouched
    back = read_volume(tmp_path / "thin")
    np.testing.assert_allclose(back.spacing, out.spacing, rtol=1e-5)


def test_truncated_nifti_and_sheared_directions_are_refused(tmp_path):
    vol = make_volume(size_ijk=(32, 32, 10), dtype=np.int16)
    for suffix in (".nii.gz", ".nii"):
        whole = write_volume(vol, tmp_path / f"v{suffix}").read_bytes()
        (tmp_path / f"cut{suffix}").write_bytes(whole[:len(whole) // 3])
        with pytest.raises(InputError, match="is truncated"):
            read_volume(tmp_path / f"cut{suffix}")
        assert read_volume(tmp_path / f"v{suffix}").array.shape == vol.array.shape
    write_volume(vol, tmp_path / "v.mha")
    text = (tmp_path / "v.mha").read_bytes().replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1",
                                                     b"TransformMatrix = 1 0 0 0.5 1 0 0 0 1")
    (tmp_path / "skew.mha").write_bytes(text)
    with pytest.raises(InputError, match="not a rotation"):
        read_volume(tmp_path / "skew.mha")


def test_staging_left_by_a_dead_writer_is_removed_by_the_next_write(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    debris = tmp_path / f".vsr-{dead.stdout.strip()}-abc123.partial"
    debris.mkdir()
    (debris / "out.nii.gz").write_bytes(b"half")
    alive = tmp_path / f".vsr-{os.getpid()}-def456.partial"      # a writer still at work
    alive.mkdir()
    write_volume(make_volume(), tmp_path / "out.nii.gz")
    assert not debris.exists() and alive.exists()
    assert read_volume(tmp_path / "out.nii.gz").array.shape == make_volume().array.shape


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32])
@pytest.mark.parametrize("slope, inter", [(2.0, -10.0), (0.5, 0.0), (1.0, 1024.0), (0.0, 5.0), (np.nan, 5.0)])
def test_scaled_nifti_reads_as_the_standard_says_not_as_truncated(tmp_path, suffix, dtype, slope, inter):
    """scl_slope/scl_inter (scanner exports): y = slope * x + inter; a zero or non-finite slope: no
    scaling at all (ITK would still add inter). The voxels keep their places (oblique geometry)."""
    vol = oblique_volume(dtype)
    path = edit_nifti(write_volume(vol, tmp_path / f"v{suffix}"), scl_slope=slope, scl_inter=inter)
    back = read_volume(path)
    if slope == 0 or not np.isfinite(slope):
        assert back.array.dtype == vol.array.dtype
        np.testing.assert_array_equal(back.array, vol.array)
    else:
        np.testing.assert_array_equal(back.array, (vol.array * np.float64(slope) + inter).astype(np.float32))
        itk = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))       # same places, ITK's float32 arithmetic
        np.testing.assert_allclose(back.array, itk, rtol=1e-6)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-5)


def test_scaled_wide_integers_keep_their_exact_values(tmp_path):
    vol = make_volume(size_ijk=(6, 5, 4), dtype=np.int32).with_array(np.full((4, 5, 6), 100000001, np.int32))
    back = read_volume(edit_nifti(write_volume(vol, tmp_path / "v.nii"), scl_slope=1.0, scl_inter=5.0))
    assert back.array.dtype == np.float64 and (back.array == 100000006).all()     # float32 says 100000008


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("value, slope", [(np.nan, 1.0), (np.inf, 1.0), (-np.inf, 2.0)])
def test_nan_and_inf_in_a_nifti_are_found(tmp_path, suffix, value, slope):
    """The NIfTI library reads them as zeros without a word; the scan of the file finds them."""
    array = oblique_volume(np.float32).array.copy()
    array[1, 2, 3] = value
    path = edit_nifti(write_volume(oblique_volume().with_array(array), tmp_path / f"v{suffix}"), scl_slope=slope)
    with pytest.raises(InputError, match="has 1 NaN or infinite voxels"):
        read_volume(path)


def test_scaling_beyond_float32_is_refused(tmp_path):
    path = edit_nifti(write_volume(oblique_volume(np.int16), tmp_path / "v.nii"), scl_slope=1e38)
    with pytest.raises(InputError, match=r"intensity scaling \(scl_slope 1e\+38"):
        read_volume(path)


@pytest.mark.parametrize("pixdim", [-0.7, 0.0, np.nan])
def test_a_nifti_header_that_contradicts_itself_gets_one_message_and_no_itk_warnings(tmp_path, capfd, pixdim):
    path = edit_nifti(write_volume(oblique_volume(), tmp_path / "v.nii.gz"), pixdim={1: pixdim})
    capfd.readouterr()
    with pytest.raises(InputError, match="has unexpected scales in sform.*Fix the header") as caught:
        read_volume(path)
    assert "\n" not in str(caught.value) and "0x" not in str(caught.value)
    assert capfd.readouterr().err == ""          # ITK's warnings are in our message, not on the terminal



@pytest.mark.parametrize("text", ["1\\x\\3", "", "1\\2", "1\\nan\\3"])
def test_a_malformed_dicom_position_names_the_file_and_tag(text):
    from volumetricsr.data.io import _numbers

    class Reader:
        def GetMetaData(self, tag):
            return text

    with pytest.raises(InputError, match=r"s3\.dcm has a malformed tag \(0020,0032\).*not 3 numbers"):
        _numbers(Reader(), "0020|0032", 3, "s3.dcm")

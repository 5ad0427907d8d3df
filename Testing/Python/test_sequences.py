"""Sequences (cine MR, multi-phase CT, DCE): 4-D files in and out, every frame the same way, a
per-volume network trained once and reused, progress across frames, nothing written on a stop."""
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import make_volume, random_rotation
from volumetricsr import (CancelToken, Cancelled, InputError, OutputError, read_frames, read_volume, super_resolve,
                          super_resolve_frames, write_frames)
from volumetricsr.app.cli import main


def frames(n=3, size_ijk=(16, 14, 6), spacing=(0.8, 0.8, 3.2), start=2.0, step=0.5):
    """``n`` frames on one oblique grid, each its own contrast, with frame times."""
    direction = random_rotation(np.random.default_rng(3))
    return [make_volume(size_ijk=size_ijk, spacing=spacing, direction=direction, seed=t).with_array(
        make_volume(size_ijk=size_ijk, seed=t).array * (1 + t), metadata={"frame": {"index": t, "value": start + t * step}})
        for t in range(n)]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_a_4d_file_round_trips_frame_by_frame(tmp_path, suffix):
    given = frames()
    write_frames(given, tmp_path / f"seq{suffix}")
    back = read_frames(tmp_path / f"seq{suffix}")
    assert len(back) == 3
    for g, b in zip(given, back):
        assert b.same_grid(g) and np.array_equal(b.array, g.array)
        assert b.metadata["frame"]["value"] == pytest.approx(g.metadata["frame"]["value"])
    with pytest.raises(InputError, match="sequence of 3 volumes"):
        read_volume(tmp_path / f"seq{suffix}")


def test_frames_that_cannot_share_a_4d_file_are_refused(tmp_path):
    moved = frames()
    moved[1] = moved[1].with_array(moved[1].array, origin=(50.0, 0.0, 0.0))
    with pytest.raises(OutputError, match="frame 1 lies on another grid"):
        write_frames(moved, tmp_path / "seq.nii.gz")
    with pytest.raises(OutputError, match="one 4-D file"):
        write_frames(frames(), tmp_path / "dicom_folder/")
    assert not list(tmp_path.iterdir())


def test_infer_on_a_4d_file_writes_one_4d_file_each_frame_as_alone(tmp_path, capsys):
    given = frames()
    write_frames(given, tmp_path / "seq.nrrd")
    code = main(["infer", str(tmp_path / "seq.nrrd"), str(tmp_path / "sr.nii.gz"), "--method", "linear", "--quiet",
                 "--consistency-map", str(tmp_path / "residual.nii.gz")])
    out, err = capsys.readouterr()
    assert code == 0 and "3 frames of" in out and "frame" in err
    result, residual = read_frames(tmp_path / "sr.nii.gz"), read_frames(tmp_path / "residual.nii.gz")
    assert len(result) == len(residual) == 3
    for t, frame in enumerate(given):
        alone = super_resolve(frame, "linear")
        assert result[t].same_grid(alone) and np.allclose(result[t].array, alone.array)
        assert residual[t].same_grid(frame)
        assert result[t].metadata["frame"]["value"] == pytest.approx(2.0 + 0.5 * t)


def test_a_sequence_goes_to_dicom_refused_before_any_work(tmp_path, capsys):
    write_frames(frames(), tmp_path / "seq.nii.gz")
    assert main(["infer", str(tmp_path / "seq.nii.gz"), str(tmp_path / "dicom") + "/", "--quiet"]) == 2
    assert "one 4-D file" in capsys.readouterr().err and not (tmp_path / "dicom").exists()


def test_selfsr_trains_on_the_middle_frame_and_reuses_its_network(tmp_path):
    given = frames()
    progress, results = [], {}
    out = super_resolve_frames(given, "selfsr", iterations=20, progress=lambda f, m="": progress.append(f),
                               results=results, save_model=str(tmp_path / "seq.json"))
    assert results["trained_on"] == 1
    assert [("training" in r) for r in results["frames"]] == [False, True, False]
    # the other frames are the saved network applied to them, with the middle frame's slice profile
    profile = results["slice_profile"]
    again = super_resolve(given[2], "selfsr", model=str(tmp_path / "seq.json"), thickness=profile["thickness"],
                          profile=profile["profile"])
    assert np.array_equal(out[2].array, again.array)
    assert all(r["slice_profile"]["thickness"] == profile["thickness"] for r in results["frames"])
    assert progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    rms = [r["consistency"]["rms"] for r in results["frames"]]
    assert results["consistency"]["frame"] == int(np.argmax(rms))


def test_a_stop_during_a_sequence_writes_nothing(tmp_path):
    write_frames(frames(), tmp_path / "seq.nii.gz")
    cancel = CancelToken()

    def progress(fraction, message=""):
        if fraction > 0.5:        # within a later frame
            cancel.cancel()

    from volumetricsr import infer

    with pytest.raises(Cancelled):
        infer(tmp_path / "seq.nii.gz", tmp_path / "sr.nii.gz", "selfsr", iterations=20, progress=progress,
              cancel=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq.nii.gz"]


def test_frames_of_another_size_or_spacing_are_refused():
    odd = frames()
    odd[2] = make_volume(size_ijk=(16, 14, 5), spacing=(0.8, 0.8, 3.2))
    with pytest.raises(InputError, match="Frame 2 of the sequence has another size or spacing"):
        super_resolve_frames(odd, "linear")


def test_a_4d_image_with_mixed_space_and_time_axes_is_refused(tmp_path):
    image = sitk.Image([4, 4, 4, 3], sitk.sitkFloat32)
    d = np.eye(4)
    d[:, [2, 3]] = d[:, [3, 2]]            # the 4th axis runs along z
    image.SetDirection(tuple(d.ravel()))
    sitk.WriteImage(image, str(tmp_path / "mixed.mha"))      # NIfTI cannot say it
    with pytest.raises(InputError, match="not a sequence of volumes"):
        read_frames(tmp_path / "mixed.mha")

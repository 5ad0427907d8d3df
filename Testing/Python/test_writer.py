"""The one writer: a run's outputs are checked against its inputs and each other, staged, and placed
all together or not at all."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from volumetricsr.app.cli import main
from volumetricsr.common.errors import OutputError
from volumetricsr.data import writer
from volumetricsr.data.io import read_volume, volume_files, write_volume
from volumetricsr.data.volume import Volume
from volumetricsr.data.writer import Transaction, check_paths, write_text


def thick_volume() -> Volume:
    rng = np.random.default_rng(0)
    return Volume(rng.random((8, 20, 20)).astype(np.float32) * 100, spacing=(1.0, 1.0, 3.0))


def test_outputs_are_placed_together_at_commit_and_staging_is_gone(tmp_path):
    (tmp_path / "b.txt").write_text("old")
    with Transaction({"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}) as tx:
        tx.path(tmp_path / "a.txt").write_text("new a")
        tx.path(tmp_path / "b.txt").write_text("new b")
        staging = tx.path(tmp_path / "a.txt").parent
        assert staging.name.startswith(f".vsr-{os.getpid()}-") and staging.name.endswith(".partial")
        assert not (tmp_path / "a.txt").exists() and (tmp_path / "b.txt").read_text() == "old"   # not yet
    assert (tmp_path / "a.txt").read_text() == "new a" and (tmp_path / "b.txt").read_text() == "new b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_a_failure_before_commit_places_nothing_and_keeps_what_was_there(tmp_path):
    (tmp_path / "b.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with Transaction({"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}) as tx:
            tx.path(tmp_path / "a.txt").write_text("new a")
            raise RuntimeError("the side output failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"] and (tmp_path / "b.txt").read_text() == "old"


def test_a_move_that_fails_during_commit_undoes_the_ones_made(tmp_path, monkeypatch):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(f"old {name}")
    real, moves = os.replace, []

    def second_placement_fails(src, dst):
        if Path(src).parent.name.startswith(".vsr-") and Path(dst).parent == tmp_path:
            moves.append(dst)
            if len(moves) == 2:
                raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(writer.os, "replace", second_placement_fails)
    with pytest.raises(OutputError, match="nothing was written"):
        with Transaction({"a": tmp_path / "a.txt", "b": tmp_path / "b.txt"}) as tx:
            tx.path(tmp_path / "a.txt").write_text("new a")
            tx.path(tmp_path / "b.txt").write_text("new b")
    assert len(moves) == 2
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.txt": "old a.txt", "b.txt": "old b.txt"}


def test_a_legal_name_of_245_characters_is_written(tmp_path):
    out = tmp_path / ("x" * 238 + ".nii.gz")
    assert len(out.name) == 245
    write_volume(thick_volume(), out)
    assert read_volume(out).array.shape == thick_volume().array.shape
    assert [p.name for p in tmp_path.iterdir()] == [out.name]


@pytest.mark.parametrize("outputs, inputs, says", [
    ({"output": "in.nii.gz"}, {"input": "in.nii.gz"}, "would overwrite the input"),
    ({"output": "series/x.nii.gz"}, {"input": "series"}, "one inside the other"),
    ({"output": "d"}, {"input": "d/in.nii.gz"}, "one inside the other"),
    ({"output": "o.nii.gz", "--confidence-map": "o.nii.gz"}, {}, "would write the same file"),
    ({"output": "o.mhd", "--consistency-map": "o.raw"}, {}, "would write the same file"),
])
def test_paths_that_meet_are_refused_before_any_work(tmp_path, outputs, inputs, says):
    (tmp_path / "series").mkdir()
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match=says):
        check_paths({k: tmp_path / v for k, v in outputs.items()}, {k: tmp_path / v for k, v in inputs.items()},
                    volume_files)


def test_a_side_output_that_fails_leaves_no_result_behind(tmp_path, monkeypatch, capfd):
    """The confidence map cannot be written (a full disk, say): the run fails with one line and the
    result, written first, is not placed either."""
    import volumetricsr.app.api as api

    write_volume(thick_volume(), tmp_path / "in.nii.gz")
    real = api.write_frames

    def map_fails(frames, path, dtype=None, tx=None):
        if Path(path).name == "conf.nii.gz":
            raise OutputError(f"Could not write {path}: No space left on device")
        return real(frames, path, dtype, tx)

    monkeypatch.setattr(api, "write_frames", map_fails)
    code = main(["infer", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.nii.gz"), "--quiet",
                 "--confidence-map", str(tmp_path / "conf.nii.gz")])
    assert code == 2 and "No space left" in capfd.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


def test_write_text_replaces_a_file_whole(tmp_path):
    path = tmp_path / "report.csv"
    write_text(path, "a\n")
    write_text(path, "b\n")
    assert path.read_text() == "b\n" and [p.name for p in tmp_path.iterdir()] == ["report.csv"]

"""Cohort inference (infer-batch): every good study written once, failures reported, resumable,
shards that cover the manifest exactly once, CSV manifests with per-row options."""
import csv
import json
import os
import sys

import numpy as np
import pytest

from conftest import make_volume
from volumetricsr.app.batch import manifest, parse_shard, run_batch
from volumetricsr.app.cli import main
from volumetricsr.common.errors import InputError
from volumetricsr.data.io import read_volume, write_volume


@pytest.fixture
def cohort(tmp_path):
    folder = tmp_path / "cohort"
    folder.mkdir()
    for k, name in enumerate(["a.nii.gz", "b.nrrd"]):
        write_volume(make_volume(seed=k), folder / name)
    ct = make_volume(seed=5)
    write_volume(ct.with_array((ct.array * 100).astype(np.int16)), folder / "series")     # a DICOM series
    (folder / "broken.nii.gz").write_text("not an image")
    (folder / "notes.txt").write_text("not a study")
    return folder


def _report(path):
    with open(path) as f:
        return {row["input"].rsplit("/", 1)[-1]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("where", [["--workers", "2"], ["--ray", "--workers", "2"]], ids=["local", "ray"])
def test_every_good_study_once_the_broken_one_reported_and_a_rerun_does_nothing(where, cohort, tmp_path, capsys):
    if "--ray" in where:
        pytest.importorskip("ray", reason="Ray is an optional extra (CI installs it)")
    out = tmp_path / "out"
    assert main(["infer-batch", str(cohort), str(out), "--method", "linear", *where, "--quiet"]) == 1
    assert "--ray" not in where or "ray" in sys.modules      # the Ray path ran
    assert "3 done, 0 skipped (already written), 1 failed" in capsys.readouterr().out
    report = _report(out / "report.csv")
    assert sorted(report) == ["a.nii.gz", "b.nrrd", "broken.nii.gz", "series"]
    assert report["broken.nii.gz"]["status"] == "failed" and "not an image" in report["broken.nii.gz"]["error"]
    written = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    assert sorted(written) == ["a.nii.gz", "b.nii.gz", "series.nii.gz"]
    sr = read_volume(out / "series.nii.gz")
    assert report["series"]["status"] == "done" and sr.spacing[2] == pytest.approx(0.8, rel=0.01)

    assert main(["infer-batch", str(cohort), str(out), "--method", "linear", "--quiet"]) == 1   # broken again
    assert "0 done, 3 skipped" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == written
    assert _report(out / "report.csv")["a.nii.gz"]["status"] == "skipped"


def test_shards_cover_the_manifest_exactly_once(cohort, tmp_path):
    studies = manifest(cohort)
    rows = [run_batch(studies, tmp_path / "out", "linear", shard=(i, 2)) for i in range(2)]
    inputs = [r["input"] for part in rows for r in part]
    assert sorted(inputs) == sorted(s.input for s in studies) and len(inputs) == len(set(inputs)) == 4
    assert (tmp_path / "out" / "report-shard-0-of-2.csv").exists() and (tmp_path / "out" / "report-shard-1-of-2.csv").exists()
    assert parse_shard("1/2") == (1, 2)
    for bad in ("2/2", "x", "-1/3"):
        with pytest.raises(InputError, match="--shard"):
            parse_shard(bad)


def test_a_csv_manifest_names_outputs_and_sets_options_per_row(cohort, tmp_path):
    rows = [{"input": "cohort/a.nii.gz", "output": "first.nii.gz", "options": ""},
            {"input": str(cohort / "b.nrrd"), "output": "", "options": json.dumps({"seed": 3})}]
    path = tmp_path / "list.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["input", "output", "options"])
        writer.writeheader()
        writer.writerows(rows)
    studies = manifest(path)
    assert [s.output for s in studies] == ["first.nii.gz", "b.nii.gz"] and studies[1].options == {"seed": 3}
    with pytest.raises(InputError, match="has no option seed"):      # linear takes no seed: before any work
        run_batch(studies, tmp_path / "out", "linear")
    assert not (tmp_path / "out").exists()
    rows = run_batch(studies, tmp_path / "out", "selfsr", options={"iterations": 2})
    assert [r["status"] for r in rows] == ["done", "done"]
    assert (tmp_path / "out" / "first.nii.gz").exists() and (tmp_path / "out" / "b.nii.gz").exists()


def test_two_studies_that_would_share_an_output_are_refused(tmp_path):
    for name in ("x.nii.gz", "x.nrrd"):
        write_volume(make_volume(), tmp_path / name)
    with pytest.raises(InputError, match="would both be written to x.nii.gz"):
        manifest(tmp_path)


def test_the_axis_reaches_every_study(tmp_path):
    (tmp_path / "in").mkdir()
    write_volume(make_volume(size_ijk=(10, 9, 6), spacing=(0.8, 0.8, 3.0)), tmp_path / "in" / "v.nii.gz")
    rows = run_batch(manifest(tmp_path / "in"), tmp_path / "out", "linear", 0.4, axis="J")
    assert rows[0]["status"] == "done"
    assert read_volume(tmp_path / "out" / "v.nii.gz").size == (10, 17, 6)       # J upsampled, not K


def test_ray_missing_is_one_line_that_says_how_to_get_it(cohort, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(InputError, match=r"pip install 'volumetricsr\[cluster\]'"):
        run_batch(manifest(cohort), tmp_path / "out", "linear", ray="local")
    assert not (tmp_path / "out").exists()                               # before any work


def test_a_worker_reads_a_model_once_and_again_only_when_its_file_changes(tmp_path, monkeypatch):
    import torch

    from volumetricsr.compute.models import find_model

    card = find_model(method="tvsrn")
    reads = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    first = card.state_dict()
    assert card.state_dict() is first and len(reads) <= 1       # cached (read here, or earlier in this process)
    copy = tmp_path / card.weights
    copy.write_bytes(card.file(card.weights).read_bytes())
    moved = type(card).load(card.path)
    moved.path = tmp_path / card.path.name                    # the same card, its weights in another file
    n = len(reads)
    moved.state_dict()
    assert len(reads) == n + 1
    copy.write_bytes(b"changed")
    with pytest.raises(Exception, match="does not match its card"):
        moved.state_dict()


def _die_once_then_run(study, threads, outdir, *job):
    """A Ray worker that dies on its first try of each study (the marker file says it tried)."""
    from volumetricsr.app import batch

    marker = os.path.join(outdir, f".tried-{os.path.basename(study.input)}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return batch.run_study(study, outdir, *job)


def test_ray_retries_a_study_whose_worker_died(cohort, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra (CI installs it)")
    from volumetricsr.app import batch

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])    # the workers cannot import this file
    monkeypatch.setattr(batch, "_ray_study", _die_once_then_run)
    studies = [s for s in manifest(cohort) if "broken" not in s.input]
    rows = run_batch(studies, tmp_path / "out", "linear", ray="local", workers=2)
    assert [r["status"] for r in rows] == ["done"] * 3
    assert len(list((tmp_path / "out").glob(".tried-*"))) == 3           # every study's first worker died


def test_maps_are_written_beside_each_output_before_it(cohort, tmp_path, capsys):
    from volumetricsr.app.batch import map_output

    out = tmp_path / "out"
    assert map_output("a.nii.gz", "confidence") == "a_confidence.nii.gz" and map_output("s", "consistency") == \
        "s_consistency"
    assert main(["infer-batch", str(cohort), str(out), "--method", "sinc", "--quiet", "--maps", "consistency",
                 "confidence"]) == 1                       # the broken study fails; the others are done
    report = _report(out / "report.csv")
    assert float(report["a.nii.gz"]["consistency_rms"]) > 0
    assert report["a.nii.gz"]["slice_profile"].endswith(("(estimated)", "(default)"))   # what the map used
    for stem in ("a", "b"):
        result, source = read_volume(out / f"{stem}.nii.gz"), read_volume(next(cohort.glob(f"{stem}.*")))
        assert read_volume(out / f"{stem}_confidence.nii.gz").same_grid(result)
        assert read_volume(out / f"{stem}_consistency.nii.gz").same_grid(source)
    assert read_volume(out / "series_confidence.nii.gz").same_grid(read_volume(out / "series.nii.gz"))
    assert not (out / "broken_confidence.nii.gz").exists()


def test_a_study_places_its_result_and_maps_together_or_none(cohort, tmp_path, monkeypatch):
    from volumetricsr.common.errors import OutputError
    from volumetricsr.app import api

    real = api.write_frames

    def full_disk_for_the_last_map(frames, path, dtype=None, tx=None):
        if "confidence" in str(path):
            raise OutputError(f"Could not write {path}: No space left on device")
        return real(frames, path, dtype, tx)

    monkeypatch.setattr(api, "write_frames", full_disk_for_the_last_map)
    out = tmp_path / "out"
    rows = run_batch([s for s in manifest(cohort) if s.input.endswith("a.nii.gz")], out, "linear",
                     maps=("consistency", "confidence"))           # the result and one map were staged
    assert rows[0]["status"] == "failed" and "No space left" in rows[0]["error"]
    assert sorted(p.name for p in out.iterdir()) == ["report.csv"]    # neither placed; no staging left


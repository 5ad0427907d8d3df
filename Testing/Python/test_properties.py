"""Property-based: generated headers, arrays and options through the command line (hypothesis).

Each example writes a volume (NIfTI .nii/.nii.gz, NRRD or MetaImage; sizes 1 to 10, spacings
including 0, negative, NaN and infinite, rotated, flipped or sheared directions, NIfTI intensity scaling,
integer and float types, NaN/inf voxels, a file cut short) and runs ``infer`` on it with generated
options, in this process. Whatever the input: exit 0 with a sane volume (finite, the input's extent
and in-plane grid, more slices, within the input's range for linear interpolation) and only our own
lines on stderr, or exit 2 with exactly one line ``volumetricsr: error: ...`` and nothing written;
never a traceback, never a library's line, never a changed input. Derandomized: the same 1000
examples on every run, about 25 s on 2 cores. It found that a header spacing of 1e-30 mm broke the
slice-profile estimate (now refused as outside 1e-5 to 1e5 mm).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from hypothesis import HealthCheck, event, given, settings, strategies as st

from conftest import edit_nifti, random_rotation


def mostly(usual, *unusual, times: int = 3):
    """``usual`` about ``times`` times as often as each of the ``unusual`` (so most examples run)."""
    return st.sampled_from([usual] * times * max(len(unusual), 1) + list(unusual))


SPACINGS = st.sampled_from([0.5, 2.5, 0.0, -0.8, np.nan, np.inf, 1e-30, 1e30])
DTYPES = st.sampled_from(["uint8", "int16", "int32", "float32", "float64"])
SCALING = mostly((1.0, 0.0), (2.0, -10.0), (0.0, 5.0), (np.nan, 0.0), (-1.0, 0.0), (1e-30, 0.0), (1e38, 0.0),
                 (1.0, 1e8), times=1)
OWN_LINES = ("volumetricsr: warning: ", "consistency with the acquired slices", "slice profile ")


@st.composite
def volumes(draw):
    """A header and an array: what the file will hold, before it is written. Two examples in three
    are well-formed (so most runs get to the method); the others draw every kind of damage."""
    bad = draw(mostly(False, True, times=2))
    spec = {"suffix": draw(st.sampled_from([".nii", ".nii.gz", ".nrrd", ".mha"])),
            "size": (draw(st.integers(1, 10)), draw(st.integers(1, 10)), draw(mostly(5, 1, 2, 3, 8, times=2))),
            "spacing": [draw(st.sampled_from([0.5, 0.8, 1.0])), draw(st.sampled_from([0.5, 0.8, 1.0])),
                        draw(st.sampled_from([2.5, 4.0, 5.0]))],
            "direction": draw(st.sampled_from(["identity", "rotated", "flipped"] + ["sheared"] * bad)),
            "dtype": draw(DTYPES), "seed": draw(st.integers(0, 2**16)),
            "big": draw(st.booleans()),                        # int32 values beyond 2^24
            "scaling": draw(SCALING if bad else st.sampled_from([(1.0, 0.0), (2.0, -10.0)])),
            "bad_spacing": None, "nonfinite": None, "sform_code": None, "keep": None}
    if bad:
        spec.update(bad_spacing=draw(st.one_of(st.none(), st.tuples(st.integers(0, 2), SPACINGS))),
                    nonfinite=draw(st.sampled_from([None, np.nan, np.inf, -np.inf])),
                    sform_code=draw(st.sampled_from([None, 0])),
                    keep=draw(st.one_of(st.none(), st.floats(0.05, 0.98))))     # the fraction of bytes kept
    return spec


@st.composite
def options(draw):
    """``infer``'s options: mostly ones that fit, a third of the time any."""
    bad = draw(mostly(False, True, times=2))
    spacing = [None, "1", "0.5"] + ["3", "0", "-1", "nan", "1e-9"] * bad
    return {"method": draw(st.sampled_from(["linear", "bspline", "sinc"])),
            "spacing": draw(st.sampled_from(spacing)),
            "axis": draw(st.sampled_from([None, "K"] + ["I", "J"] * bad)),
            "dtype": draw(st.booleans()), "force": draw(st.booleans()), "enforce": draw(st.booleans()),
            "maps": draw(mostly([], ["--confidence-map"], ["--consistency-map"])),
            "out": draw(st.sampled_from([".nii.gz", ".nrrd", ".mha"]))}


def write(spec: dict, folder: Path) -> Path:
    """The file ``spec`` describes: written by SimpleITK, then its header edited and its end cut."""
    rng = np.random.default_rng(spec["seed"])
    shape = spec["size"][::-1]
    array = rng.normal(100, 40, shape)
    if spec["big"] and spec["dtype"] == "int32":
        array += 1e8
    array = np.clip(array, *((0, 255) if spec["dtype"] == "uint8" else (-1e9, 1e9))).astype(spec["dtype"])
    if spec["nonfinite"] is not None and array.dtype.kind == "f":
        array.flat[rng.integers(array.size)] = spec["nonfinite"]
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spec["spacing"])
    direction = {"identity": np.eye(3), "rotated": random_rotation(np.random.default_rng(spec["seed"])),
                 "flipped": np.diag([1.0, -1.0, 1.0]), "sheared": np.array([[1, 0.5, 0], [0, 1, 0], [0, 0, 1.0]])
                 }[spec["direction"]]
    image.SetDirection(tuple(direction.ravel()))
    path = folder / f"in{spec['suffix']}"
    sitk.WriteImage(image, str(path), spec["suffix"] != ".nii")
    if spec["suffix"].startswith(".nii"):
        slope, inter = spec["scaling"]
        fields = {"scl_slope": slope, "scl_inter": inter}
        if spec["bad_spacing"]:
            fields["pixdim"] = {spec["bad_spacing"][0] + 1: spec["bad_spacing"][1]}
        if spec["sform_code"] is not None:
            fields["sform_code"] = spec["sform_code"]
        edit_nifti(path, **fields)
    elif spec["bad_spacing"]:
        axis, value = spec["bad_spacing"]
        text = path.read_bytes()
        if spec["suffix"] == ".mha":
            line = re.search(rb"ElementSpacing = ([^\n]*)", text)
            values = line.group(1).split()
            values[axis] = repr(float(value)).encode()
            text = text.replace(line.group(0), b"ElementSpacing = " + b" ".join(values), 1)
        else:
            line = re.search(rb"space directions: ([^\n]*)", text)
            vectors = re.findall(rb"\(([^)]*)\)", line.group(1))
            vector = [float(v) * value / spec["spacing"][axis] if np.isfinite(value) else value
                      for v in vectors[axis].split(b",")]
            vectors[axis] = ",".join(repr(float(v)) for v in vector).encode()
            text = text.replace(line.group(0), b"space directions: " + b" ".join(b"(" + v + b")" for v in vectors), 1)
        path.write_bytes(text)
    if spec["keep"] is not None:
        data = path.read_bytes()
        path.write_bytes(data[:max(1, int(len(data) * spec["keep"]))])
    return path


@contextlib.contextmanager
def all_of_stderr():
    """What Python and the C libraries write to stderr in the block (``.text`` afterwards)."""
    caught = type("Caught", (), {"text": ""})()
    python = io.StringIO()
    with tempfile.TemporaryFile() as fd_file, contextlib.redirect_stderr(python):
        sys.__stderr__.flush()
        saved = os.dup(2)
        os.dup2(fd_file.fileno(), 2)
        try:
            yield caught
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            fd_file.seek(0)
            caught.text = python.getvalue() + fd_file.read().decode("utf-8", "replace")


def digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@settings(max_examples=1000, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(spec=volumes(), opts=options())
def test_any_header_array_and_options_exit_0_with_a_sane_volume_or_2_with_one_line(spec, opts):
    from volumetricsr.app.cli import main
    from volumetricsr.data.io import read_volume

    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp, "in"), Path(tmp, "out")
        inputs.mkdir()
        outputs.mkdir()
        path = write(spec, inputs)
        before = digests(inputs)
        out = outputs / f"o{opts['out']}"
        argv = ["infer", str(path), str(out), "--method", opts["method"], "--quiet"]
        argv += ["--spacing", opts["spacing"]] * (opts["spacing"] is not None)
        argv += ["--axis", opts["axis"]] * bool(opts["axis"]) + ["--dtype", "input"] * opts["dtype"]
        argv += ["--force"] * opts["force"] + ["--enforce-consistency"] * opts["enforce"]
        argv += [a for flag in opts["maps"] for a in (flag, str(outputs / "m.nrrd"))]
        with all_of_stderr() as err:
            code = main(argv)
        lines = [ln for ln in err.text.splitlines() if ln.strip()]
        # how often each outcome came (pytest --hypothesis-show-statistics)
        event(f"exit {code}: " + (re.sub(r"/tmp/\S+/", "", lines[0][21:400]) if code == 2 and lines else ""))
        assert "Traceback" not in err.text, err.text
        assert digests(inputs) == before, "the input changed"
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("volumetricsr: error: "), (argv, err.text)
            assert list(outputs.iterdir()) == [], "a refused run wrote something"
            return
        assert code == 0, (argv, err.text)
        assert all(ln.startswith(OWN_LINES) for ln in lines), err.text      # no library's lines
        given_, result = read_volume(path), read_volume(out)
        grow = np.subtract(result.size, given_.size)
        assert np.count_nonzero(grow) <= 1 and grow.min() >= 0, (given_.size, result.size)
        assert np.isfinite(result.array).all() and all(np.isfinite(s) and s > 0 for s in result.spacing)
        np.testing.assert_allclose(result.origin, given_.origin, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(result.direction, given_.direction, atol=1e-4)
        extent = np.subtract(given_.size, 1) * given_.spacing, np.subtract(result.size, 1) * result.spacing
        np.testing.assert_allclose(*extent, rtol=1e-4, atol=1e-6)
        if opts["method"] == "linear" and not opts["enforce"]:
            lo, hi = float(given_.array.min()), float(given_.array.max())
            slack = 1e-5 * max(abs(lo), abs(hi), 1.0) + (0.5 if opts["dtype"] else 0.0)
            assert lo - slack <= result.array.min() and result.array.max() <= hi + slack

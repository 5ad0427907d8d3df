"""Bad inputs, options, models and outputs: each gets one line that names the problem, exit code 2,
no traceback, and nothing written.

The README's table of bad inputs is generated from ``CASES`` (``python Testing/Python/test_bad_inputs.py
--readme`` rewrites it) and a test checks it is current, so the two cannot drift apart.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
README = HERE.parents[1] / "docs" / "reliability.md"
START, END = "<!-- bad-inputs:start -->", "<!-- bad-inputs:end -->"


@dataclass(frozen=True)
class Case:
    kind: str          # file, option, model, output
    what: str          # the bad input, for the README
    args: str          # the command's arguments: {in} is the inputs folder, {out} a fresh output folder
    says: str          # words the one-line message must contain (a regular expression)


CT = "{in}/ct.nii.gz"
OUT = "{out}/o.nii.gz"
TV = f"infer {CT} {OUT} --method tvsrn --model tiny"
SELF = f"infer {CT} {OUT} --method selfsr"
TRAIN = "train --method tvsrn --data {in} --out m --models-dir {out}"
CASES = [
    # files
    Case("file", "a 2-D image", "infer {in}/2d.nrrd " + OUT, "is a 2-D image"),
    Case("file", "a 4-D image (a sequence) to a DICOM folder", "infer {in}/4d.nii.gz {out}/dicom/",
         "a sequence of 3 volumes is written as one 4-D file"),
    Case("file", "a 4-D image whose 4th axis mixes with space", "infer {in}/mixed4d.mha " + OUT,
         "not a sequence of volumes"),
    Case("file", "a vector (colour) image", "infer {in}/vector.nrrd " + OUT, "3 components per voxel"),
    Case("file", "an empty file", "infer {in}/empty.nii.gz " + OUT, "is an empty file"),
    Case("file", "a .nii.gz cut to a third of its bytes", "infer {in}/cut.nii.gz " + OUT, "is truncated"),
    Case("file", "a .nii cut to a third of its bytes", "infer {in}/cut.nii " + OUT, "is truncated"),
    Case("file", "an .nrrd cut to a third of its bytes", "infer {in}/cut.nrrd " + OUT, "is truncated"),
    Case("file", "not an image (text named .nii.gz)", "infer {in}/text.nii.gz " + OUT, "not an image SimpleITK can read"),
    Case("file", "NaN voxels (NRRD)", "infer {in}/nan.nrrd " + OUT, "NaN or infinite voxels"),
    Case("file", "infinite voxels (MHA)", "infer {in}/inf.mha " + OUT, "NaN or infinite voxels"),
    Case("file", "a sheared (non-orthonormal) direction matrix", "infer {in}/skew.mha " + OUT, "not a rotation"),
    Case("file", "a zero spacing in the header", "infer {in}/zero.mha " + OUT, "zero voxel spacing"),
    Case("file", "a single slice", "infer {in}/slice.nii.gz " + OUT, "single slice"),
    Case("file", "a file that does not exist", "infer {in}/nope.nii.gz " + OUT, "No such file"),
    Case("file", "a DICOM folder with a missing slice", "infer {in}/gap " + OUT, "unequal slice spacing"),
    Case("file", "a DICOM folder with two series", "infer {in}/two " + OUT, "holds 2 DICOM series"),
    Case("file", "an empty folder", "infer {in}/nothing " + OUT, "No DICOM series found"),
    Case("file", "a volume already at the target spacing", "infer {in}/iso.nii.gz " + OUT, "already has 1 mm spacing"),
    Case("file", "two axes share the largest spacing", "infer {in}/tie.nii.gz " + OUT, "through-plane axis is ambiguous"),
    Case("file", "an MR volume given to a CT model", "infer {in}/mr.nii.gz " + OUT + " --method tvsrn --model tiny",
         "is a CT model, but its intensities do not look like Hounsfield"),
    # outputs that would overwrite an input or each other: refused before any work (one transaction)
    Case("output", "--consistency-map is the input", f"infer {CT} {OUT} --consistency-map {CT}", "would overwrite the input"),
    Case("output", "--confidence-map is the input", f"infer {CT} {OUT} --confidence-map {CT}", "would overwrite the input"),
    Case("output", "--consistency-map is the output", f"infer {CT} {OUT} --consistency-map {OUT}",
         "would write the same file"),
    Case("output", "simulate-thick onto its own input", f"simulate-thick {CT} {CT} --factor 2", "would overwrite the input"),
    Case("output", "a hard link to the input as the output", "infer " + CT + " {in}/link.nii.gz",
         "would overwrite the input .* under another name"),
    Case("output", "an output .mhd that would write the input's data file", "infer {in}/pair.mhd {in}/data.mhd",
         "would write data.zraw, the data file of the input"),
    Case("output", "an output inside the input DICOM folder", "infer {in}/two {in}/two/x.nii.gz",
         "one inside the other"),
    Case("output", "export-onnx into a missing folder", "export-onnx --model tiny {out}/no/x.onnx", "does not exist"),
    Case("output", "export-onnx with a zero window", "export-onnx --model tiny {out}/x.onnx --window 0 16 16",
         r"window \(--window\) needs 3 values"),
    Case("output", "export-onnx to a name without .onnx", "export-onnx --model tiny {out}/x.pt", "suffix .onnx"),
    # infer-batch: OUTDIR and the manifest's outputs, checked before any work
    Case("output", "infer-batch DIR DIR (OUTDIR is the input folder)", "infer-batch {in}/cohort {in}/cohort",
         "is the input folder: the outputs would land among the inputs"),
    Case("output", "infer-batch OUTDIR inside the input folder", "infer-batch {in}/cohort {in}/cohort/sr",
         "is inside the input folder"),
    Case("output", "infer-batch OUTDIR is a file", "infer-batch {in}/cohort " + CT, "is a file: give a folder"),
    Case("output", "infer-batch OUTDIR unwritable", "infer-batch {in}/cohort {unwritable}", "is not writable"),
    Case("output", "infer-batch OUTDIR under an unwritable folder", "infer-batch {in}/cohort {unwritable}/a/b",
         "Cannot make OUTDIR"),
    Case("output", "infer-batch glob that would match its outputs", "infer-batch {in}/cohort/b* {in}/cohort",
         "the pattern .* matches .*b.nii.gz, so the next run would read it"),
    Case("output", "infer-batch manifest output ../../x.nii.gz", "infer-batch {in}/up.csv {out}",
         r"up.csv, line 2: output \.\./\.\./x.nii.gz is not under OUTDIR"),
    Case("output", "infer-batch manifest output an absolute path", "infer-batch {in}/absolute.csv {out}",
         "absolute.csv, line 2: output /tmp/x.nii.gz is not under OUTDIR"),
    Case("output", "infer-batch manifest output through a symbolic link out of OUTDIR",
         "infer-batch {in}/linked.csv {in}/linked",
         r"Output away/x.nii.gz \(manifest .*linked.csv, line 2\) leads out of OUTDIR"),
    Case("output", "infer-batch manifest output onto another row's input", "infer-batch {in}/onto.csv {in}",
         "output .*line 2.*mr.nii.gz would overwrite the input .*line 3.*mr.nii.gz"),
    Case("output", "infer-batch manifest output onto another row's map", "infer-batch {in}/maps.csv {out} --maps "
         "confidence", "would write the same file"),
    Case("output", "infer-batch report.csv over the manifest", "infer-batch {in}/report.csv {in}",
         "report .*report.csv would overwrite the manifest"),
    # options
    Case("option", "--batch-size 0", TV + " --batch-size 0", r"batch_size \(--batch-size\) must be a whole number from 1"),
    Case("option", "--batch-size -3", TV + " --batch-size -3", r"batch_size .* must be a whole number from 1 to 4096"),
    Case("option", "--batch-size 100000000", TV + " --batch-size 100000000", r"batch_size .* from 1 to 4096"),
    Case("option", "--window 0 0 0", TV + " --window 0 0 0", r"window \(--window\) needs 3 values"),
    Case("option", "--window 5 256 256 (TVSRN takes 4 slices)", TV + " --window 5 256 256", "takes 4 slices per window, not 5"),
    Case("option", "--window 4 100000 256", TV + " --window 4 100000 256", "each a whole number from 1 to 4096"),
    Case("option", "--overlap 1 0 0", TV + " --overlap 1 0 0", r"overlap .* up to, not including, 1"),
    Case("option", "--overlap -0.1 0 0", TV + " --overlap -0.1 0 0", r"overlap .* a number from 0"),
    Case("option", "--spacing 0", "infer " + CT + " " + OUT + " --spacing 0", r"spacing \(--spacing\) must be a number above 0"),
    Case("option", "--spacing -1", TV + " --spacing -1", r"spacing .* must be a number above 0"),
    Case("option", "--spacing 100 (coarser than the slices)", "infer " + CT + " " + OUT + " --spacing 100",
         "coarser than the slice spacing"),
    Case("option", "--iterations 0", SELF + " --iterations 0", r"iterations .* from 1 to 1000000"),
    Case("option", "--iterations -5", SELF + " --iterations -5", r"iterations .* from 1 to 1000000"),
    Case("option", "--iterations 1000000000000", SELF + " --iterations 1000000000000", r"iterations .* from 1 to 1000000"),
    Case("option", "--seed -1", SELF + " --seed -1", r"seed .* a whole number from 0"),
    Case("option", "--thickness 0", SELF + " --thickness 0", r"thickness .* a number above 0 mm"),
    Case("option", "--thickness -2", SELF + " --thickness -2", r"thickness .* a number above 0 mm"),
    Case("option", "--thickness 1000", SELF + " --thickness 1000", r"thickness .* at most 200 mm"),
    Case("option", "--thickness 100 (25 times the slice spacing)", SELF + " --thickness 100", "more than 10 times the slice spacing"),
    Case("option", "--threads 0", TV + " --threads 0", r"threads \(--threads\) must be a whole number from 1"),
    Case("option", "clade --stride 40 (patches are 32)", "infer " + CT + " " + OUT + " --method clade --stride 40",
         r"stride \(--stride\) must be a whole number from 0 to 32"),
    Case("option", "clade --planes 3", "infer " + CT + " " + OUT + " --method clade --planes 3",
         r"planes \(--planes\) must be a whole number from 1 to 2"),
    Case("option", "train clade --planes 0", "train --method clade --data {in}/ct.nii.gz --out m --models-dir {out} "
         "--planes 0", r"planes .* from 1 to 2"),
    Case("option", "train ctguided without --mri", "train --method ctguided --ct " + CT + " --out m --models-dir {out}",
         "--ct and --mri are needed"),
    Case("option", "train ctguided --perceptual-weights of unknown hash", "train --method ctguided --ct " + CT
         + " --mri " + CT + " --out m --models-dir {out} --perceptual-weights " + CT, "give the file's SHA256"),
    Case("option", "ctguided (an MRI model) on a CT", "infer " + CT + " " + OUT + " --method ctguided",
         "super-resolves MRI, but this volume looks like a CT"),
    Case("option", "evaluate --edges on another grid", "evaluate " + CT + " --edges {in}/iso.nii.gz",
         "give a mask on the prediction's grid"),
    Case("option", "evaluate --signal without --noise", "evaluate " + CT + " --signal " + CT, "go together"),
    Case("option", "infer-batch --shard 2/2", "infer-batch {in}/ct.nii.gz {out} --shard 2/2", "i must be from 0 to n-1"),
    Case("option", "infer-batch --workers 0", "infer-batch {in}/ct.nii.gz {out} --workers 0",
         r"workers \(--workers\) must be a whole number from 1"),
    Case("option", "infer-batch of a folder without studies", "infer-batch {in}/nothing {out}", "No studies in"),
    Case("option", "an unknown method", "infer " + CT + " " + OUT + " --method magic", "Unknown method 'magic'"),
    Case("option", "an option of another method (tvsrn --budget)", TV + " --budget fast", "has no option budget"),
    Case("option", "train --max-steps 0", TRAIN + " --max-steps 0", r"max_steps \(--max-steps\) must be a whole number from 1"),
    Case("option", "train --batch-size 0", TRAIN + " --batch-size 0", r"batch_size .* from 1 to 4096"),
    Case("option", "train --crop 4", TRAIN + " --crop 4", r"crop .* from 8 to 4096"),
    Case("option", "train --lr 0", TRAIN + " --lr 0", r"lr .* a number above 0"),
    Case("option", "train --seed -1", TRAIN + " --seed -1", r"seed .* from 0"),
    Case("option", "train --data that does not exist", "train --method tvsrn --data {in}/nope --out m --models-dir {out}",
         "nope"),
    Case("option", "train --resume without a checkpoint", "train --resume --out m --models-dir {out}",
         "No checkpoint at .*nothing to resume"),
    # models
    Case("model", "a corrupt weights file", f"infer {CT} {OUT} --method tvsrn --model corrupt", "does not match its card"),
    Case("model", "weights of another architecture", f"infer {CT} {OUT} --method tvsrn --model wrongarch",
         "weights do not fit architecture tvsrn"),
    Case("model", "a model of another method", f"infer {CT} {OUT} --method tvsrn --model own", "is a selfsr model, not tvsrn"),
    Case("model", "a card whose weights path leaves its folder", f"infer {CT} {OUT} --method tvsrn --model escape",
         "not a file in the card's folder"),
    Case("model", "a model id that does not exist", f"infer {CT} {OUT} --method tvsrn --model nope", "No model 'nope'"),
    Case("model", "a card that is not JSON", f"infer {CT} {OUT} --method tvsrn --model {{in}}/broken.json", "not readable JSON"),
    # readers (issue 28, item 2): NaN/inf in every format, scaled NIfTI, what the C libraries say
    Case("file", "NaN voxels (NIfTI .nii.gz)", "infer {in}/nan.nii.gz " + OUT, "nan.nii.gz has 1 NaN or infinite voxels"),
    Case("file", "infinite voxels (NIfTI .nii)", "infer {in}/inf.nii " + OUT, "inf.nii has 1 NaN or infinite voxels"),
    Case("file", "-inf voxels in a scaled NIfTI (scl_slope 2)", "infer {in}/ninf_scaled.nii.gz " + OUT,
         "has 1 NaN or infinite voxels"),
    Case("file", "NaN voxels (NRRD, float64)", "infer {in}/nan64.nrrd " + OUT, "has 1 NaN or infinite voxels"),
    Case("file", "infinite voxels (.nhdr and its data file)", "infer {in}/inf.nhdr " + OUT,
         "has 1 NaN or infinite voxels"),
    Case("file", "-inf voxels (MetaImage .mhd, float64)", "infer {in}/ninf.mhd " + OUT, "has 1 NaN or infinite voxels"),
    Case("file", "NIfTI scaling beyond float32 (scl_slope 1e38)", "infer {in}/huge_scale.nii " + OUT,
         r"intensity scaling \(scl_slope 1e\+38, scl_inter 0\) takes voxels beyond what a 32-bit float holds"),
    Case("file", "a scaled NIfTI cut to half its bytes", "infer {in}/cut_scaled.nii.gz " + OUT, "is truncated"),
    Case("file", "a NIfTI whose data starts past its end (vox_offset)", "infer {in}/far.nii " + OUT, "is truncated"),
    Case("file", "a NIfTI with a negative vox_offset", "infer {in}/before.nii " + OUT,
         "does not say where its voxels are.*vox_offset"),
    Case("file", "a NIfTI header announcing more slices than it holds", "infer {in}/more.nii " + OUT, "is truncated"),
    Case("file", "a negative pixdim that contradicts the sform (ITK warns)", "infer {in}/negpix.nii.gz " + OUT,
         "describes the voxel geometry in two ways that disagree .*unexpected scales in sform"),
    Case("file", "a zero pixdim (NIfTI)", "infer {in}/zeropix.nii " + OUT, "two ways that disagree"),
    Case("file", "a NaN pixdim (NIfTI)", "infer {in}/nanpix.nii.gz " + OUT, "two ways that disagree"),
    Case("file", "a NaN spacing in an NRRD header", "infer {in}/nanspace.nrrd " + OUT,
         "not an image SimpleITK can read.*space vector"),
    Case("file", "a .dcm that is not DICOM inside", "infer {in}/fake/x.dcm " + OUT, "Could not read DICOM file"),
    Case("file", "a spacing of 1e-30 mm in the header (found by test_properties)", "infer {in}/tiny.mha " + OUT,
         "has a voxel spacing of 1e-30 mm along I, outside 1e-05 to 100000 mm"),
    # one line for every mistake (item 3): the command line, memory, format limits, model cards
    Case("option", "a missing argument", "infer " + CT, r"required: output \(`volumetricsr infer --help`"),
    Case("option", "a number that is not one (--spacing abc)", f"infer {CT} {OUT} --spacing abc",
         "argument --spacing: invalid float value: 'abc'"),
    Case("option", "an unknown flag", f"infer {CT} {OUT} --bogus", r"unrecognized arguments: --bogus \(`volumetricsr infer"),
    Case("option", "an unknown command", "upsample " + CT, "invalid choice: 'upsample'"),
    Case("option", "--window with two values", f"infer {CT} {OUT} --window 4 16", "argument --window: expected 3"),
    Case("option", "--device tpu", f"infer {CT} {OUT} --device tpu", "argument --device: invalid choice: 'tpu'"),
    Case("option", "train --method magic", "train --method magic --out m", r"invalid choice: 'magic' .*volumetricsr train"),
    Case("option", "train without --out", "train --method tvsrn --data {in}", "required: --out"),
    Case("option", "a result larger than memory (--spacing 0.0000001)", f"infer {CT} {{out}}/o.nrrd --spacing 0.0000001",
         r"Not enough memory: the result would be 24 x 20 x 200000001 voxels \(358 GiB as float32\).*The finest "
         "spacing that fits is about"),
    Case("option", "selfsr on a result larger than memory", f"infer {CT} {{out}}/o.nrrd --method selfsr --spacing 1e-7",
         "Not enough memory: .*Self-supervised"),
    Case("output", "more slices than NIfTI holds (--spacing 0.0001)", f"infer {CT} {OUT} --spacing 0.0001",
         "a 24 x 20 x 200001 volume does not fit the format, which holds at most 32767"),
    Case("model", "a card that is JSON null", f"infer {CT} {OUT} --method tvsrn --model {{in}}/cards/null.json",
         "holds null, not a card"),
    Case("model", "a card that is a JSON list", f"infer {CT} {OUT} --method tvsrn --model {{in}}/cards/list.json",
         r"holds \[1, 2\], not a card"),
    Case("model", "a card nested too deep to parse", f"infer {CT} {OUT} --method tvsrn --model {{in}}/cards/deep.json",
         "not readable JSON"),
    Case("model", "a card whose native_factor is text", f"infer {CT} {OUT} --method tvsrn --model factor",
         'native_factor must be a number above 0, not "five"'),
    Case("model", "a card whose architecture args are null", f"infer {CT} {OUT} --method tvsrn --model noargs",
         "architecture must be an object"),
    Case("model", "a card whose window has a 0", f"infer {CT} {OUT} --method tvsrn --model window0",
         "window must be three whole numbers above 0"),
    Case("model", "a card whose slice spacing is text", f"infer {CT} {OUT} --method tvsrn --model spacingtext",
         "slice_spacing_mm must be a spacing in mm"),
    Case("model", "export-onnx of a card that is JSON null", "export-onnx --model {in}/cards/null.json {out}/x.onnx",
         "holds null, not a card"),
    # outputs
    Case("output", "an unwritable folder", f"infer {CT} {{unwritable}}/o.nii.gz", "is not writable"),
    Case("output", "a folder that does not exist", f"infer {CT} {{out}}/missing/o.nii.gz", "does not exist"),
    Case("output", "an existing folder named like the file", f"infer {CT} {{in}}/taken.nii.gz", "a folder of that name exists"),
    Case("output", "an unknown file type", f"infer {CT} {{out}}/o.png", "Unknown volume format"),
    Case("output", "a DICOM folder that is not empty", f"infer {CT} {{in}}/gap", "not an empty folder"),
    Case("output", "the input file itself", f"infer {CT} {CT} --force --spacing 4", "would overwrite the input"),
    Case("output", "a single .dcm file", f"infer {CT} {{out}}/o.dcm", "write a DICOM series to a folder"),
]


def readme_table() -> str:
    rows = ["| | Bad input | What the one line says (excerpt) |", "|---|---|---|"]
    for n, case in enumerate(CASES, 1):
        says = re.sub(r"\\(.)", r"\1", case.says).replace(".*", "...").replace("|", "\\|")
        rows.append(f"| {n} | {case.kind}: {case.what} | {says} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------- the inputs

def _write_inputs(folder: Path) -> None:
    import SimpleITK as sitk
    import torch

    from conftest import make_ct_volume, make_volume
    from volumetricsr.data.io import write_volume
    from volumetricsr.compute.networks import TVSRN
    from volumetricsr.compute.export import write_model

    ct = make_ct_volume(size_ijk=(24, 20, 6), spacing=(0.8, 0.8, 4.0))
    write_volume(ct.with_array(ct.array.astype(np.int16)), folder / "ct.nii.gz")
    mr = make_volume(size_ijk=(24, 20, 6), spacing=(0.8, 0.8, 4.0))
    write_volume(mr.with_array(np.abs(mr.array) * 3), folder / "mr.nii.gz")
    write_volume(make_volume(spacing=(1.0, 1.0, 1.0)), folder / "iso.nii.gz")
    write_volume(make_volume(spacing=(3.0, 3.0, 1.0)), folder / "tie.nii.gz")
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkFloat32), str(folder / "2d.nrrd"))
    sitk.WriteImage(sitk.Image([4, 4, 4, 3], sitk.sitkFloat32), str(folder / "4d.nii.gz"))
    mixed = sitk.Image([4, 4, 4, 3], sitk.sitkFloat32)
    mixed.SetDirection((1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0))      # time along z
    sitk.WriteImage(mixed, str(folder / "mixed4d.mha"))
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorFloat32, 3), str(folder / "vector.nrrd"))
    sitk.WriteImage(sitk.Image([8, 8, 1], sitk.sitkInt16), str(folder / "slice.nii.gz"))
    (folder / "empty.nii.gz").write_bytes(b"")
    (folder / "text.nii.gz").write_text("not an image\n")
    for suffix in (".nii.gz", ".nii", ".nrrd"):
        whole = write_volume(ct, folder / f"whole{suffix}").read_bytes()
        (folder / f"cut{suffix}").write_bytes(whole[:len(whole) // 3])
    bad = ct.array.astype(np.float32)
    bad[2, 3, 4] = np.nan
    write_volume(ct.with_array(bad), folder / "nan.nrrd")
    bad[2, 3, 4] = np.inf
    write_volume(ct.with_array(bad), folder / "inf.mha")
    header = write_volume(ct, folder / "whole.mha").read_bytes()
    (folder / "skew.mha").write_bytes(header.replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1",
                                                     b"TransformMatrix = 1 0 0 0.5 1 0 0 0 1"))
    (folder / "zero.mha").write_bytes(re.sub(rb"ElementSpacing = [0-9.]+", b"ElementSpacing = 0", header))
    write_volume(ct.with_array(ct.array.astype(np.int16)), folder / "gap")
    sorted((folder / "gap").glob("*.dcm"))[2].unlink()
    write_volume(ct.with_array(ct.array.astype(np.int16)), folder / "two")
    write_volume(ct.with_array(ct.array.astype(np.int16)), folder / "other")
    for f in (folder / "other").glob("*.dcm"):
        f.rename(folder / "two" / f"b_{f.name}")
    (folder / "other").rmdir()
    (folder / "nothing").mkdir()
    (folder / "taken.nii.gz").mkdir()
    os.link(folder / "ct.nii.gz", folder / "link.nii.gz")                # the input under a second name
    write_volume(ct, folder / "pair.mhd")                                   # a header and its data file,
    (folder / "pair.zraw").rename(folder / "data.zraw")                     # which another .mhd would write
    header = folder / "pair.mhd"
    header.write_text(header.read_text().replace("pair.zraw", "data.zraw"))
    (folder / "broken.json").write_text("{ not json")
    (folder / "cohort").mkdir()
    write_volume(ct, folder / "cohort" / "a.nii.gz")
    write_volume(mr, folder / "cohort" / "b.nrrd")
    (folder / "linked").mkdir()
    (folder / "linked" / "away").symlink_to(folder / "nothing")            # a folder out of OUTDIR
    for name, rows in {"up": "ct.nii.gz,../../x.nii.gz", "absolute": "ct.nii.gz,/tmp/x.nii.gz",
                       "linked": "ct.nii.gz,away/x.nii.gz", "onto": "ct.nii.gz,mr.nii.gz\nmr.nii.gz,mr_sr.nii.gz",
                       "maps": "ct.nii.gz,a.nii.gz\nmr.nii.gz,a_confidence.nii.gz",
                       "report": "ct.nii.gz,ct_sr.nii.gz"}.items():
        (folder / f"{name}.csv").write_text(f"input,output\n{rows}\n")

    models = folder / "models"
    models.mkdir()
    tiny = dict(factor=5, depth=4, channels=4, heads=2, window=4, group=4, tab_window=[2, 4], enc_layers=1,
                tab_layers=1, dec_layers=1)
    fields = {"method": "tvsrn", "architecture": {"name": "tvsrn", "args": tiny}, "native_factor": 5,
              "modality": "CT", "normalization": {"kind": "window", "low": -1024.0, "high": 2048.0},
              "training_data": "none: random weights for tests"}
    torch.manual_seed(0)
    state = TVSRN(**tiny).state_dict()
    write_model(models, "tiny", state, fields)
    corrupt = write_model(models, "corrupt", state, fields)
    corrupt.weights_path.write_bytes(b"\0" * 100)
    write_model(models, "wrongarch", state, {**fields, "architecture": {"name": "tvsrn", "args": {**tiny, "channels": 8}}})
    write_model(models, "own", state, {**fields, "method": "selfsr"})
    card = write_model(models, "escape", state, fields)
    (models / "escape.json").write_text(card.path.read_text().replace('"escape.pt"', '"../escape.pt"'))
    for name, bad in {"factor": {"native_factor": "five"}, "noargs": {"architecture": {"name": "tvsrn", "args": None}},
                      "window0": {"window": [4, 0, 16]}, "spacingtext": {"slice_spacing_mm": "5"}}.items():
        card = write_model(models, name, state, fields)
        card.path.write_text(json.dumps({**json.loads(card.path.read_text()), **bad}))
    _write_reader_inputs(folder, ct)


def _write_reader_inputs(folder: Path, ct) -> None:
    """Files for the readers' cases: non-finite voxels in every format, NIfTI headers with scaling,
    offsets, sizes and pixdims that do not fit their data, a fake .dcm, and malformed model cards."""
    from conftest import edit_nifti
    from volumetricsr.data.io import write_volume

    def with_bad(value, dtype=np.float32):
        array = ct.array.astype(dtype)
        array[2, 3, 4] = value
        return ct.with_array(array)

    ints = ct.with_array(ct.array.astype(np.int16))
    write_volume(with_bad(np.nan), folder / "nan.nii.gz")
    write_volume(with_bad(np.inf), folder / "inf.nii")
    edit_nifti(write_volume(with_bad(-np.inf), folder / "ninf_scaled.nii.gz"), scl_slope=2.0)
    write_volume(with_bad(np.nan, np.float64), folder / "nan64.nrrd")
    write_volume(with_bad(np.inf), folder / "inf.nhdr")
    write_volume(with_bad(-np.inf, np.float64), folder / "ninf.mhd")
    edit_nifti(write_volume(ints, folder / "huge_scale.nii"), scl_slope=1e38)
    whole = edit_nifti(write_volume(ints, folder / "scaled.nii.gz"), scl_slope=2.0, scl_inter=-10.0).read_bytes()
    (folder / "cut_scaled.nii.gz").write_bytes(whole[:len(whole) // 2])
    edit_nifti(write_volume(ints, folder / "far.nii"), vox_offset=1e9)
    edit_nifti(write_volume(ints, folder / "before.nii"), vox_offset=-5)
    edit_nifti(write_volume(ints, folder / "more.nii"), dim={3: 60})
    edit_nifti(write_volume(ints, folder / "negpix.nii.gz"), pixdim={1: -0.8})
    edit_nifti(write_volume(ints, folder / "zeropix.nii"), pixdim={2: 0.0})
    edit_nifti(write_volume(ints, folder / "nanpix.nii.gz"), pixdim={3: np.nan})
    nrrd = write_volume(ints, folder / "nanspace.nrrd")
    nrrd.write_bytes(re.sub(rb"space directions: \([0-9.]+,", b"space directions: (nan,", nrrd.read_bytes()))
    mha = write_volume(ints, folder / "tiny.mha")
    mha.write_bytes(re.sub(rb"ElementSpacing = [0-9.]+", b"ElementSpacing = 1e-30", mha.read_bytes()))
    (folder / "fake").mkdir()
    (folder / "fake" / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 100)
    (folder / "cards").mkdir()
    for name, text in {"null": "null", "list": "[1, 2]", "deep": "[" * 100000}.items():
        (folder / "cards" / f"{name}.json").write_text(text)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    _write_inputs(folder)
    return folder


def _snapshot(folder: Path) -> dict:
    """Every path under ``folder``: its size, modification time and (a file's) SHA-256."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns,
                                         p.is_file() and hashlib.sha256(p.read_bytes()).hexdigest())
            for p in folder.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[f"{c.kind}: {c.what}" for c in CASES])
def test_bad_input_gets_one_line_exit_2_and_nothing_written(case, inputs, tmp_path, capfd, monkeypatch):
    from volumetricsr.app.cli import main

    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(inputs / "models"))
    unwritable = "/proc" if os.geteuid() == 0 else str(tmp_path / "locked")   # root writes anywhere else
    if unwritable != "/proc":
        (tmp_path / "locked").mkdir(mode=0o555)
    out = tmp_path / "out"
    out.mkdir()
    argv = case.args.format(**{"in": inputs, "out": out, "unwritable": unwritable}).split()
    before = _snapshot(inputs), _snapshot(out)
    capfd.readouterr()
    code = main(argv + (["--quiet"] if argv[0] == "infer" else []))
    captured = capfd.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("volumetricsr: error: "), captured.err
    assert re.search(case.says, lines[0]), lines[0]
    assert "Traceback" not in captured.err + captured.out and captured.out == ""
    assert (_snapshot(inputs), _snapshot(out)) == before, "something was written"


def test_there_are_at_least_30_cases_and_the_readme_lists_them():
    assert len(CASES) >= 30
    text = README.read_text()
    assert START in text and END in text, f"README needs {START} ... {END}"
    current = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert current == readme_table(), "README's bad-input table is stale: python Testing/Python/test_bad_inputs.py --readme"


if __name__ == "__main__" and sys.argv[1:] == ["--readme"]:
    text = README.read_text()
    head, rest = text.split(START, 1)
    README.write_text(f"{head}{START}\n{readme_table()}\n{END}{rest.split(END, 1)[1]}")
    print(f"updated {README}")

"""Reading and writing volumes (NIfTI, NRRD, MetaImage, DICOM series) with SimpleITK.

Writes go through the one writer (:mod:`.writer`): staged beside the target and moved into place at
the end, alone or together with the other outputs of a run, so a failed, cancelled or killed write
never leaves a half-written file.
"""
from __future__ import annotations

import contextlib
import gzip
import os
import re
import sys
import tempfile
import time
import uuid
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import SimpleITK as sitk

from volumetricsr.common.errors import InputError, Notice, OutputError
from volumetricsr.data.volume import FLOAT32_EXACT, Volume, check_scalar_volume, nonfinite_error
from volumetricsr.data.writer import Transaction, check_folder

PathLike = Union[str, os.PathLike]
FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Relative deviation of a DICOM slice gap from the median gap that counts as unequal spacing.
SLICE_GAP_TOLERANCE = 0.01
#: Words in SimpleITK's messages for a file that ends before its data does.
TRUNCATION_HINTS = ("not read completely", "fread got only", "but received", "unexpected end")
#: NIfTI datatype codes of scalar voxels and their numpy types (byte order added from the header).
NIFTI_TYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8",
               1280: "u8"}
#: The most voxels along one axis a format holds (NIfTI-1 keeps the sizes in 16-bit fields; DICOM
#: its rows and columns).
MAX_AXIS_SIZE = {".nii": 32767, ".nii.gz": 32767, "dicom": 65535}
#: DICOM tags copied from an input series into a written one (patient and study identity).
STUDY_TAGS = ("0010|0010", "0010|0020", "0010|0030", "0010|0040", "0020|000d", "0008|0020",
              "0008|0030", "0008|0050", "0008|0060", "0020|0052", "0008|103e", "0020|0011",
              "0028|1050", "0028|1051", "0018|0050")     # ... and the window and slice thickness


def is_volume_file(path: PathLike) -> bool:
    """A file whose name ends in a volume suffix (``FILE_SUFFIXES``)."""
    return Path(path).is_file() and str(path).lower().endswith(FILE_SUFFIXES)


def volume_name(path: PathLike) -> str:
    """The file or folder name without its volume suffix: ``a/b.nii.gz`` -> ``b``."""
    name = Path(path).name
    suffix = next((x for x in FILE_SUFFIXES if name.lower().endswith(x)), "")
    return name[:len(name) - len(suffix)]


def volume_format(path: PathLike) -> str:
    """The suffix of a volume file name; else 'dicom' for a folder (existing, ending in a separator, or
    without suffix)."""
    p = str(path)
    for suffix in FILE_SUFFIXES:
        if p.lower().endswith(suffix):
            return suffix
    if os.path.isdir(p) or p.endswith(("/", os.sep)) or not Path(p).suffix:
        return "dicom"
    if p.lower().endswith(".dcm"):
        return "dicom-file"
    raise OutputError(f"Unknown volume format for {p!r}. Use one of {', '.join(FILE_SUFFIXES)} "
                      "or a folder for a DICOM series.")


# ----------------------------------------------------------------------------- reading

def read_volume(path: PathLike, series: Optional[str] = None) -> Volume:
    """Read a volume file, or the DICOM series in a folder (``series``: its SeriesInstanceUID)."""
    frames = read_frames(path, series)
    if len(frames) > 1:
        raise InputError(f"{Path(path).name} is a 4-D image, a sequence of {len(frames)} volumes: read it with "
                         "read_frames (`volumetricsr infer` super-resolves every frame), or extract one frame.")
    return frames[0]


def read_frames(path: PathLike, series: Optional[str] = None) -> list[Volume]:
    """The volumes of a file: one for a 3-D file or DICOM series, one per frame for a 4-D file (a
    sequence: cine, multi-phase, DCE), each with ``metadata['frame']`` = its ``index`` and ``value``
    (the 4th axis's origin + index x spacing, e.g. a time)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"No such file or folder: {p}")
    if p.is_dir() or p.suffix.lower() == ".dcm":
        return [_read_dicom(p, series)]
    if p.stat().st_size == 0:
        raise InputError(f"{p} is an empty file (0 bytes): copy it again.")
    try:
        image, said = _library_call(sitk.ReadImage, str(p))
    except RuntimeError as exc:
        full = f"{exc} {exc.__cause__}"
        if "Zero-valued spacing" in full:
            raise InputError(f"{p} has a zero voxel spacing in its header; fix the header (each axis's spacing "
                             "in mm) before super-resolution.")
        if any(hint in full for hint in TRUNCATION_HINTS):
            raise _truncated(p)
        raise InputError(f"Could not read {p}: it is not an image SimpleITK can read "
                         f"({', '.join(FILE_SUFFIXES)} or a DICOM folder). Details: {exc}")
    if not p.name.lower().endswith((".nii", ".nii.gz")):
        if said:
            warnings.warn(f"reading {p.name}: {said}", Notice, stacklevel=2)
        return frames_from_image(image, name=p.name)
    if said:       # the NIfTI reader warns when the header's descriptions of the geometry disagree
        raise InputError(f"{p}: its header describes the voxel geometry in two ways that disagree "
                         f"({said}), so where its voxels lie is uncertain. Fix the header "
                         "(pixdim and the qform/sform must agree), for example by saving it again from the "
                         "scanner's DICOM.")
    scan = _nifti_scan(p)
    if scan is None:
        raise InputError(f"Could not read {p}: its NIfTI header does not say where its voxels are (a data "
                         "offset that is not a number of bytes). Fix the header's vox_offset.")
    if scan.missing > 0:
        raise _truncated(p)
    frames = frames_from_image(image, name=p.name)
    if scan.nonfinite:
        raise nonfinite_error(str(p), scan.nonfinite)
    if scan.values is not None:     # scaled: the intensities as the standard defines them, computed here
        if scan.values.size != sum(f.array.size for f in frames):
            raise InputError(f"Could not read {p}: the sizes in its header disagree with the image SimpleITK "
                             "reads from it. Fix the header's dim.")
        values = scan.values.reshape((len(frames),) + frames[0].array.shape)
        frames = [f.with_array(v) for f, v in zip(frames, values)]
    return frames


def _truncated(path: Path) -> InputError:
    return InputError(f"{path} is truncated: it holds less data than its header announces (an interrupted copy "
                      "or download?). Copy it again.")


@dataclass
class NiftiScan:
    """What a NIfTI file holds beyond what SimpleITK says: ``missing`` bytes of the data its header
    announces (a truncated file reads with zeros for them), ``nonfinite`` NaN or infinite voxels (the
    NIfTI library turns them into zeros, silently), and, for a file with intensity scaling
    (``scl_slope``/``scl_inter``), the scaled ``values`` computed as the standard defines them (ITK
    scales in float32 and applies ``scl_inter`` even with a zero ``scl_slope``)."""

    missing: int
    nonfinite: int = 0
    values: Optional[np.ndarray] = None


def _nifti_header(header: bytes) -> Optional[dict]:
    """The fields of a NIfTI-1 or NIfTI-2 header that locate and decode its data; None if it is neither."""
    if len(header) < 348:
        return None
    for order in "<>":
        size = int(np.frombuffer(header, f"{order}i4", 1, 0)[0])
        if size in (348, 540):
            break
    else:
        return None
    if size == 540 and len(header) < 540:
        return None

    def field(kind: str, at: int, count: int = 1) -> np.ndarray:
        return np.frombuffer(header, f"{order}{kind}", count, at)

    if size == 348:
        dims, (code, bitpix) = field("i2", 40, 8), field("i2", 70, 2)
        offset, slope, inter = field("f4", 108, 3)
    else:
        dims, (code, bitpix) = field("i8", 16, 8), field("i2", 12, 2)
        offset, (slope, inter) = field("i8", 168)[0], field("f8", 176, 2)
    code, bitpix, offset, slope, inter = int(code), int(bitpix), float(offset), float(slope), float(inter)
    if not 0 <= offset < 2 ** 62:
        return None
    n = int(np.prod(np.maximum(dims[1:1 + int(np.clip(dims[0], 1, 7))].astype(np.int64), 1)))
    dtype = np.dtype(order + NIFTI_TYPES[code]) if code in NIFTI_TYPES else None
    item = dtype.itemsize if dtype is not None else max(bitpix, 8) // 8
    return {"offset": int(offset), "n": n, "bytes": n * item, "dtype": dtype, "stated": (slope, inter),
            "slope": slope if np.isfinite(slope) else 0.0, "inter": inter if np.isfinite(inter) else 0.0}


def _nifti_scan(path: Path) -> Optional[NiftiScan]:
    """Read a NIfTI file's data once, decompressed (:class:`NiftiScan`); None if its header is unreadable."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            head = f.read(540)
            h = _nifti_header(head)
            if h is None:
                return None
            dtype, need = h["dtype"], h["bytes"]
            own = dtype is not None and h["stated"] not in ((0.0, 0.0), (1.0, 0.0))     # ITK would scale
            floats = dtype is not None and dtype.kind == "f"
            blocks = iter([head[h["offset"]:]] if h["offset"] < len(head) else [])
            f.read(max(h["offset"] - len(head), 0))
            held, nonfinite, pending, kept = 0, 0, b"", []
            for block in (b for chunk in (blocks, iter(lambda: f.read(1 << 22), b"")) for b in chunk):
                block = block[:need - held]
                held += len(block)
                if own:
                    kept.append(block)
                elif floats:
                    data = pending + block
                    usable = len(data) - len(data) % dtype.itemsize
                    nonfinite += int(usable // dtype.itemsize
                                     - np.count_nonzero(np.isfinite(np.frombuffer(data[:usable], dtype))))
                    pending = data[usable:]
                if held >= need:
                    break
    except (EOFError, OSError, zlib.error):     # a gzip stream cut short, or corrupt
        return NiftiScan(missing=1)
    if held < need:
        return NiftiScan(missing=need - held)
    if not own:
        return NiftiScan(0, nonfinite)
    raw = np.frombuffer(b"".join(kept), dtype)
    del kept
    nonfinite = int(raw.size - np.count_nonzero(np.isfinite(raw))) if floats else 0
    if nonfinite or h["slope"] == 0:        # a zero or non-finite scl_slope: no scaling at all
        return NiftiScan(0, nonfinite, raw.astype(dtype.newbyteorder("=")))
    values = raw.astype(np.float64) * h["slope"] + h["inter"]
    if not np.isfinite(values).all() or np.abs(values).max(initial=0) > np.finfo(np.float32).max:
        raise InputError(f"{path}: its intensity scaling (scl_slope {h['slope']:g}, scl_inter {h['inter']:g}) "
                         "takes voxels beyond what a 32-bit float holds; fix the header's scl_slope.")
    wide = dtype.kind == "f" and dtype.itemsize > 4 or \
        dtype.kind in "iu" and dtype.itemsize > 2 and np.abs(raw).max(initial=0) > FLOAT32_EXACT
    return NiftiScan(0, 0, values if wide else values.astype(np.float32))


def frames_from_image(image: sitk.Image, name: str = "input") -> list[Volume]:
    """The volumes of a 3-D image (one) or a 4-D one (one per frame, on the first three axes' grid)."""
    if image.GetDimension() != 4:
        return [volume_from_image(image, name)]
    check_scalar_pixels(image, name)
    spacing, origin = image.GetSpacing(), image.GetOrigin()
    direction = np.reshape(image.GetDirection(), (4, 4))
    if not np.allclose(direction[:3, 3], 0, atol=1e-6) or not np.allclose(direction[3, :3], 0, atol=1e-6):
        raise InputError(f"{name} is a 4-D image whose 4th axis is not apart from the space axes (its direction "
                         "matrix mixes them); it is not a sequence of volumes. Fix its header.")
    frames = []
    for t, array in enumerate(sitk.GetArrayViewFromImage(image)):
        frame = sitk.GetImageFromArray(array)
        frame.SetSpacing(spacing[:3])
        frame.SetOrigin(origin[:3])
        frame.SetDirection(tuple(direction[:3, :3].ravel()))
        frames.append(volume_from_image(frame, f"{name} frame {t}",
                                        {"frame": {"index": t, "value": origin[3] + t * spacing[3]}}))
    return frames


def check_scalar_pixels(image: sitk.Image, name: str) -> None:
    """Refuse an image with several values per voxel (a vector or colour image)."""
    comps = image.GetNumberOfComponentsPerPixel()
    if comps != 1:
        raise InputError(f"{name} has {comps} components per voxel (a vector or colour image); "
                         "VolumetricSR needs a scalar volume. Extract one channel first.")


def volume_from_image(image: sitk.Image, name: str = "input", metadata: Optional[dict] = None) -> Volume:
    check_scalar_pixels(image, name)
    dim = image.GetDimension()
    if dim != 3:
        raise InputError(f"{name} is a {dim}-D image; VolumetricSR needs a 3-D volume"
                         + (" or a 4-D sequence of them." if dim > 4 else "."))
    direction = np.reshape(image.GetDirection(), (3, 3))
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        raise InputError(f"{name} has a direction matrix that is not a rotation (sheared or scaled axes: "
                         f"{np.round(direction, 4).tolist()}). Fix its header, or resample it to a proper "
                         "orientation first (e.g. Resample Scalar/Vector/DWI Volume in Slicer).")
    volume = Volume(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(), direction, metadata or {})
    check_scalar_volume(volume, name)
    return volume


def image_from_frames(frames: list[Volume], target: PathLike = "the output") -> sitk.Image:
    """A 4-D image of volumes on one grid (:func:`write_frames`)."""
    odd = next((t for t, f in enumerate(frames) if not f.same_grid(frames[0])), None)
    if odd is not None:
        raise OutputError(f"Cannot write {target}: frame {odd} lies on another grid than frame 0, and a 4-D file "
                          "holds frames on one grid.")
    values = [f.metadata.get("frame", {}).get("value") for f in frames]
    steps = np.diff(values) if None not in values else [0.0]
    even = np.all(np.asarray(steps) > 0) and np.allclose(steps, steps[0], rtol=1e-6)
    dtype = np.result_type(*(f.array.dtype for f in frames))
    return sitk.JoinSeries([image_from_volume(f.with_array(f.array.astype(dtype, copy=False))) for f in frames],
                           float(values[0]) if even else 0.0, float(steps[0]) if even else 1.0)


def image_from_volume(volume: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.ravel()))
    return image


def _read_dicom(p: Path, series: Optional[str]) -> Volume:
    folder = p if p.is_dir() else p.parent
    has_files = any(f.is_file() for f in folder.iterdir())
    ids = _library_call(sitk.ImageSeriesReader.GetGDCMSeriesIDs, str(folder))[0] if has_files else ()
    if p.is_file():
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        try:
            _library_call(reader.ReadImageInformation)
            series = series or reader.GetMetaData("0020|000e").strip()
        except RuntimeError as exc:
            raise InputError(f"Could not read DICOM file {p}: {exc}")
    if not ids:
        raise InputError(f"No DICOM series found in {folder}. Give a volume file or a folder of DICOM files.")
    if series is None:
        if len(ids) > 1:
            raise InputError(f"{folder} holds {len(ids)} DICOM series ({', '.join(ids)}); "
                             "name the one to use (--series UID).")
        series = ids[0]
    if series not in ids:
        raise InputError(f"DICOM series {series} is not in {folder}; it holds {', '.join(ids)}.")
    files = _library_call(sitk.ImageSeriesReader.GetGDCMSeriesFileNames, str(folder), series)[0]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        tags = _check_slice_positions(files)
        image = _library_call(reader.Execute)[0]
    except RuntimeError as exc:
        raise InputError(f"Could not read the DICOM series in {folder}: {exc}")
    return volume_from_image(image, name=f"DICOM series {series}", metadata={"dicom": tags})


def _check_slice_positions(files) -> dict:
    """Refuse series whose slices are not equally spaced; return the first slice's study tags."""
    positions, tags = [], {}
    reader = sitk.ImageFileReader()
    for n, f in enumerate(files):
        reader.SetFileName(f)
        _library_call(reader.ReadImageInformation)
        if n == 0:
            tags = {t: reader.GetMetaData(t) for t in STUDY_TAGS if reader.HasMetaDataKey(t)}
            if reader.HasMetaDataKey("0020|0037"):
                cosines = _numbers(reader, "0020|0037", 6, f)
                normal = np.cross(cosines[:3], cosines[3:])
            else:
                return tags
        if not reader.HasMetaDataKey("0020|0032"):
            return tags
        positions.append(_numbers(reader, "0020|0032", 3, f) @ normal)
    gaps = np.diff(np.sort(positions))
    if len(gaps):
        median = float(np.median(gaps))
        worst = float(np.max(np.abs(gaps - median)))
        if median <= 0 or worst > SLICE_GAP_TOLERANCE * median:
            raise InputError(
                f"The DICOM series has unequal slice spacing (gaps from {gaps.min():.4g} to {gaps.max():.4g} mm, "
                "or missing or duplicated slices). Super-resolution needs equally spaced slices: check the "
                "series is complete, or resample it to a uniform spacing first.")
    return tags


def _numbers(reader, tag: str, count: int, file: str) -> np.ndarray:
    """The ``count`` numbers of a DICOM tag (``a\\b\\c``), or an InputError naming the file and tag."""
    try:
        values = np.array([float(v) for v in reader.GetMetaData(tag).split("\\")])
    except ValueError:
        values = np.array([])
    if values.size != count or not np.isfinite(values).all():
        raise InputError(f"DICOM file {file} has a malformed tag ({tag.replace('|', ',')}): "
                         f"{reader.GetMetaData(tag).strip()[:60]!r}, not {count} numbers. Fix or remove the file.")
    return values


# ----------------------------------------------------------------------------- writing

def check_writable(path: PathLike) -> str:
    """Fail early, before any work, when ``path`` cannot be written; return its format."""
    fmt = volume_format(path)
    if fmt == "dicom-file":
        raise OutputError(f"{path}: write a DICOM series to a folder, not to a single .dcm file.")
    target = Path(path)
    check_folder(target)
    if fmt == "dicom":
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise OutputError(f"Cannot write a DICOM series to {target}: it exists and is not an empty folder.")
    elif target.is_dir():
        raise OutputError(f"Cannot write {target}: a folder of that name exists.")
    return fmt


def check_size(path: PathLike, size: tuple[int, int, int]) -> None:
    """Fail early, before any work, when a volume of ``size`` voxels (i, j, k) is too large for the
    format of ``path`` (:data:`MAX_AXIS_SIZE`)."""
    fmt = volume_format(path)
    most = MAX_AXIS_SIZE.get(fmt)
    if most is not None and max(size[:2] if fmt == "dicom" else size) > most:
        raise OutputError(f"{path}: a {' x '.join(map(str, size))} volume does not fit the format, which holds at "
                          f"most {most} voxels along an axis. Write .nrrd or .mha, or ask for a coarser spacing.")


def volume_files(path: PathLike, writing: bool = False) -> list[Path]:
    """Every file a volume path involves: a .mhd or .nhdr header and its data file (the one its header
    names when reading; each one the format may write when writing), else the path itself."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".mhd", ".nhdr")):
        return [path]
    stem = path.with_suffix("")
    if writing:
        data = [".raw", ".zraw"] if name.endswith(".mhd") else [".raw", ".raw.gz"]
        return [path, *(stem.with_name(stem.name + s) for s in data)]
    mhd = name.endswith(".mhd")
    try:
        with open(path, "rb") as f:
            header = f.read(1 << 16).decode("latin-1")
    except OSError:
        return [path]
    for line in header.splitlines():
        field, sep, value = line.partition("=" if mhd else ":")
        if sep and field.strip().lower().replace(" ", "") == ("elementdatafile" if mhd else "datafile"):
            value = value.strip()
            if value and value.split()[0].upper() not in ("LOCAL", "LIST") and "%" not in value:
                return [path, path.parent / value]
    return [path]


def cast_array(array: np.ndarray, dtype) -> np.ndarray:
    """Cast to ``dtype``, rounding and clipping to its range when it is an integer type."""
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer) and not np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(dtype)
        array = np.clip(np.rint(array), info.min, info.max)
    return array.astype(dtype, copy=False)


def volume_transaction(outputs: dict, inputs: dict = {}) -> Transaction:
    """The writer's :class:`~.writer.Transaction` for volumes: each output checked by
    :func:`check_writable`, the data files of two-file formats (.mhd, .nhdr) counted as written and read."""
    return Transaction(outputs, inputs, expand=volume_files, check=check_writable)


def write_volume(volume: Volume, path: PathLike, dtype=None, tx: Optional[Transaction] = None) -> Path:
    """Write ``volume`` to a file or (for a folder path) a DICOM series, through the one writer:
    into ``tx`` when given (a :func:`volume_transaction` holding ``path``: placed at its commit, with
    the run's other outputs), else on its own."""
    return write_frames([volume], path, dtype, tx)


def check_frames_format(path: PathLike, frames: int) -> None:
    """Fail early when ``path``'s format cannot hold a sequence of ``frames`` volumes (DICOM here)."""
    if frames > 1 and volume_format(path) in ("dicom", "dicom-file"):
        raise OutputError(f"{path}: a sequence of {frames} volumes is written as one 4-D file; "
                          f"give a {', '.join(s for s in FILE_SUFFIXES if s not in ('.nhdr', '.mhd'))} name.")


def write_frames(frames: list[Volume], path: PathLike, dtype=None, tx: Optional[Transaction] = None) -> Path:
    """Write the volumes of a sequence as one 4-D file (one volume: as :func:`write_volume`) through
    the one writer; the 4th axis from the frames' ``metadata['frame']['value']`` where they are evenly
    spaced, else 0, 1, 2, ..."""
    target = Path(path)
    check_frames_format(target, len(frames))
    if tx is None:
        with volume_transaction({"output": target}) as own:
            return write_frames(frames, target, dtype, own)
    fmt = volume_format(target)
    if dtype is not None:
        frames = [f.with_array(cast_array(f.array, dtype)) for f in frames]
    staged = tx.path(target)
    try:
        if fmt == "dicom":
            _write_dicom(frames[0], staged)
            return target
        image = image_from_volume(frames[0]) if len(frames) == 1 else image_from_frames(frames, target)
        try:
            _, said = _library_call(sitk.WriteImage, image, str(staged), True)
        except RuntimeError as exc:
            raise OutputError(f"Could not write {target}: {exc}")
        if fmt in (".nii", ".nii.gz") and (_nifti_scan(staged) or NiftiScan(1)).missing:
            raise OutputError(f"Could not write {target}: the file came out incomplete (is the disk full?"
                              + (f" The NIfTI library says: {said}" if said else "") + ")")
    except OSError as exc:
        raise OutputError(f"Could not write {target}: {exc}")
    return target


def _dicom_rescale(array: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Pixels to hand GDCM plus the rescale slope and intercept that fit them in 16 bits.

    Integer volumes that fit int16 are stored as they are; anything else is given to GDCM as
    float64 with a power-of-ten slope (GDCM applies the rescale while writing).
    """
    lo, hi = float(array.min()), float(array.max())
    if np.issubdtype(array.dtype, np.integer) and lo >= -32768 and hi <= 32767:
        return array.astype(np.int16), 1.0, 0.0
    intercept = float(np.rint((lo + hi) / 2)) if lo < -32768 or hi > 32767 else 0.0
    span = max(abs(lo - intercept), abs(hi - intercept), 1e-12)
    slope = float(10.0 ** np.ceil(np.log10(span / 32000.0)))
    return array.astype(np.float64), slope, intercept


def _write_dicom(volume: Volume, folder: Path) -> None:
    folder.mkdir()
    pixels, slope, intercept = _dicom_rescale(volume.array)
    image = image_from_volume(volume.with_array(pixels))
    tags = dict(volume.metadata.get("dicom", {}))
    now = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    tags.setdefault("0020|000d", _new_uid())
    tags.setdefault("0008|0060", "OT")
    tags.setdefault("0020|0052", _new_uid())
    derived, source_thickness = volume.metadata.get("derivation"), tags.pop("0018|0050", "").strip()
    tags["0018|0050"] = f"{volume.spacing[2]:.10g}"
    if derived:   # a derived series (PS3.3 C.7.6.1): says how it was made and claims no thinner slices
        tags.update({"0008|0008": "DERIVED\\SECONDARY", "0008|2111": derived["description"][:1024]})
        if derived["axis"] == 2:      # slices along the upsampled axis: the acquired thickness
            tags["0018|0050"] = source_thickness or f"{derived['source_spacing_mm']:.10g}"
    tags.update({
        "0020|000e": _new_uid(),
        "0018|0088": f"{volume.spacing[2]:.10g}",
        "0008|103e": (tags.get("0008|103e", "").strip() + " VolumetricSR").strip()[:64],
        "0008|0021": now[0], "0008|0031": now[1],
        "0020|0037": "\\".join(f"{v:.10g}" for v in volume.direction[:, 0].tolist() + volume.direction[:, 1].tolist()),
        "0028|0030": f"{volume.spacing[1]:.10g}\\{volume.spacing[0]:.10g}",
        "0028|1053": f"{slope:.10g}", "0028|1052": f"{intercept:.10g}",
        "0028|0100": "16", "0028|0101": "16", "0028|0102": "15", "0028|0103": "1",
    })
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetSize()[2]):
        s = image[:, :, k]
        for tag, value in tags.items():
            s.SetMetaData(tag, value)
        s.SetMetaData("0008|0018", _new_uid())
        s.SetMetaData("0020|0013", str(k + 1))
        s.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        writer.SetFileName(str(folder / f"slice_{k + 1:05d}.dcm"))
        try:
            _library_call(writer.Execute, s)
        except RuntimeError as exc:
            raise OutputError(f"Could not write DICOM slice {k + 1}: {exc}")


def _new_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def _library_call(call, *args):
    """``call(*args)`` (a SimpleITK function) with what its C/C++ libraries print caught: returns its
    result and those lines folded into one (:func:`_library_said`); a failure raises RuntimeError
    with its own last line and theirs (the whole message as its ``__cause__``)."""
    said: list[str] = []
    try:
        with _library_messages(said):
            result = call(*args)
    except RuntimeError as exc:
        raise RuntimeError(_first_line(exc, said)) from exc
    return result, _library_said(said)


@contextlib.contextmanager
def _library_messages(into: list):
    """Catch what C and C++ libraries (ITK, the NIfTI library, GDCM) write to file descriptor 2 within
    the block, where Python's ``sys.stderr`` cannot see it: their lines go into ``into``, to be folded
    into one message of ours. Without a descriptor 2 to redirect, the block just runs."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            into.extend(caught.read().decode("utf-8", "replace").splitlines())


def _library_said(lines: list) -> str:
    """The informative part of a library's lines: no "WARNING: In file.cxx, line N" locations, no
    "NiftiImageIO (0x55d...):" object prefixes, each line once."""
    kept: list[str] = []
    for line in lines:
        line = re.sub(r"^\w+ \(0x[0-9a-f]+\): ", "", line.strip().lstrip("*").strip())
        if line and not re.match(r"^(WARNING|ERROR): In .*, line \d+$", line) and line not in kept:
            kept.append(line)
    text = "; ".join(kept)
    return text if len(text) <= 300 else text[:297] + "..."


def _first_line(exc: Exception, said: list) -> str:
    """What went wrong in one line: the last line of ``exc``'s message, and what the libraries ``said``
    on stderr meanwhile."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    own, extra = lines[-1] if lines else type(exc).__name__, _library_said(said)
    return f"{own}; {extra}" if extra and extra not in own else own

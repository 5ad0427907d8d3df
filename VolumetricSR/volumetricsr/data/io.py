"""Reading and writing volumes (NIfTI, NRRD, MetaImage, DICOM series) with SimpleITK.

Writes go through the one writer (:mod:`.writer`): staged beside the target and moved into place at
the end, alone or together with the other outputs of a run, so a failed, cancelled or killed write
never leaves a half-written file.
"""
from __future__ import annotations

import gzip
import os
import time
import uuid
import zlib
from pathlib import Path
from typing import Optional, Union

import numpy as np
import SimpleITK as sitk

from volumetricsr.common.errors import InputError, OutputError
from volumetricsr.data.volume import Volume, check_scalar_volume
from volumetricsr.data.writer import Transaction, check_folder

PathLike = Union[str, os.PathLike]
FILE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Relative deviation of a DICOM slice gap from the median gap that counts as unequal spacing.
SLICE_GAP_TOLERANCE = 0.01
#: Words in SimpleITK's messages for a file that ends before its data does.
TRUNCATION_HINTS = ("not read completely", "fread got only", "but received", "unexpected end")
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
    p = Path(path)
    if not p.exists():
        raise InputError(f"No such file or folder: {p}")
    if p.is_dir() or p.suffix.lower() == ".dcm":
        return _read_dicom(p, series)
    if p.stat().st_size == 0:
        raise InputError(f"{p} is an empty file (0 bytes): copy it again.")
    try:
        image = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        if "Zero-valued spacing" in str(exc):
            raise InputError(f"{p} has a zero voxel spacing in its header; fix the header (each axis's spacing "
                             "in mm) before super-resolution.")
        if any(hint in str(exc) for hint in TRUNCATION_HINTS):
            raise _truncated(p)
        raise InputError(f"Could not read {p}: it is not an image SimpleITK can read "
                         f"({', '.join(FILE_SUFFIXES)} or a DICOM folder). Details: {_first_line(exc)}")
    if p.name.lower().endswith((".nii", ".nii.gz")) and not _nifti_complete(p, image):
        raise _truncated(p)
    return volume_from_image(image, name=p.name)


def _truncated(path: Path) -> InputError:
    return InputError(f"{path} is truncated: it holds less data than its header announces (an interrupted copy "
                      "or download?). Copy it again.")


def _nifti_complete(path: Path, image: sitk.Image) -> bool:
    """Whether a NIfTI file holds (decompressed) all the data its header announces: SimpleITK reads a
    truncated one with zeros for the missing voxels, and its writer reports a failed write (a full
    disk) only on stderr."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            header = f.read(540)
            held = len(header) + sum(len(block) for block in iter(lambda: f.read(1 << 22), b""))
    except (EOFError, OSError, zlib.error):     # a gzip stream cut short, or corrupt
        held = -1
    if held >= 0:
        order = "<" if int.from_bytes(header[:4], "little") in (348, 540) else ">"
        nifti2 = int.from_bytes(header[:4], "little" if order == "<" else "big") == 540
        offset = int(np.frombuffer(header, f"{order}i8" if nifti2 else f"{order}f4", 1, 168 if nifti2 else 108)[0])
        expected = offset + image.GetNumberOfPixels() * image.GetNumberOfComponentsPerPixel() \
            * image.GetSizeOfPixelComponent()
        return held >= expected
    return False


def volume_from_image(image: sitk.Image, name: str = "input", metadata: Optional[dict] = None) -> Volume:
    dim, comps = image.GetDimension(), image.GetNumberOfComponentsPerPixel()
    if comps != 1:
        raise InputError(f"{name} has {comps} components per voxel (a vector or colour image); "
                         "VolumetricSR needs a scalar volume. Extract one channel first.")
    if dim != 3:
        raise InputError(f"{name} is a {dim}-D image; VolumetricSR needs a 3-D volume"
                         + (" (for a time series, extract one frame first)." if dim == 4 else "."))
    direction = np.reshape(image.GetDirection(), (3, 3))
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-3):
        raise InputError(f"{name} has a direction matrix that is not a rotation (sheared or scaled axes: "
                         f"{np.round(direction, 4).tolist()}). Fix its header, or resample it to a proper "
                         "orientation first (e.g. Resample Scalar/Vector/DWI Volume in Slicer).")
    volume = Volume(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(), direction, metadata or {})
    check_scalar_volume(volume, name)
    return volume


def image_from_volume(volume: Volume) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(tuple(volume.direction.ravel()))
    return image


def _read_dicom(p: Path, series: Optional[str]) -> Volume:
    folder = p if p.is_dir() else p.parent
    has_files = any(f.is_file() for f in folder.iterdir())
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) if has_files else ()   # GDCM warns on none
    if p.is_file():
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        try:
            reader.ReadImageInformation()
            series = series or reader.GetMetaData("0020|000e").strip()
        except RuntimeError as exc:
            raise InputError(f"Could not read DICOM file {p}: {_first_line(exc)}")
    if not ids:
        raise InputError(f"No DICOM series found in {folder}. Give a volume file or a folder of DICOM files.")
    if series is None:
        if len(ids) > 1:
            raise InputError(f"{folder} holds {len(ids)} DICOM series ({', '.join(ids)}); "
                             "name the one to use (--series UID).")
        series = ids[0]
    if series not in ids:
        raise InputError(f"DICOM series {series} is not in {folder}; it holds {', '.join(ids)}.")
    files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series)
    tags = _check_slice_positions(files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"Could not read the DICOM series in {folder}: {_first_line(exc)}")
    return volume_from_image(image, name=f"DICOM series {series}", metadata={"dicom": tags})


def _check_slice_positions(files) -> dict:
    """Refuse series whose slices are not equally spaced; return the first slice's study tags."""
    positions, tags = [], {}
    reader = sitk.ImageFileReader()
    for n, f in enumerate(files):
        reader.SetFileName(f)
        reader.ReadImageInformation()
        if n == 0:
            tags = {t: reader.GetMetaData(t) for t in STUDY_TAGS if reader.HasMetaDataKey(t)}
            if reader.HasMetaDataKey("0020|0037"):
                cosines = np.array([float(v) for v in reader.GetMetaData("0020|0037").split("\\")])
                normal = np.cross(cosines[:3], cosines[3:])
            else:
                return tags
        if not reader.HasMetaDataKey("0020|0032"):
            return tags
        positions.append(np.array([float(v) for v in reader.GetMetaData("0020|0032").split("\\")]) @ normal)
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
    key = "elementdatafile" if name.endswith(".mhd") else "data file"
    try:
        with open(path, "rb") as f:
            header = f.read(1 << 16).decode("latin-1")
    except OSError:
        return [path]
    for line in header.splitlines():
        field, sep, value = line.partition("=" if key == "elementdatafile" else ":")
        if sep and field.strip().lower().replace("datafile", "data file") in (key, "data file"):
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


def write_volume(volume: Volume, path: PathLike, dtype=None, tx: Optional[Transaction] = None) -> Path:
    """Write ``volume`` to a file or (for a folder path) a DICOM series, through the one writer:
    into ``tx`` when given (placed at its commit, with the run's other outputs), else on its own."""
    fmt = check_writable(path)
    target = Path(path)
    if tx is None:
        with Transaction({"output": target}, expand=volume_files) as own:
            return write_volume(volume, target, dtype, own)
    if dtype is not None:
        volume = volume.with_array(cast_array(volume.array, dtype))
    staged = tx.path(target)
    try:
        if fmt == "dicom":
            _write_dicom(volume, staged)
            return target
        image = image_from_volume(volume)
        try:
            sitk.WriteImage(image, str(staged), True)
        except RuntimeError as exc:
            raise OutputError(f"Could not write {target}: {_first_line(exc)}")
        if fmt in (".nii", ".nii.gz") and not _nifti_complete(staged, image):
            raise OutputError(f"Could not write {target}: the file came out incomplete (is the disk full?).")
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
            writer.Execute(s)
        except RuntimeError as exc:
            raise OutputError(f"Could not write DICOM slice {k + 1}: {_first_line(exc)}")


def _new_uid() -> str:
    return f"2.25.{uuid.uuid4().int}"


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__

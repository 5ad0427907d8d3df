"""Shared fixtures: small synthetic volumes, and the real data folder when it is present."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from volumetricsr import Volume

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A random proper rotation (oblique direction cosines)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def make_volume(size_ijk=(20, 18, 8), spacing=(0.8, 0.8, 3.0), origin=(10.0, -20.0, 5.0),
                direction=None, dtype=np.float32, seed=0) -> Volume:
    """A smooth random volume of the given geometry (array indexed [k, j, i])."""
    rng = np.random.default_rng(seed)
    shape = tuple(reversed(size_ijk))
    array = rng.normal(size=shape).cumsum(axis=0).cumsum(axis=1).cumsum(axis=2)
    array = (100 * array / np.abs(array).max()).astype(dtype)
    return Volume(array, spacing, origin, np.eye(3) if direction is None else direction)


def make_ct_volume(air_rows: int = 2, **kwargs) -> Volume:
    """:func:`make_volume` in HU: tissue around 0 with air (-1000 HU) in the first and last rows."""
    v = make_volume(**kwargs)
    a = v.array.copy()
    a[:, :air_rows], a[:, -air_rows:] = -1000, -1000
    return v.with_array(a)


@pytest.fixture
def volume() -> Volume:
    return make_volume()


@pytest.fixture
def qt_slicer(monkeypatch):
    """The Slicer stand-in, reset, with the modules' real .ui files built by PySide6 and seen as PythonQt
    shows them (ui_preview); skipped without PySide6."""
    pytest.importorskip("PySide6.QtUiTools")
    import sys

    import slicer_standin
    from PySide6.QtCore import QTimer
    from ui_preview import child_widget_variables, load_ui

    slicer = slicer_standin.install()
    slicer_standin.reset()
    monkeypatch.setattr(slicer.util, "loadUI", load_ui)
    monkeypatch.setattr(slicer.util, "childWidgetVariables", child_widget_variables)
    monkeypatch.setattr(sys.modules["qt"], "QTimer", QTimer, raising=False)   # the stand-in's qt is empty
    yield slicer
    slicer_standin.reset()


@pytest.fixture
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return DATA


#: NIfTI-1 header fields a test may set: byte offset and numpy type (little-endian, as SimpleITK writes).
NIFTI1_FIELDS = {"dim": (40, "<i2"), "datatype": (70, "<i2"), "pixdim": (76, "<f4"), "vox_offset": (108, "<f4"),
                 "scl_slope": (112, "<f4"), "scl_inter": (116, "<f4"), "qform_code": (252, "<i2"),
                 "sform_code": (254, "<i2")}


def edit_nifti(path: Path, **fields) -> Path:
    """Set NIfTI-1 header fields of a .nii or .nii.gz file in place: a number, or {index: number} for
    the arrays (``pixdim={1: -0.8}``), e.g. ``edit_nifti(p, scl_slope=2.0, scl_inter=-10.0)``."""
    import gzip

    path = Path(path)
    packed = path.name.endswith(".gz")
    raw = bytearray(gzip.decompress(path.read_bytes()) if packed else path.read_bytes())
    for name, value in fields.items():
        offset, kind = NIFTI1_FIELDS[name]
        for index, v in (value.items() if isinstance(value, dict) else [(0, value)]):
            at = offset + index * np.dtype(kind).itemsize
            raw[at:at + np.dtype(kind).itemsize] = np.array(v, kind).tobytes()
    path.write_bytes(gzip.compress(bytes(raw), mtime=0) if packed else bytes(raw))
    return path

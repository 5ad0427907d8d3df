"""Training data: thin/thick pairs from the RPLHR-CT layout, a list of pairs, or thin volumes only.

``--data`` may be
- a folder in the RPLHR-CT release layout: ``train/``, ``val/`` (and ``test/``), each holding
  ``1mm/`` and ``5mm/`` folders with NIfTI files of the same case names (thin and thick);
- a CSV or text file, one case per line: ``thin[,thick[,split]]`` (comma, tab or spaces; a header
  line ``thin,thick,split`` is allowed; relative paths are relative to the file). A line without a
  thick volume makes a pseudo-pair; ``split`` is ``train`` or ``val``;
- a folder of thin volumes (or one thin volume): pseudo-pairs only.
Pseudo-pairs come from :func:`volumetricsr.data.simulate.simulate_thick` (slice-profile averaging).
Cases without a split are split by case (the last ``val_fraction`` of them), or with
``val_split="slab"`` (and always for a single case) by slab: each case's last ``val_fraction`` of
slices validates, the rest trains.

A loaded :class:`Pair` holds stacks ``(slices, rows, cols)`` normalised to [0, 1] with thick slice
``k`` at thin slice ``factor*k``. With a cache folder (:func:`open_pair`; the trainer's
``WORKDIR/cache``) each pair is prepared once, stored as ``.npy`` files and memory-mapped anew at
every access, so a cohort of hundreds of CTs trains in the memory of a few crops.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from volumetricsr.common.errors import InputError
from volumetricsr.data.geometry import through_plane_axis, to_stack
from volumetricsr.data.io import is_volume_file, read_volume, volume_name
from volumetricsr.data.normalization import Normalization
from volumetricsr.data.profiles import DEFAULT_PROFILE, thickness_of
from volumetricsr.data.simulate import simulate_thick
from volumetricsr.data.volume import Volume
from volumetricsr.data.writer import write_atomically

RPLHR_THIN, RPLHR_THICK = "1mm", "5mm"
#: Changes when what a cache entry holds changes (v2: percentile ranges from the thick slices).
CACHE_VERSION = 2


@dataclass
class Case:
    name: str
    thin: Path
    thick: Optional[Path] = None       # None: pseudo-pair from ``thin``
    split: Optional[str] = None        # 'train', 'val' or None (decided later)
    slab: Optional[tuple[float, float]] = None   # fraction of the thick slices to use (slab split)

    @property
    def pseudo(self) -> bool:
        return self.thick is None

    def header(self) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """``(size, spacing)`` of the thick volume (the thin one of a pseudo-pair), from its header."""
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(self.thin if self.pseudo else self.thick))
        reader.ReadImageInformation()
        return reader.GetSize(), reader.GetSpacing()

    def slice_spacing(self, factor: int) -> float:
        """The thick slice spacing in mm (from the file headers; a pseudo-pair's is the thin one x ``factor``)."""
        return max(self.header()[1]) * (factor if self.pseudo else 1)


@dataclass
class Pair:
    name: str
    thick: np.ndarray      # (n, rows, cols) float32 in [0, 1]
    thin: np.ndarray       # ((n-1)*factor+1, rows, cols)
    factor: int


@dataclass
class Dataset:
    layout: str
    train: list[Case] = field(default_factory=list)
    val: list[Case] = field(default_factory=list)

    def describe(self) -> dict:
        pseudo = {c.pseudo for c in self.train + self.val}
        kind = "pseudo" if pseudo == {True} else "real" if pseudo == {False} else "mixed"
        return {"layout": self.layout, "pairs": kind,
                "train_cases": [c.name for c in self.train], "val_cases": [c.name for c in self.val]}

    def split(self) -> dict:
        """The exact case lists (files, slabs): saved with a run and compared when it resumes."""
        def rows(cases):
            return [[c.name, str(c.thin), None if c.thick is None else str(c.thick), c.slab and list(c.slab)]
                    for c in cases]
        return {"train": rows(self.train), "val": rows(self.val)}


def _rplhr_cases(root: Path, split: str) -> list[Case]:
    thin_dir, thick_dir = root / split / RPLHR_THIN, root / split / RPLHR_THICK
    if not thin_dir.is_dir():
        return []
    cases = []
    for thin in sorted(p for p in thin_dir.iterdir() if is_volume_file(p)):
        thick = thick_dir / thin.name
        if not thick.is_file():
            raise InputError(f"{thin} has no thick counterpart {thick} (RPLHR-CT layout: same names in "
                             f"{RPLHR_THIN}/ and {RPLHR_THICK}/).")
        cases.append(Case(volume_name(thin), thin, thick, split))
    return cases


def _list_cases(path: Path) -> list[Case]:
    cases = []
    text = path.read_text().splitlines()
    for n, line in enumerate(text, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        cells = next(csv.reader([line])) if "," in line else line.split()
        cells = [c.strip() for c in cells]
        if n == 1 and cells[0].lower() == "thin":
            continue
        thin = (path.parent / cells[0]).resolve()
        thick = (path.parent / cells[1]).resolve() if len(cells) > 1 and cells[1] else None
        split = cells[2].lower() if len(cells) > 2 and cells[2] else None
        if split not in (None, "train", "val"):
            raise InputError(f"{path}:{n}: split must be train or val, not {split!r}.")
        for p in (thin, thick):
            if p is not None and not p.exists():
                raise InputError(f"{path}:{n}: {p} does not exist.")
        cases.append(Case(volume_name(thin), thin, thick, split))
    return cases


def _slab_split(case: Case, val_fraction: float) -> tuple[Case, Case]:
    return (Case(case.name, case.thin, case.thick, "train", (0.0, 1 - val_fraction)),
            Case(case.name + "-slab", case.thin, case.thick, "val", (1 - val_fraction, 1.0)))


def discover(data: "str | Path", val_fraction: float = 0.2, val_split: str = "case") -> Dataset:
    """Find the training and validation cases under ``data`` (see the module docstring)."""
    root = Path(data)
    if val_split not in ("case", "slab"):
        raise InputError(f"val_split must be 'case' or 'slab', not {val_split!r}.")
    if not root.exists():
        raise InputError(f"Training data {root} does not exist.")
    if root.is_dir() and (root / "train" / RPLHR_THIN).is_dir():
        ds = Dataset("rplhr", _rplhr_cases(root, "train"), _rplhr_cases(root, "val"))
        unsplit = []
    else:
        if root.is_file() and not is_volume_file(root):
            layout, cases = "list", _list_cases(root)
        else:
            files = [root] if root.is_file() else sorted(p for p in root.iterdir() if is_volume_file(p))
            layout, cases = "thin", [Case(volume_name(p), p) for p in files]
        ds = Dataset(layout, [c for c in cases if c.split == "train"], [c for c in cases if c.split == "val"])
        unsplit = [c for c in cases if c.split is None]
    if unsplit:
        n_val = int(round(len(unsplit) * val_fraction)) if not ds.val else 0
        if val_fraction > 0 and (val_split == "slab" or len(unsplit) == 1 and not ds.val and not ds.train):
            for c in unsplit:
                train, val = _slab_split(c, val_fraction)
                ds.train.append(train)
                ds.val.append(val)
        else:
            n_val = min(max(n_val, 1 if val_fraction > 0 and not ds.val else 0), len(unsplit) - 1)
            ds.train += unsplit[:len(unsplit) - n_val]
            ds.val += unsplit[len(unsplit) - n_val:]
    if not ds.train:
        raise InputError(f"No training volumes found in {root}.")
    return ds


def _thin_index_of_thick(thin: Volume, thick: Volume, axis: int, factor: int) -> int:
    """Thin slice index where thick slice 0 lies (checked to be whole and the factor to match)."""
    ratio = thick.spacing[axis] / thin.spacing[axis]
    if abs(ratio - factor) > 0.02 * factor:
        raise InputError(f"Slice spacings {thick.spacing[axis]:g} / {thin.spacing[axis]:g} mm give x{ratio:.3g}, "
                         f"not the model's x{factor}.")
    if [thin.size[b] for b in range(3) if b != axis] != [thick.size[b] for b in range(3) if b != axis]:
        raise InputError(f"Thin {thin.size} and thick {thick.size} volumes differ in-plane.")
    d = thin.direction[:, axis]
    offset = float(np.dot(np.subtract(thick.origin, thin.origin), d)) / thin.spacing[axis]
    if abs(offset - round(offset)) > 0.1:
        raise InputError(f"The thick slices fall between thin slices (offset {offset:.2f} thin slices).")
    return int(round(offset))


def load_pair(case: Case, factor: int, norm: Normalization, axis=None, profile: tuple = DEFAULT_PROFILE) -> Pair:
    """Read (or simulate, with ``profile`` ``(shape, FWHM / thick spacing)``) one case's aligned thick and
    thin stacks, normalised to [0, 1]."""
    thin_vol = read_volume(case.thin)
    if case.pseudo:
        a = through_plane_axis(thin_vol, axis)
        thickness = thickness_of(profile, factor * thin_vol.spacing[a])
        thick_vol, offset = simulate_thick(thin_vol, factor, thickness, profile[0], axis=a), 0
    else:
        thick_vol = read_volume(case.thick)
        a = through_plane_axis(thick_vol, axis)
        offset = _thin_index_of_thick(thin_vol, thick_vol, a, factor)
    thick, thin = to_stack(thick_vol.array, a), to_stack(thin_vol.array, a)
    ks = [k for k in range(thick.shape[0]) if 0 <= offset + factor * k < thin.shape[0]]
    if case.slab is not None:
        lo, hi = (int(round(f * len(ks))) for f in case.slab)
        ks = ks[lo:hi]
    if len(ks) < 2:
        raise InputError(f"Case {case.name}: fewer than 2 thick slices overlap the thin volume.")
    k0, k1 = ks[0], ks[-1] + 1
    thin = thin[offset + factor * k0: offset + factor * (k1 - 1) + 1]
    thick = np.ascontiguousarray(thick[k0:k1], dtype=np.float32)
    lo, hi = norm.range_of(thick)          # from the thick slices, as at inference
    return Pair(case.name, norm.forward(thick, lo, hi), norm.forward(np.ascontiguousarray(thin, dtype=np.float32),
                                                                     lo, hi), factor)


class CachedPair:
    """A :class:`Pair` stored as ``thick.npy`` / ``thin.npy`` in ``folder``: each access maps the
    file anew, so pages read for one crop are released with it (resident memory stays bounded)."""

    def __init__(self, name: str, folder: Path, factor: int):
        self.name, self.folder, self.factor = name, folder, factor

    @property
    def thick(self) -> np.ndarray:
        return np.load(self.folder / "thick.npy", mmap_mode="r")

    @property
    def thin(self) -> np.ndarray:
        return np.load(self.folder / "thin.npy", mmap_mode="r")


def _cache_key(case: Case, factor: int, norm: Normalization, profile: tuple = DEFAULT_PROFILE) -> str:
    files = [(str(p), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in (case.thin, case.thick) if p is not None]
    made = [] if tuple(profile) == DEFAULT_PROFILE or not case.pseudo else [list(profile)]
    spec = json.dumps([files, case.slab, factor, [norm.kind, norm.low, norm.high], CACHE_VERSION, *made])
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def open_pair(case: Case, factor: int, norm: Normalization, cache: Optional[Path] = None,
              profile: tuple = DEFAULT_PROFILE) -> "Pair | CachedPair":
    """:func:`load_pair`, kept in RAM (``cache=None``) or prepared once into the ``cache`` folder
    (keyed by the files' size and time, the slab, factor and normalisation) and memory-mapped."""
    if cache is None:
        return load_pair(case, factor, norm, profile=profile)
    folder = Path(cache) / f"{case.name}-{_cache_key(case, factor, norm, profile)}"
    if not (folder / "thin.npy").is_file():
        pair = load_pair(case, factor, norm, profile=profile)
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("thick", "thin"):   # thin last: its presence marks a complete entry
            _save_npy(folder / f"{name}.npy", getattr(pair, name))
    return CachedPair(case.name, folder, factor)


def _save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through the one writer: never half-written."""
    write_atomically(path, lambda staged: np.save(staged, array))


def foreground_pixels(pair: "Pair | CachedPair", level: float) -> np.ndarray:
    """``(n, 2)`` in-plane (row, col) positions (int16) where some thick slice exceeds ``level``;
    computed once: kept on an in-RAM pair, in the cache folder of a cached pair."""
    def compute() -> np.ndarray:
        return np.argwhere(np.asarray(pair.thick).max(axis=0) > level).astype(np.int16)

    folder = getattr(pair, "folder", None)
    if folder is None:
        cache = pair.__dict__.setdefault("_foreground", {})
        if level not in cache:
            cache[level] = compute()
        return cache[level]
    path = folder / f"foreground-{level:g}.npy"
    if not path.is_file():
        _save_npy(path, compute())
    return np.load(path, mmap_mode="r")


def random_crop(pair: Pair, rng: np.random.Generator, depth: int, size: int, flip: bool = True,
                foreground: Optional[float] = None):
    """A random training sample: thick ``(depth, s, s)`` and thin ``((depth-1)*f+1, s, s)`` arrays.

    ``s`` is ``size`` or the in-plane size when smaller; flipped left-right with probability 1/2.
    With ``foreground`` (a normalised intensity), crops are centred on a random pixel above it, so
    that training is not spent on the air around the patient (falls back to anywhere if none is).
    """
    n, h, w = pair.thick.shape
    if n < depth:
        raise InputError(f"Case {pair.name} has {n} thick slices; a training sample needs {depth}.")
    sh, sw = min(size, h), min(size, w)
    k = int(rng.integers(0, n - depth + 1))
    inside = foreground_pixels(pair, foreground) if foreground is not None else ()
    if len(inside):
        cy, cx = (int(v) for v in inside[int(rng.integers(len(inside)))])
        y, x = int(np.clip(cy - sh // 2, 0, h - sh)), int(np.clip(cx - sw // 2, 0, w - sw))
    else:
        y, x = int(rng.integers(0, h - sh + 1)), int(rng.integers(0, w - sw + 1))
    f = pair.factor
    thick = pair.thick[k:k + depth, y:y + sh, x:x + sw]
    thin = pair.thin[f * k:f * (k + depth - 1) + 1, y:y + sh, x:x + sw]
    if flip and rng.random() < 0.5:
        thick, thin = thick[..., ::-1], thin[..., ::-1]
    return np.ascontiguousarray(thick), np.ascontiguousarray(thin)


def centre_crop(pair: "Pair | CachedPair", size: int) -> "Pair | CachedPair":
    """The in-plane centre ``size x size`` of a pair (validation on crops, read into RAM); 0 keeps it
    as it is."""
    if not size:
        return pair
    _, h, w = pair.thick.shape
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    sl = (slice(None), slice(y, y + size), slice(x, x + size))
    return Pair(pair.name, np.array(pair.thick[sl]), np.array(pair.thin[sl]), pair.factor)


def plane_patch(array: np.ndarray, axis: int, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random ``size`` patch of a random plane across ``axis`` of the 3-D ``array`` (the other two
    axes in order), mirrored left-right half of the time; a contiguous copy."""
    index: list = [slice(None)] * 3
    index[axis] = int(rng.integers(array.shape[axis]))
    for d, n in zip((d for d in range(3) if d != axis), size):
        start = int(rng.integers(array.shape[d] - n + 1))
        index[d] = slice(start, start + n)
    p = array[tuple(index)]
    return np.ascontiguousarray(p[:, ::-1] if rng.random() < 0.5 else p)

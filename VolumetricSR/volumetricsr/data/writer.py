"""The one writer: every file the tool produces goes through a :class:`Transaction`.

A run names every path it will write (its result, maps, checkpoints, reports, a model's weights and
card) and every path it reads, before any work. :func:`check_paths` refuses a write that would touch
an input (the same path, the same file under another name, a companion data file, one inside the
other) or another output. Files are then written into a hidden staging folder beside each target
(``.vsr-<pid>-<random>.partial``: short, so any legal target name still fits the file system's
limit) and :meth:`Transaction.commit` moves them all into place at the end; if one move fails the
ones already made are undone. A run that fails, is cancelled or is killed places none of its files;
staging folders of writers that died are removed by the next write into the same folder.

    with Transaction({"output": out, "consistency map": cmap}, inputs={"input": src}) as tx:
        write_volume(result, tx.path(out))
        write_volume(residual, tx.path(cmap))
    # both files are in place here, or neither is
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Union

from volumetricsr.common.errors import OutputError

PathLike = Union[str, os.PathLike]
STAGING_SUFFIX = ".partial"
STAGING_PREFIX = ".vsr-"
#: Staging folders older than this are removed even when their writer's process cannot be asked.
STALE_AFTER_S = 86400.0
_OLD = ".replaced"        # inside a staging folder: the files a commit replaced, until it succeeds

Expand = Callable[[Path, bool], Iterable[Path]]


def _just(path: Path, writing: bool) -> Iterable[Path]:
    return (path,)


def _key(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _file_id(path: Path) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


Roles = Union[Mapping[str, PathLike], Iterable[tuple[str, PathLike]]]


def _pairs(roles: Roles) -> Iterable[tuple[str, PathLike]]:
    return roles.items() if isinstance(roles, Mapping) else roles


def check_paths(outputs: Roles, inputs: Roles = {}, expand: Expand = _just) -> None:
    """Raise :class:`OutputError` when an output would touch an input or another output: the same path,
    the same file under another name (a link), a companion data file, one inside the other.

    ``outputs`` and ``inputs`` map a role ("output", "--confidence-map", "input", "output (line 2)")
    to a path (a mapping, or pairs where roles repeat); ``expand(path, writing)`` gives every file a
    path involves (a .mhd and its data file).
    In linear time, by lookups: a cohort may have many thousand studies."""
    read: dict = {}                        # a file read (by path and by device and inode) -> who reads it
    holding: dict[Path, tuple] = {}        # every folder above a file read -> who reads it
    for role, p in _pairs(inputs):
        for f in expand(Path(p), False):
            key, reader = _key(f), (role, Path(p), _key(f) != _key(p))
            read[key] = read[_file_id(key)] = reader
            for parent in key.parents:
                holding.setdefault(parent, reader)
    read.pop(None, None)
    written: dict[Path, tuple] = {}        # a file written, and every folder above it -> who writes it
    for role, p in _pairs(outputs):
        given = Path(p)
        for f in expand(given, True):
            w = _key(f)
            reader = read.get(w) or read.get(_file_id(w))
            if reader:
                in_role, in_given, companion = reader
                if companion:
                    what = f"would write {w.name}, the data file of the {in_role} {in_given}"
                elif w != _key(given):
                    what = f"would write {w.name}, which is the {in_role} {in_given}"
                else:
                    link = "" if w == _key(in_given) else " (the same file under another name)"
                    what = f"would overwrite the {in_role} {in_given}{link}"
                raise OutputError(f"{role} {given} {what}: give another path (an input is never overwritten).")
            reader = holding.get(w) or next((read[q] for q in w.parents if q in read), None)
            if reader:
                raise OutputError(f"{role} {given} and the {reader[0]} {reader[1]} are one inside the other: "
                                  f"write outside the input.")
            same = written.get(w)
            outer = next((written[q] for q in w.parents if q in written and written[q][2]), None)
            for other, how in ((same, "would write the same file" if same and same[2] else "are one inside the other"),
                               (outer, "are one inside the other")):
                if other and other[:2] != (role, given):
                    raise OutputError(f"{role} {given} and {other[0]} {other[1]} {how} ({w.name}): give each its "
                                      f"own path.")
            written[w] = (role, given, True)
            for parent in w.parents:
                written.setdefault(parent, (role, given, False))


def check_folder(target: Path) -> None:
    """Fail early when ``target``'s folder is missing or not writable (a real probe, not the mode bits)."""
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"Cannot write {target}: folder {parent} does not exist.")
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as exc:
        raise OutputError(f"Cannot write {target}: {parent} is not writable ({exc.strerror}).")


class Transaction:
    """Stage every output of one run beside its target; place them all at :meth:`commit`."""

    def __init__(self, outputs: Mapping[str, PathLike], inputs: Mapping[str, PathLike] = {},
                 expand: Expand = _just, check: Optional[Callable[[Path], object]] = None):
        """``check(target)``, before any work, for each output (default :func:`check_folder`; a
        format's own check, such as a volume's, probes the folder too); ``expand``: see :func:`check_paths`."""
        self.targets = [Path(p) for p in outputs.values()]
        self._keys = {_key(t) for t in self.targets}
        for t in self.targets:
            (check or check_folder)(t)
        check_paths(outputs, inputs, expand)
        self._staging: dict[Path, Path] = {}          # target folder -> its staging folder

    def path(self, target: PathLike) -> Path:
        """Where to write ``target`` now: the same name, in the staging folder beside it."""
        target = Path(target)
        if _key(target) not in self._keys:
            raise ValueError(f"{target} is not an output of this transaction")
        parent = _key(target).parent
        if parent not in self._staging:
            remove_stale_staging(parent)
            name = f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}{STAGING_SUFFIX}"
            try:
                (parent / name).mkdir()
            except OSError as exc:
                raise OutputError(f"Cannot write {target}: {exc.strerror} in {parent}.") from exc
            self._staging[parent] = parent / name
        return self._staging[parent] / target.name

    def commit(self) -> None:
        """Move every staged file into place (the named targets last); undo all on any failure."""
        moves = []
        for parent, staging in self._staging.items():
            named = {t.name for t in self.targets if _key(t).parent == parent}
            entries = sorted((e for e in staging.iterdir() if e.name != _OLD), key=lambda e: e.name in named)
            moves += [(e, parent / e.name) for e in entries]
        placed: list[tuple[Path, Optional[Path], bool]] = []      # (target, what it held before, replaced)
        try:
            for staged, target in moves:
                old = None
                if target.exists() or target.is_symlink():
                    old = staged.parent / _OLD / target.name
                    old.parent.mkdir(exist_ok=True)
                    os.replace(target, old)
                placed.append((target, old, False))
                os.replace(staged, target)
                placed[-1] = (target, old, True)
        except OSError as exc:
            for target, old, replaced in reversed(placed):
                if replaced:
                    _remove(target)
                if old is not None:
                    os.replace(old, target)
            raise OutputError(f"Could not place {target}: {exc.strerror or exc}; nothing was written.") from exc
        finally:
            self.abort()

    def abort(self) -> None:
        """Remove the staging folders (and whatever was staged in them)."""
        for staging in self._staging.values():
            shutil.rmtree(staging, ignore_errors=True)
        self._staging.clear()

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def write_atomically(path: PathLike, write: Callable[[Path], object], inputs: Mapping[str, PathLike] = {}) -> Path:
    """One file through a :class:`Transaction`: ``write(staged_path)`` then move it into place."""
    path = Path(path)
    with Transaction({"output": path}, inputs) as tx:
        write(tx.path(path))
    return path


def write_text(path: PathLike, text: str) -> Path:
    return write_atomically(path, lambda p: p.write_text(text))


def remove_stale_staging(folder: Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the staging folders in ``folder`` of writers that died (kill -9, power loss): those whose
    process no longer runs (POSIX) or, where that cannot be asked safely, older than ``max_age_s``."""
    removed = []
    for staging in Path(folder).glob(f"{STAGING_PREFIX}*{STAGING_SUFFIX}"):
        pid = staging.name[len(STAGING_PREFIX):].split("-", 1)[0]
        try:
            age = time.time() - staging.stat().st_mtime
        except OSError:
            continue
        if (pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid))) or age > max_age_s:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
    return removed


def process_alive(pid: int) -> bool:
    if os.name == "nt":       # os.kill(pid, 0) would terminate the process on Windows: go by age there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

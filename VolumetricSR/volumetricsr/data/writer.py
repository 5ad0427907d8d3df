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


def _inside(inner: Path, outer: Path) -> bool:
    return inner != outer and outer in inner.parents


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_paths(outputs: Mapping[str, PathLike], inputs: Mapping[str, PathLike] = {},
                expand: Expand = _just) -> None:
    """Raise :class:`OutputError` when an output would touch an input or another output.

    ``outputs`` and ``inputs`` map a role ("output", "--confidence-map", "input") to a path;
    ``expand(path, writing)`` gives every file a path involves (a .mhd and its data file)."""
    written: list[tuple[str, Path, Path]] = []      # (role, the path given, one file it writes)
    for role, p in outputs.items():
        written += [(role, Path(p), _key(f)) for f in expand(Path(p), True)]
    read = [(role, Path(p), _key(f)) for role, p in inputs.items() for f in expand(Path(p), False)]
    for role, given, w in written:
        for in_role, in_given, r in read:
            if w == r or _same_file(w, r):
                if w == _key(given) and r == _key(in_given):
                    what = f"is the {in_role} file" if w == r else f"is the same file as the {in_role} {in_given}"
                else:
                    whose = f"the {in_role} {in_given}" if r == _key(in_given) else \
                        f"the data file of the {in_role} {in_given}"
                    what = f"would write {w.name}, which is {whose}"
                raise OutputError(f"{role} {given} {what}: give another path (an input is never overwritten).")
            if _inside(w, r) or _inside(r, w):
                raise OutputError(f"{role} {given} and the {in_role} {in_given} are one inside the other: "
                                  f"write outside the input.")
    for i, (role, given, w) in enumerate(written):
        for role2, given2, w2 in written[i + 1:]:
            if role2 == role:
                continue
            if w == w2 or _same_file(w, w2) or _inside(w, w2) or _inside(w2, w):
                raise OutputError(f"{role} {given} and {role2} {given2} would write the same file "
                                  f"({w.name}): give each its own path.")


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
                 expand: Expand = _just):
        self.targets = [Path(p) for p in outputs.values()]
        for t in self.targets:
            check_folder(t)
        check_paths(outputs, inputs, expand)
        self._staging: dict[Path, Path] = {}          # target folder -> its staging folder
        self.done = False

    def path(self, target: PathLike) -> Path:
        """Where to write ``target`` now: the same name, in the staging folder beside it."""
        target = Path(target)
        if _key(target) not in {_key(t) for t in self.targets}:
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
        self.done = True

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

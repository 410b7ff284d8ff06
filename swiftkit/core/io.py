"""Writing outputs so that a reader never sees half of one: atomic files, staged folders, run folders.

Everything a command writes goes through these: ``args.json`` and other records are written to a
temporary file and renamed; exported models and evaluation folders are built in a temporary
folder and renamed when complete; a training run's folder is removed again when the run fails
before its first step (:func:`discard_unstarted_run`).

When the filesystem refuses a write (the disk is full, the folder is read-only or not a folder, no
permission) the error is an :class:`OutputError` naming the path and the fix, not a traceback
(:func:`write_problem` recognises those refusals, also when a library wraps them).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from swiftkit.core.errors import SwiftkitError

_RUN_RE = re.compile(r"^v(\d+)-")
FULL_BELOW = 1 << 20  # bytes: a filesystem with less free space than this is full for our purposes

_FIXES = {
    errno.ENOSPC: "the disk is full: free space or write somewhere else",
    errno.EDQUOT: "the disk quota is used up: free space or write somewhere else",
    errno.EFBIG: "the file is too large for this filesystem: write somewhere else",
    errno.EROFS: "the filesystem is read-only: write somewhere else",
    errno.EACCES: "permission denied: write to a folder you may write to",
    errno.EPERM: "operation not permitted: write to a folder you may write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "a folder is in the way of a file: choose another path",
    errno.EEXIST: "a file is in the way of a folder: choose another path",
}
# How libraries that wrap the OS error (safetensors, tokenizers) spell a full or read-only disk.
_WRAPPED = [(re.compile(r"No space left on device|os error 28|StorageFull", re.I), errno.ENOSPC),
            (re.compile(r"Disk quota exceeded|os error 122", re.I), errno.EDQUOT),
            (re.compile(r"Read-only file system|os error 30|ReadOnlyFilesystem", re.I), errno.EROFS)]


class OutputError(SwiftkitError):
    """An output file or folder cannot be written; the message names it and what to do."""


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def write_problem(exc: BaseException, folder: Path | None = None) -> str | None:
    """What the filesystem refused, with the fix, when ``exc`` (raised while writing under ``folder``)
    is such a refusal; None for anything else (a bug keeps its traceback).

    Looks through the exception's causes for an ``OSError`` with a refusal's errno, then for the way
    safetensors and other wrapping libraries spell one, then (``folder`` given, and ``exc`` not already a
    user error) at the free space left: torch's writer reports a full disk only as a failed stream.
    """
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in _FIXES:
            return _FIXES[link.errno]
    for link in _chain(exc):
        for pattern, code in _WRAPPED:
            if pattern.search(str(link)):
                return _FIXES[code]
    if folder is not None and isinstance(exc, Exception) and not isinstance(exc, SwiftkitError):
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return None
        if free < FULL_BELOW:
            return f"{_FIXES[errno.ENOSPC]} ({free} bytes left)"
    return None


def _refused(exc: OSError, what: str, path: Path) -> OutputError | None:
    problem = write_problem(exc)
    return OutputError(f"cannot write {what} {str(path)!r}: {problem}") if problem else None


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename): readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        error = _refused(exc, "the file", path)
        if error is None:
            raise
        raise error from exc


@contextmanager
def staged_dir(final: Path):
    """A fresh temporary folder beside ``final``, renamed to ``final`` when the block succeeds and
    removed when it fails: nothing half-written ever carries the final name."""
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
    except OSError as exc:
        error = _refused(exc, "the folder", final)
        if error is None:
            raise
        raise error from exc
    try:
        yield tmp
        os.replace(tmp, final)
    except Exception as exc:
        problem = write_problem(exc, tmp)
        if problem is None:
            raise
        raise OutputError(f"cannot write the folder {str(final)!r}: {problem}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def new_run_dir(output_dir: str | Path, flag: str = "--output_dir") -> Path:
    """Create the next ``v{N}-{YYYYmmdd-HHMMSS}`` directory under ``output_dir`` (named ``flag`` in errors)."""
    root = Path(output_dir)
    if root.exists() and not root.is_dir():
        raise OutputError(f"{flag} {str(root)!r} is a file, not a folder: pass a folder (it is created when missing)")
    try:
        root.mkdir(parents=True, exist_ok=True)
        numbers = [int(m.group(1)) for p in root.iterdir() if (m := _RUN_RE.match(p.name))]
        version = max(numbers, default=-1) + 1
        while True:
            run = root / f"v{version}-{time.strftime('%Y%m%d-%H%M%S')}"
            try:
                run.mkdir()
                return run
            except FileExistsError:  # another process took this number
                version += 1
    except OSError as exc:
        problem = write_problem(exc)
        if problem is None:
            raise
        raise OutputError(f"{flag} {str(root)!r}: cannot create a run folder there: {problem}") from exc


def timestamped_path(root: Path, suffix: str = "") -> Path:
    """``root/YYYYmmdd-HHMMSS{suffix}`` (``-N`` added before the suffix when taken); not created."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = root / f"{stamp}{suffix}", 1
    while path.exists():
        path, n = root / f"{stamp}-{n}{suffix}", n + 1
    return path


def discard_unstarted_run(run_dir: Path, root_was_created: bool) -> None:
    """Remove ``run_dir`` (and its parent, the ``--output_dir``, when this run created it and it is
    now empty): used when a fresh run fails before its first optimizer step, so no half-made run
    is left looking like a real one."""
    shutil.rmtree(run_dir, ignore_errors=True)
    root = run_dir.parent
    if root_was_created and root.is_dir() and not any(root.iterdir()):
        root.rmdir()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

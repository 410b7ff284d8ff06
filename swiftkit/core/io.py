"""Writing outputs so that a reader never sees half of one: atomic files, staged folders, run folders.

Everything a command writes goes through these: ``args.json`` and other records are written to a
temporary file and renamed; exported models and evaluation folders are built in a temporary
folder and renamed when complete; a training run's folder is removed again when the run fails
before its first step (:func:`discard_unstarted_run`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_RUN_RE = re.compile(r"^v(\d+)-")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename): readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@contextmanager
def staged_dir(final: Path):
    """A fresh temporary folder beside ``final``, renamed to ``final`` when the block succeeds and
    removed when it fails: nothing half-written ever carries the final name."""
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def new_run_dir(output_dir: str | Path) -> Path:
    """Create the next ``v{N}-{YYYYmmdd-HHMMSS}`` directory under ``output_dir``."""
    root = Path(output_dir)
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

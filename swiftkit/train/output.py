"""The run directory: ``output_dir/v{N}-{timestamp}/`` with args.json and manifest.json.

Everything here is plain JSON next to HF-format checkpoints, so an output directory is usable
without swiftkit.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from swiftkit.train.errors import TrainError

_RUN_RE = re.compile(r"^v(\d+)-")
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")


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


def checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint directories of a run, oldest step first."""
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def _complete(ckpt: Path) -> bool:
    # trainer_state.json is written last by transformers' checkpoint save.
    return (ckpt / "trainer_state.json").is_file()


def resolve_resume(path: str) -> Path:
    """The checkpoint to resume from; a run directory means its last complete checkpoint."""
    ckpt = Path(path)
    if not ckpt.is_dir():
        raise TrainError(f"--resume_from_checkpoint {path!r} does not exist")
    if not _CKPT_RE.match(ckpt.name):
        found = checkpoints(ckpt)
        if not found:
            raise TrainError(f"--resume_from_checkpoint {path!r} holds no checkpoint-N directory")
        complete = [c for c in found if _complete(c)]
        if not complete:
            raise TrainError(
                f"--resume_from_checkpoint {path!r}: no complete checkpoint (none has trainer_state.json)"
            )
        return complete[-1]
    if not _complete(ckpt):
        raise TrainError(
            f"--resume_from_checkpoint {str(ckpt)!r} is incomplete (no trainer_state.json); "
            "pass an earlier checkpoint or the run directory"
        )
    return ckpt


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


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("swiftkit", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_manifest(*, seed: int, data_fingerprint: str, template_fingerprint: str, template_name: str,
                   num_train_rows: int, num_val_rows: int, skipped_rows: int, model_path: str,
                   bad_rows_skipped: int = 0) -> dict:
    """``skipped_rows``: rows over --max_length; ``bad_rows_skipped``: unusable rows left out by
    --skip_bad_rows."""
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": library_versions(),
        "seed": seed,
        "model_path": model_path,
        "data_fingerprint": data_fingerprint,
        "template_fingerprint": template_fingerprint,
        "template": template_name,
        "num_train_rows": num_train_rows,
        "num_val_rows": num_val_rows,
        "skipped_rows": skipped_rows,
        "bad_rows_skipped": bad_rows_skipped,
    }

"""Finding checkpoints and the training arguments saved next to them.

A run folder ``v{N}-{timestamp}/`` holds ``args.json`` and ``checkpoint-{step}/`` folders; each
checkpoint holds a peft adapter (``adapter_config.json``) or full weights (``config.json``) and a
copy of ``args.json``. Used by training (resume, ``--adapters`` to continue from, reward models),
inference, evaluation, export and deploy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from swiftkit.core.errors import ConfigError

_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
_RUN_RE = re.compile(r"^v(\d+)-")
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")


class CheckpointError(ConfigError):
    """A checkpoint (or run) folder given by a flag is missing or unusable; the message names the flag."""


def checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint directories of a run, oldest step first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).iterdir() if (m := _CKPT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def is_complete(ckpt: Path) -> bool:
    """Whether a checkpoint was saved to the end (transformers writes trainer_state.json last)."""
    return (ckpt / "trainer_state.json").is_file()


def resolve_resume(path: str) -> Path:
    """The checkpoint to resume from; a run directory means its last complete checkpoint."""
    ckpt = Path(path)
    if not ckpt.is_dir():
        raise CheckpointError(f"--resume_from_checkpoint {path!r} does not exist")
    if not _CKPT_RE.match(ckpt.name):
        found = checkpoints(ckpt)
        if not found:
            raise CheckpointError(f"--resume_from_checkpoint {path!r} holds no checkpoint-N directory")
        complete = [c for c in found if is_complete(c)]
        if not complete:
            raise CheckpointError(
                f"--resume_from_checkpoint {path!r}: no complete checkpoint (none has trainer_state.json)"
            )
        return complete[-1]
    if not is_complete(ckpt):
        raise CheckpointError(
            f"--resume_from_checkpoint {str(ckpt)!r} is incomplete (no trainer_state.json); "
            "pass an earlier checkpoint or the run directory"
        )
    return ckpt


def is_lora_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def is_full_weights_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and not is_lora_dir(path)


def has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def newest_run(output_dir: Path) -> Path | None:
    """The ``v{N}-{timestamp}`` run folder with the highest N under an ``--output_dir`` that has a
    checkpoint, or None."""
    runs = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _RUN_RE.match(p.name))]
    for _, run in sorted(runs, reverse=True):
        if checkpoints(run):
            return run
    return None


def find_checkpoint(path: str, flag: str = "--adapters") -> Path:
    """The checkpoint directory for one ``flag`` value (``--adapters``, ``--reward_model``, ...): a
    checkpoint itself; a run directory means its last checkpoint; an ``--output_dir`` holding runs
    means the last checkpoint of its newest run (highest ``v{N}``)."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"{flag} {path!r} does not exist or is not a directory")
    if is_lora_dir(folder) or (folder / "config.json").is_file():
        return folder
    run = folder if checkpoints(folder) else newest_run(folder)
    found = [p for p in checkpoints(run) if p.is_dir()] if run is not None else []
    if found:
        return found[-1]
    raise CheckpointError(
        f"{flag} {path!r} holds neither a LoRA adapter (adapter_config.json) nor full weights "
        "(config.json), nor any checkpoint-N directory or v{N}-... run folder with one"
    )


def read_train_args(ckpt: Path) -> tuple[dict | None, Path | None]:
    """``args.json`` of the checkpoint (or of its run directory) and where it was found."""
    for candidate in (ckpt / "args.json", ckpt.parent / "args.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise CheckpointError(f"{candidate}: cannot be read as JSON: {exc}") from exc
            if not isinstance(data, dict):
                raise CheckpointError(f"{candidate}: expected a JSON object of training arguments")
            return data, candidate
    return None, None

"""Finding checkpoints, checking their files before anything loads them, and the training arguments
saved next to them.

A run folder ``v{N}-{timestamp}/`` holds ``args.json`` and ``checkpoint-{step}/`` folders; each
checkpoint holds a peft adapter (``adapter_config.json``) or full weights (``config.json``) and a
copy of ``args.json``. Used by training (resume, ``--adapters`` to continue from, reward models),
inference, evaluation, export and deploy, all through :func:`pick_checkpoint`: one rule for which
checkpoint a flag means (the last *complete* one of a run).

A checkpoint is untrusted input. :func:`check_files` reads every file that swiftkit, transformers
or peft will read from it the way they read it, without running code: JSON parses, safetensors files
are whole, and torch files (``.bin``/``.pt``/``.pth``) load with ``torch.load(weights_only=True)``
(tensors and plain containers only; a pickled object is refused, never called). A bad file stops the
command with one line naming the file, before any weights load.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import pickle
import re
import zipfile
from pathlib import Path

from swiftkit.core.errors import ConfigError

_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
_RUN_RE = re.compile(r"^v(\d+)-")
TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json", "tokenizer.model", "vocab.json")
TRAINER_STATE = "trainer_state.json"  # transformers writes it last: a checkpoint with it readable is complete
NEVER_READ = ("training_args.bin",)  # a pickle transformers writes for reference; nothing loads it
_TORCH_SUFFIXES = (".bin", ".pt", ".pth")


class CheckpointError(ConfigError):
    """A checkpoint (or run) folder given by a flag is missing or unusable; the message names the flag."""


def checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint directories of a run, oldest step first."""
    found = [(int(m.group(1)), p) for p in Path(run_dir).iterdir() if (m := _CKPT_RE.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def _state_problem(ckpt: Path) -> str | None:
    """Why ``ckpt`` is not a complete checkpoint, or None when it is."""
    state = ckpt / TRAINER_STATE
    if not state.is_file():
        return f"it has no {TRAINER_STATE}"
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"{str(state)!r} cannot be read ({_first_line(exc)})"
    if not isinstance(data, dict) or "global_step" not in data:
        return f"{str(state)!r} is not a trainer state (no global_step)"
    return None


def is_complete(ckpt: Path) -> bool:
    """Whether a checkpoint was saved to the end: transformers writes trainer_state.json last, so it
    must be there and readable."""
    return _state_problem(ckpt) is None


def checkpoint_step(ckpt: Path) -> int | None:
    """The optimizer steps ``ckpt``'s trainer state records (None when it has no readable one)."""
    try:
        return int(json.loads((ckpt / TRAINER_STATE).read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def last_complete(run_dir: Path) -> Path | None:
    """The complete checkpoint of ``run_dir`` with the highest step, or None."""
    complete = [c for c in checkpoints(run_dir) if is_complete(c)]
    return complete[-1] if complete else None


def is_lora_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def is_full_weights_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and not is_lora_dir(path)


def has_tokenizer(path: Path) -> bool:
    return any((path / name).is_file() for name in TOKENIZER_FILES)


def newest_run(output_dir: Path) -> Path | None:
    """The ``v{N}-{timestamp}`` run folder with the highest N under an ``--output_dir`` that has a
    complete checkpoint, or None."""
    runs = [(int(m.group(1)), p) for p in output_dir.iterdir() if p.is_dir() and (m := _RUN_RE.match(p.name))]
    for _, run in sorted(runs, reverse=True):
        if last_complete(run) is not None:
            return run
    return None


def pick_checkpoint(path: str, flag: str, *, model_dirs: bool = True) -> Path:
    """The checkpoint one ``flag`` value means (``--adapters``, ``--reward_model``,
    ``--resume_from_checkpoint``, ...), by one rule:

    * a ``checkpoint-N`` folder: itself, when complete (an incomplete one is refused);
    * a model folder (``adapter_config.json`` or ``config.json``, not named ``checkpoint-N``): itself,
      unless ``model_dirs`` is False (resume needs a checkpoint);
    * a run folder: its last complete checkpoint;
    * an ``--output_dir`` holding runs: the last complete checkpoint of its newest run (highest
      ``v{N}``) that has one.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"{flag} {path!r} does not exist or is not a directory")
    if _CKPT_RE.match(folder.name):
        problem = _state_problem(folder)
        if problem is None:
            return folder
        earlier = last_complete(folder.parent)
        instead = (f"pass {str(earlier)!r} or the run folder {str(folder.parent)!r} (its last complete checkpoint)"
                   if earlier is not None else "no earlier checkpoint of this run is complete")
        raise CheckpointError(f"{flag} {str(folder)!r} is an incomplete checkpoint ({problem}: its save did not "
                              f"finish, or the file was damaged since); {instead}")
    if model_dirs and (is_lora_dir(folder) or (folder / "config.json").is_file()):
        return folder
    found = checkpoints(folder)
    run = folder if found else newest_run(folder)
    if run is not None and (ckpt := last_complete(run)) is not None:
        return ckpt
    if found:
        raise CheckpointError(f"{flag} {path!r}: no complete checkpoint (none of {', '.join(p.name for p in found)} "
                              f"has a readable {TRAINER_STATE}: their saves did not finish)")
    runs = "any checkpoint-N directory or v{N}-... run folder with a complete one"
    if model_dirs:
        raise CheckpointError(f"{flag} {path!r} holds neither a LoRA adapter (adapter_config.json) nor full weights "
                              f"(config.json), nor {runs}")
    raise CheckpointError(f"{flag} {path!r} holds no checkpoint-N directory, nor {runs}")


def find_checkpoint(path: str, flag: str = "--adapters") -> Path:
    """The checkpoint or model folder for one ``flag`` value (see :func:`pick_checkpoint`), its files
    checked (:func:`check_files`)."""
    ckpt = pick_checkpoint(path, flag)
    check_files(ckpt, flag)
    return ckpt


def resolve_resume(path: str) -> Path:
    """The checkpoint ``--resume_from_checkpoint`` means: a checkpoint, or a run folder's (or an output
    folder's newest run's) last complete checkpoint; its files checked."""
    ckpt = pick_checkpoint(path, "--resume_from_checkpoint", model_dirs=False)
    check_files(ckpt, "--resume_from_checkpoint")
    return ckpt


# -- reading files without running them ------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _json_problem(path: Path) -> str | None:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        return f"cannot be read as JSON ({_first_line(exc)})"
    return None


def _safetensors_problem(path: Path) -> str | None:
    from safetensors import safe_open  # defers safetensors

    try:
        with safe_open(str(path), framework="numpy") as fh:
            fh.keys()
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError)
        return f"not a whole safetensors file ({_first_line(exc)})"
    return None


# The Python objects DeepSpeed pickles beside the tensors of its checkpoints: plain records (a loss
# scaler's settings, the ZeRO stage, a parameter fragment's offsets), rebuilt by setting attributes.
DEEPSPEED_GLOBALS = ("deepspeed.runtime.fp16.loss_scaler.LossScaler",
                     "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
                     "deepspeed.runtime.zero.config.ZeroStageEnum",
                     "deepspeed.utils.tensor_fragment.fragment_address")


def _deepspeed_globals() -> list:
    """The classes of :data:`DEEPSPEED_GLOBALS` torch's restricted unpickler may rebuild (those importable)."""
    found = []
    for name in DEEPSPEED_GLOBALS:
        module, _, attr = name.rpartition(".")
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(importlib.import_module(module), attr))
    return found


def _torch_problem(path: Path) -> str | None:
    """Load the file as transformers / peft do (``weights_only=True``; the RNG state with transformers'
    numpy allowlist): a pickled object is refused by torch's restricted unpickler, never called."""
    import torch  # defers torch

    context = contextlib.nullcontext()
    if path.name.startswith("rng_state"):
        from transformers.trainer_pt_utils import safe_globals  # defers transformers

        context = safe_globals()
    elif path.parent.name.startswith("global_step"):  # a DeepSpeed checkpoint's model and optimizer shards
        context = torch.serialization.safe_globals(_deepspeed_globals())
    try:
        with context:
            torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:
        return refused_pickle(exc)
    except Exception as exc:  # torch raises RuntimeError/EOFError/OSError for a damaged archive
        return f"damaged: it cannot be read as a torch file ({_first_line(exc)})"
    return None


def refused_pickle(exc: pickle.UnpicklingError) -> str:
    """What torch's restricted unpickler (``weights_only=True``) refused, in words: a file that holds
    pickled Python objects (naming the callable it would have run) or one that is not a tensor file."""
    unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    if unsafe:
        return (f"holds pickled Python objects, not only tensors (loading it would call {unsafe.group(1)}), "
                "so it is not loaded: a model or checkpoint file must hold tensors only")
    return "not a torch tensor file (it cannot be read as one)"


def _problem(path: Path) -> str | None:
    if path.suffix == ".json":
        return _json_problem(path)
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    if path.suffix in _TORCH_SUFFIXES and path.name not in NEVER_READ:
        return _torch_problem(path)
    return None


def checked_files(folder: Path) -> list[Path]:
    """The files :func:`check_files` reads: every ``.json``, ``.safetensors``, ``.bin``, ``.pt`` and
    ``.pth`` file of ``folder`` and of its sub-folders one level down (PPO's ``value_model/``, extra
    adapters), except :data:`NEVER_READ`."""
    files = [p for p in sorted(folder.iterdir()) if p.is_file()]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        files += [p for p in sorted(sub.iterdir()) if p.is_file()]
    suffixes = (".json", ".safetensors", *_TORCH_SUFFIXES)
    return [p for p in files if p.suffix in suffixes and p.name not in NEVER_READ]


def check_files(folder: Path, flag: str) -> None:
    """Raise :class:`CheckpointError` naming the first file of ``folder`` that cannot be read safely
    and completely (see the module docstring)."""
    for path in checked_files(folder):
        problem = _problem(path)
        if problem:
            raise CheckpointError(
                f"{flag}: {path}: {problem}; replace it with an intact copy, or pass another checkpoint"
            )


def read_train_args(ckpt: Path) -> tuple[dict | None, Path | None]:
    """``args.json`` of the checkpoint (or of its run directory) and where it was found."""
    for candidate in (ckpt / "args.json", ckpt.parent / "args.json"):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CheckpointError(
                    f"{candidate}: cannot be read as JSON ({_first_line(exc)}); restore it from another copy "
                    "(the run folder and every checkpoint-N hold one) or delete it and pass --model"
                ) from exc
            if not isinstance(data, dict):
                raise CheckpointError(
                    f"{candidate}: expected a JSON object of training arguments; restore it from another copy or "
                    "delete it and pass --model"
                )
            return data, candidate
    return None, None

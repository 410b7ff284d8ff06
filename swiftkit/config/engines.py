"""``--deepspeed`` and ``--fsdp``: the sharded training engines' settings, a shipped preset by name or a JSON file.

The presets are plain JSON files in ``swiftkit/config/engine_presets/`` (copy one to start your own):

- DeepSpeed (its own config format; ``"auto"`` values are filled in from the training flags by transformers):
  ``zero0`` (DDP through DeepSpeed), ``zero1`` (optimizer states sharded), ``zero2`` (+ gradients), ``zero3``
  (+ parameters; weights gathered into one file on save), ``zero2_offload`` and ``zero3_offload`` (optimizer
  states, and for ZeRO-3 the parameters, kept in CPU memory). The offload presets keep the optimizer the
  training flags choose (``zero_force_ds_cpu_optimizer: false``); a file with an ``optimizer`` section uses
  DeepSpeed's own instead.
- FSDP2 (transformers' ``fsdp_config``): ``fsdp2`` (parameters, gradients and optimizer states sharded,
  parameters freed again after each layer's forward), ``fsdp2_shard_grad_op`` (parameters kept whole from
  forward to backward: more memory, less communication), ``fsdp2_offload`` (sharded parameters in CPU memory).
  Checkpoints are saved whole (``FULL_STATE_DICT``), so they load without swiftkit.
"""

from __future__ import annotations

import json
from pathlib import Path

from swiftkit.core.errors import ConfigError
from swiftkit.core.registry import closest

PRESETS_DIR = Path(__file__).parent / "engine_presets"
DEEPSPEED_PRESETS = ("zero0", "zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")
FSDP_PRESETS = ("fsdp2", "fsdp2_shard_grad_op", "fsdp2_offload")


def preset_path(name: str) -> Path:
    return PRESETS_DIR / f"{name}.json"


def engine_config(value: str, flag: str) -> dict:
    """The settings ``--deepspeed``/``--fsdp`` VALUE names: a preset's, or a JSON file's (one clear error otherwise)."""
    presets = DEEPSPEED_PRESETS if flag == "--deepspeed" else FSDP_PRESETS
    if value in presets:
        path = preset_path(value)
    elif value.endswith(".json") or Path(value).exists():
        path = Path(value).expanduser()
        if not path.is_file():
            raise ConfigError(f"{flag} {value}: no such file")
    else:
        raise ConfigError(f"{flag} {value}: not a preset ({', '.join(presets)}) or a .json file"
                          f"{closest(value, presets)}")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{flag} {value}: {path} is not readable JSON ({exc})") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{flag} {value}: {path} must hold a JSON object")
    if flag == "--deepspeed":
        stage = settings.get("zero_optimization", {}).get("stage", 0)
        if stage not in (0, 1, 2, 3):
            raise ConfigError(f"{flag} {value}: zero_optimization.stage must be 0, 1, 2 or 3, not {stage!r}")
    elif int(settings.get("version", settings.get("fsdp_version", 2))) != 2:
        raise ConfigError(f"{flag} {value}: only FSDP2 is supported (\"version\": 2); FSDP1 is deprecated by "
                          "transformers")
    return settings


def engine_name(training) -> str | None:
    """The sharded engine the run trains on: ``deepspeed``, ``fsdp2``, or None (DDP or one process)."""
    return "deepspeed" if training.deepspeed else "fsdp2" if training.fsdp else None


def zero_stage(training) -> int | None:
    """The ZeRO stage of the run's --deepspeed; None without it."""
    if not training.deepspeed:
        return None
    return int(engine_config(training.deepspeed, "--deepspeed").get("zero_optimization", {}).get("stage", 0))


def shards_parameters(training) -> bool:
    """Whether the run's --deepspeed (ZeRO-3) or --fsdp splits each weight across the ranks."""
    return bool(training.fsdp) or zero_stage(training) == 3

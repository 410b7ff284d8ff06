"""What a training run records next to its checkpoints: args.json, manifest.json and the run plan.

``args.json`` holds every flag's value as the run used it (the inherited base model of
``rlhf --adapters`` or ``--resume_from_checkpoint`` included), ``command``, ``model_path``,
``template_name``, ``flags_given`` (the flags the user set) and ``plan`` (values derived while the
run was set up). It is what ``--adapters RUN`` and ``--resume_from_checkpoint`` read later, with
plain JSON tools or without swiftkit.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from swiftkit.config.engines import engine_name, zero_stage
from swiftkit.core import allocator, distributed
from swiftkit.core.io import write_json


@dataclass
class RunPlan:
    """Values a training run derives from its flags, the model and the data (never written back
    into the validated config): recorded under ``plan`` in args.json and manifest.json."""

    model: str | None = None  # the model name used: --model, or the one an args.json names
    model_path: str = ""
    model_type: str | None = None
    template_name: str = ""
    target_modules: list[str] | None = None  # the LoRA targets applied (the registry's for the model type)
    packing: bool = False
    padding_free: bool = False
    num_train_rows: int | None = None  # encoded rows before packing (None: streamed)
    num_val_rows: int = 0
    rows_too_long: int = 0
    bad_rows_skipped: int = 0
    rows_per_step: int = 1  # per-device batch x gradient accumulation (one process)
    resume_from: str | None = None
    inherited: dict = field(default_factory=dict)  # settings taken from an args.json (rlhf --adapters, resume)
    lr_scheduler: dict = field(default_factory=dict)
    method: dict = field(default_factory=dict)  # rlhf: beta, reference model, extra models
    quantization: dict | None = None  # how the base was loaded for QLoRA (method, bits, 4-bit options); None: not

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("swiftkit", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _distributed(training) -> dict:
    """How many processes and machines trained, and on what engine (with --deepspeed/--fsdp, the preset or
    file and, for DeepSpeed, the ZeRO stage)."""
    place = distributed.ranks()
    engine = engine_name(training)
    out = {"world_size": place.world_size, "nnodes": place.nnodes,
           "engine": engine or ("ddp" if place.distributed else "single process")}
    if engine is not None:
        out["config"] = training.deepspeed or training.fsdp
    if engine == "deepspeed":
        out["zero_stage"] = zero_stage(training)
    return out


def write_run_records(run_dir: Path, cfg, plan: RunPlan, *, data_fingerprint: str, template) -> dict:
    """Write ``args.json`` and ``manifest.json`` into ``run_dir``; returns the args written."""
    args = {"command": cfg.command, **cfg.to_flat(), **plan.inherited, "model_path": plan.model_path,
            "template_name": template.name, "flags_given": sorted(cfg.given), "plan": plan.as_dict()}
    write_json(run_dir / "args.json", args)
    write_json(run_dir / "manifest.json", {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": library_versions(),
        "allocator": allocator.current(),  # tcmalloc when a training command preloaded it (core.allocator)
        "distributed": _distributed(cfg.training),
        "seed": cfg.training.seed,
        "model_path": plan.model_path,
        "data_fingerprint": data_fingerprint,
        "template_fingerprint": template.fingerprint,
        "template": template.name,
        "num_train_rows": plan.num_train_rows,
        "num_val_rows": plan.num_val_rows,
        "skipped_rows": plan.rows_too_long,  # rows over --max_length
        "bad_rows_skipped": plan.bad_rows_skipped,  # unusable rows left out by --skip_bad_rows
        "plan": plan.as_dict(),
    })
    return args

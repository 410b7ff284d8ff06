"""What the model card reads about a training run: its ``args.json`` and ``manifest.json`` (the rows of the
card's training table) and the ``swiftkit eval`` summaries that name its adapter folder. A record that is missing or
unreadable gives nothing; it never fails the export."""

from __future__ import annotations

import json
from pathlib import Path

from swiftkit.core.checkpoints import read_train_args
from swiftkit.core.errors import SwiftkitError
from swiftkit.exporters.card_text import code, public_name, public_run_path

EVAL_SUMMARY = "summary.json"  # swiftkit eval: <--eval_output_dir>/<timestamp>/summary.json


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def training_run(folder: Path) -> dict | None:
    """The run records of an adapter or checkpoint folder: ``args.json`` (in it or its run folder) and the
    run folder's ``manifest.json``; None when there is no args.json."""
    folder = Path(folder)
    try:
        args, _ = read_train_args(folder)
    except (SwiftkitError, OSError):
        return None
    if not args:
        return None
    manifest = next((m for m in (read_json(folder / "manifest.json"), read_json(folder.parent / "manifest.json"))
                     if m), {})
    return {"name": public_run_path(folder), "args": args, "manifest": manifest}


def training_rows(run: dict) -> list[tuple]:
    args, manifest = run["args"], run["manifest"]
    rows = [("Command", " ".join(str(x) for x in (args.get("command"), args.get("rlhf_type")) if x))]
    train_type = args.get("train_type")
    rows.append(("Train type", train_type))
    if train_type in ("lora", "qlora", "longlora") or (train_type and "lora" in str(train_type)):
        rows += [("LoRA rank", args.get("lora_rank")), ("LoRA alpha", args.get("lora_alpha")),
                 ("LoRA targets", ", ".join((manifest.get("plan") or {}).get("target_modules") or [])
                  or args.get("target_modules"))]
    steps = args.get("max_steps")
    rows += [("Learning rate", args.get("learning_rate")),
             ("Epochs", args.get("num_train_epochs") if not steps or steps < 0 else None),
             ("Max steps", steps if steps and steps > 0 else None),
             ("Max length", args.get("max_length")),
             ("Batch size x grad. accumulation", batch(args)),
             ("Base loaded for training", pairs((manifest.get("plan") or {}).get("quantization"))),
             ("Seed", manifest.get("seed", args.get("seed"))),
             ("Training data", ", ".join(public_name(str(d)) for d in args.get("dataset") or [])),
             ("Training rows", manifest.get("num_train_rows")),
             ("Data fingerprint", code(manifest.get("data_fingerprint"))),
             ("Template fingerprint", code(manifest.get("template_fingerprint"))),
             ("Trained", manifest.get("created")),
             ("Versions", ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items()
                                    if k in ("swiftkit", "transformers", "peft", "trl", "torch")))]
    return [(k, v) for k, v in rows if v not in (None, "", [])]


def pairs(value) -> str | None:
    """A QLoRA run's base quantization (``plan.quantization``) as ``key=value`` pairs."""
    if not isinstance(value, dict) or not value:
        return None
    return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)


def batch(args: dict) -> str | None:
    size, accum = args.get("per_device_train_batch_size"), args.get("gradient_accumulation_steps")
    return f"{size} x {accum}" if size and accum else None


def eval_results(adapter: Path) -> list[dict]:
    """``swiftkit eval`` summaries of ``adapter``: eval writes ``<--eval_output_dir>/<timestamp>/summary.json``
    (default ``./eval_output``), naming the adapters it loaded. Looked for under the adapter folder, its run
    folder and ``./eval_output``; a summary counts only when it names this adapter. Newest last."""
    adapter = Path(adapter)
    target = resolved(adapter)
    roots = {adapter, adapter.parent, Path("eval_output")}
    found: dict[Path, dict] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for path in [*root.glob(f"*/{EVAL_SUMMARY}"), *root.glob(f"*/*/{EVAL_SUMMARY}")]:
            data = read_json(path)
            named = {resolved(Path(str(a))) for a in data.get("adapters") or []}
            if target in named and isinstance(data.get("results"), dict):
                found[resolved(path)] = data
    return [found[p] for p in sorted(found, key=lambda p: p.parent.name)]


def resolved(path: Path) -> Path:
    try:
        return path.expanduser().resolve()
    except OSError:
        return path

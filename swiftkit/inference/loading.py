"""Load the model, tokenizer and template for inference from ``--model`` and/or ``--adapters``.

``--adapters CKPT`` needs nothing else: the training run's ``args.json`` (in the checkpoint or
its run directory) says which base model, template, system prompt, max length and --enable_thinking
were used, and the checkpoint's own tokenizer carries the chat template of training. A flag the user sets
explicitly (on the command line, in YAML or as an API argument; see ``CommandConfig.given``) wins
over ``args.json``, even when it equals the flag's default.

Several adapters are applied one after another, each merged into the weights before the next
(LoRA deltas add up, so this equals applying them together). One adapter stays a ``PeftModel``
unless ``--merge_lora`` is set. A checkpoint that holds full weights (``config.json``, no
``adapter_config.json``) is the model itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

from swiftkit.config import InferConfig
from swiftkit.core.checkpoints import find_checkpoint, has_tokenizer, is_full_weights_dir, is_lora_dir, read_train_args
from swiftkit.data.vision import VisionEncoder
from swiftkit.inference.errors import InferError
from swiftkit.models import (
    ResolvedModel,
    is_vision_checkpoint,
    load_model,
    load_processor,
    load_tokenizer,
    resolve_model,
    set_num_threads,
)
from swiftkit.models.attention import attention_implementation
from swiftkit.templates import get_template

# args.json key -> config group that owns it; filled from training unless set explicitly.
INHERITED = {
    "model": "model",
    "model_type": "model",
    "use_hf": "model",
    "cache_dir": "model",
    "template": "template",
    "system": "template",
    "max_length": "template",
    "enable_thinking": "template",
}


def effective_settings(cfg, train_args: dict | None) -> dict:
    """Model/template settings: flags the user gave first, then training's ``args.json``, then defaults."""
    out = {}
    for key, group in INHERITED.items():
        value = getattr(getattr(cfg, group), key)
        if train_args is not None and not cfg.is_given(key) and key in train_args:
            value = train_args[key]
        out[key] = value
    return out


def _resolve_base(cfg: InferConfig, settings: dict, train_args: dict | None, registries):
    """The ResolvedModel of the base model and its registry entry (for the fallback template)."""

    name = settings["model"]
    entry = registries.models.get(name) if isinstance(name, str) and name in registries.models else None
    explicit_model = cfg.model.model is not None
    model_path = (train_args or {}).get("model_path")
    if not explicit_model and model_path and Path(model_path, "config.json").is_file():
        resolved = resolve_model(model_path, model_type=settings["model_type"], registry=registries.models)
        return ResolvedModel(resolved.path, resolved.model_type, entry, resolved.source, name), entry
    if not name:
        raise InferError("no base model: pass --model (and --adapters for trained LoRA weights)")
    resolved = resolve_model(
        name, model_type=settings["model_type"], use_hf=settings["use_hf"],
        revision=cfg.model.model_revision, cache_dir=settings["cache_dir"], registry=registries.models,
    )
    return resolved, resolved.entry or entry


def _apply_adapters(model, lora_dirs: list[Path], merge: bool):
    from peft import PeftModel  # defers peft

    for folder in lora_dirs:
        model = PeftModel.from_pretrained(model, str(folder), is_trainable=False)
        if merge or len(lora_dirs) > 1:
            model = model.merge_and_unload()
    return model


def _template_name(settings: dict, tokenizer, train_args: dict | None, entry) -> str | None:
    if settings["template"]:
        return settings["template"]
    if getattr(tokenizer, "chat_template", None):
        return None  # the tokenizer's own chat template is the source of truth
    if train_args and train_args.get("template_name"):
        return train_args["template_name"]
    return entry.template if entry is not None and entry.template else None


def with_run_data_args(cfg):
    """``cfg`` with --load_data_args applied: the data flags the user did not give taken from the args.json of
    the first --adapters run, so infer/eval generate for the rows that run held out for validation
    (its --val_dataset, or the --split_dataset_ratio share of its --dataset, split the same way)."""
    if not cfg.data.load_data_args:
        return cfg
    ckpt = find_checkpoint(cfg.adapter.adapters[0])
    train_args, _ = read_train_args(ckpt)
    where = f"--load_data_args: the --adapters run of {str(ckpt)!r}"
    if train_args is None:
        raise InferError(f"{where} has no args.json to take the data flags from; pass --val_dataset")
    if train_args.get("command") not in ("sft", None):
        raise InferError(f"{where} is a `swiftkit {train_args['command']}` run, whose rows are not conversations to "
                         "answer; pass --val_dataset")
    cfg, inherited = cfg.with_data_args(train_args)
    if not cfg.has_val_data:
        raise InferError(f"{where} held out no validation data (no --val_dataset or --split_dataset_ratio); pass "
                         "--val_dataset")
    shown = ", ".join(f"--{k}" for k in inherited) or "nothing (all given)"
    print(f"[swiftkit] --load_data_args: took {shown} from {str(ckpt)!r}", file=sys.stderr)
    return cfg


def load_for_inference(cfg: InferConfig, *, registries, adapters: list[str] | None = None, quantization_config=None,
                       prepare_base=None):
    """Load ``(model, template, info)`` for ``cfg``; see the module docstring for the rules.

    ``info`` holds ``model_path``, ``tokenizer_path``, ``adapters`` (LoRA dirs applied),
    ``merged``, ``train_args_path`` (or None), ``train_args`` (the run's args.json, or None), ``template``
    (its name) and the effective ``settings``. ``adapters`` replaces ``--adapters`` (deploy loads the first one
    here, the others onto the engine). ``quantization_config`` (a transformers quantization config) loads the
    base quantized; ``prepare_base(model) -> model`` runs on the base before the adapters are applied (export
    dequantizes a QLoRA base there).
    """
    import torch  # defers torch

    set_num_threads(cfg.model.num_threads)
    attention_implementation(cfg.model.attn_impl)  # a flash-attention kernel this machine lacks: fail before loading
    adapters = list(cfg.adapter.adapters) if adapters is None else adapters
    ckpts = [find_checkpoint(p) for p in adapters]
    train_args, args_path = read_train_args(ckpts[0]) if ckpts else (None, None)
    if ckpts and train_args is None and cfg.model.model is None and not is_full_weights_dir(ckpts[0]):
        raise InferError(
            f"--adapters {adapters[0]!r}: no args.json in {str(ckpts[0])!r} or its "
            "parent, so the base model is unknown; pass --model with the base model"
        )
    settings = effective_settings(cfg, train_args)

    full = ckpts[0] if ckpts and is_full_weights_dir(ckpts[0]) else None
    lora_dirs = ckpts[1:] if full else ckpts
    for folder in lora_dirs:
        if not is_lora_dir(folder):
            raise InferError(
                f"--adapters {str(folder)!r} holds full weights: only the first --adapters entry may "
                "be a full checkpoint; the others must be LoRA adapters (adapter_config.json)"
            )
    if full is not None:
        name = settings["model"]
        entry = registries.models.get(name) if isinstance(name, str) and name in registries.models else None
        resolved = ResolvedModel(str(full.resolve()), None, entry, "local", str(full))
    else:
        resolved, entry = _resolve_base(cfg, settings, train_args, registries)

    tok_dir = next((c for c in ckpts if has_tokenizer(c)), None)
    tok_source = ResolvedModel(str(tok_dir.resolve()), None, None, "local", str(tok_dir)) if tok_dir else resolved
    tokenizer = load_tokenizer(tok_source, trust_remote_code=cfg.model.trust_remote_code)

    vision = is_vision_checkpoint(resolved)  # a vision-language model: it loads with the class that takes images
    model = load_model(resolved, torch_dtype=cfg.model.torch_dtype, trust_remote_code=cfg.model.trust_remote_code,
                       attn_implementation=cfg.model.attn_impl, quantization_config=quantization_config, vision=vision)
    if prepare_base is not None:
        model = prepare_base(model)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))  # tokens added in training
    merged = bool(lora_dirs) and (cfg.adapter.merge_lora or len(lora_dirs) > 1)
    model = _apply_adapters(model, lora_dirs, cfg.adapter.merge_lora)
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()

    template = get_template(
        tokenizer, _template_name(settings, tokenizer, train_args, entry), system=settings["system"],
        max_length=settings["max_length"], truncation_strategy=cfg.template.truncation_strategy,
        enable_thinking=settings["enable_thinking"], registry=registries.templates,
    )
    if vision:  # prompts may hold images: the model's processor puts in their tokens (the checkpoint's, if saved)
        source = tok_source if Path(tok_source.path, "preprocessor_config.json").is_file() or \
            Path(tok_source.path, "processor_config.json").is_file() else resolved
        template = VisionEncoder(template, load_processor(source, trust_remote_code=cfg.model.trust_remote_code))
    info = {
        "model_path": resolved.path,
        "tokenizer_path": tok_source.path,
        "adapters": [str(p) for p in lora_dirs],
        "merged": merged,
        "train_args_path": str(args_path) if args_path else None,
        "train_args": train_args,
        "template": getattr(template, "name", None),
        "settings": settings,
    }
    return model, template, info

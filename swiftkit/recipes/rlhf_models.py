"""The models an alignment run needs besides the policy: where it starts, its reference, its reward
and value models. Plain functions the ``rlhf`` recipe calls in order.

Reference models: with LoRA the reference is the base with the adapters switched off (no second
copy, not even of the adapter: see ``swiftkit.train.rlhf_trainers._AdaptersOffReference``); with
full or freeze training it is a frozen copy of the starting weights, none when dpo/kto precompute
the reference log-probs, or ``--ref_model``. Continuing a trained adapter (``--adapters``), TRL's
frozen copy of that adapter is the reference (PPO gets a merged frozen copy).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from swiftkit.core.checkpoints import find_checkpoint, is_lora_dir, read_train_args
from swiftkit.inference.loading import INHERITED, effective_settings
from swiftkit.models import load_model, resolve_model
from swiftkit.recipes.steps import log
from swiftkit.train.errors import TrainError

REFERENCE_METHODS = ("dpo", "kto", "grpo", "ppo")


def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def freeze(model):
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model


def adapter_start(cfg) -> tuple[Path | None, dict]:
    """``--adapters``: the LoRA checkpoint training continues from, and the base model, template and
    system prompt it was trained with (from its args.json; flags the user gave win), as
    ``swiftkit infer --adapters`` reads them."""
    if not cfg.rlhf.adapters:
        return None, {}
    ckpt = find_checkpoint(cfg.rlhf.adapters[0])
    if not is_lora_dir(ckpt):
        raise TrainError(f"--adapters {str(ckpt)!r} holds full weights, not a LoRA adapter: pass it as --model")
    train_args, _ = read_train_args(ckpt)
    if train_args is None and not cfg.model.model:
        raise TrainError(f"--adapters {str(ckpt)!r}: no args.json next to it, so its base model is unknown; "
                         "pass --model")
    if train_args is not None and train_args.get("rlhf_type") == "rm":
        raise TrainError(f"--adapters {str(ckpt)!r} is a reward model; pass it as --reward_model")
    settings = effective_settings(cfg, train_args)
    return ckpt, {key: settings[key] for key in INHERITED}


def uses_reference_copy(method: str, train_type: str, cfg) -> bool:
    """Whether the reference is a frozen copy of the starting weights (full/freeze training, no
    --ref_model, log-probs not precomputed)."""
    precomputed = method in ("dpo", "kto") and cfg.rlhf.precompute_ref_log_probs
    return method in REFERENCE_METHODS and train_type != "lora" and not cfg.rlhf.ref_model and not precomputed


def load_named_model(name: str, cfg, registries, *, scalar_head: bool = False):
    """A model given by name, hub id or folder (``--ref_model``), frozen."""
    m = cfg.model
    resolved = resolve_model(name, use_hf=m.use_hf, cache_dir=m.cache_dir, registry=registries.models)
    return freeze(load_model(resolved, torch_dtype=m.torch_dtype, trust_remote_code=m.trust_remote_code,
                             scalar_head=scalar_head))


def load_scalar_model(spec: str, flag: str, cfg, registries, tokenizer):
    """A reward / value model: an `rlhf --rlhf_type rm` run or checkpoint (LoRA merged into its base),
    a sequence-classification model directory, or a name or hub id. It must share the policy's tokens."""
    m = cfg.model
    kw = dict(torch_dtype=m.torch_dtype, trust_remote_code=m.trust_remote_code, scalar_head=True)
    if Path(spec).expanduser().is_dir():
        folder = find_checkpoint(spec, flag)
        if is_lora_dir(folder):
            from peft import PeftModel  # defers torch

            args, _ = read_train_args(folder)
            if args is None:
                raise TrainError(f"{flag} {spec!r}: a LoRA adapter without args.json; pass the merged model instead")
            base = resolve_model(args.get("model_path") or args["model"], registry=registries.models,
                                 cache_dir=m.cache_dir)
            model = PeftModel.from_pretrained(load_model(base, **kw), str(folder)).merge_and_unload()
        else:
            model = load_model(resolve_model(str(folder), registry=registries.models), **kw)
    else:
        model = load_model(resolve_model(spec, use_hf=m.use_hf, cache_dir=m.cache_dir,
                                         registry=registries.models), **kw)
    vocab = len(tokenizer)
    if model.get_input_embeddings().num_embeddings < vocab:
        raise TrainError(f"{flag} {spec!r} has {model.get_input_embeddings().num_embeddings} token embeddings "
                         f"but the policy's tokenizer has {vocab} tokens: it must share the policy's tokenizer")
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


@dataclass
class ExtraModels:
    """What the trainer of a method gets besides the policy."""

    reference: object = None
    reward: object = None
    value: object = None
    description: str = "none"  # how the reference is formed, for the run plan


def continue_adapter(model, ckpt: Path):
    from peft import PeftModel  # defers torch

    log(f"continuing the LoRA adapter in {ckpt} (its rank and targets); it is also the reference")
    return PeftModel.from_pretrained(model, str(ckpt), is_trainable=True)


def extra_models(method: str, cfg, registries, tokenizer, policy, *, starting_copy, adapter_ckpt) -> ExtraModels:
    """The reference (decided here, once), reward and value models of ``method``.

    ``starting_copy`` is a frozen copy of the starting weights (made before the tuner) or None;
    ``policy`` is the model being trained (a peft model under LoRA)."""
    r, out = cfg.rlhf, ExtraModels()
    if method in REFERENCE_METHODS:
        if r.ref_model:
            out.reference = load_named_model(r.ref_model, cfg, registries)
            out.description = f"--ref_model {r.ref_model}"
        elif adapter_ckpt is not None:
            out.description = f"the starting adapter {adapter_ckpt}"
            if method == "ppo":  # swiftkit's PPO switches adapters off for its reference: give it a copy
                out.reference = freeze(copy.deepcopy(policy).merge_and_unload())
        elif is_peft(policy):
            out.description = "the policy with its adapters switched off"
        elif starting_copy is not None:
            out.reference, out.description = starting_copy, "a frozen copy of the starting weights"
        elif method in ("dpo", "kto") and r.precompute_ref_log_probs:
            out.description = "log-probs of the starting weights, computed before training"
        else:
            raise TrainError(f"--train_type {cfg.tuner.train_type} gives no adapters to switch off for the "
                             "reference model; pass --ref_model")
    if method == "ppo":
        out.reward = freeze(load_scalar_model(r.reward_model, "--reward_model", cfg, registries, tokenizer))
        value = load_scalar_model(cfg.ppo.value_model or r.reward_model, "--value_model", cfg, registries, tokenizer)
        for param in value.parameters():
            param.requires_grad_(True)
        out.value = value
    elif method == "grpo" and r.reward_model:
        out.reward = freeze(load_scalar_model(r.reward_model, "--reward_model", cfg, registries, tokenizer))
    return out

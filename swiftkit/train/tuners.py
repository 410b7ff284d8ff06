"""Built-in tuners: which parameters train. ``lora`` (peft), ``full`` and ``freeze``.

Each is selected by ``--train_type`` through the ``swiftkit_get_tuner`` hook, so a plugin can add
its own (e.g. a different peft method) without touching this file.
"""

from __future__ import annotations

import sys

from swiftkit.train.errors import TrainError


def _has_fused_experts(model) -> bool:
    """Whether some module named ``experts`` holds a 3-D parameter (fused expert weights)."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "experts" and any(p.dim() == 3 for p in module.parameters(recurse=False)):
            return True
    return False


def apply_lora(model, tuner):
    from peft import LoraConfig, get_peft_model  # defers peft

    targets = list(tuner.target_modules)
    target = "all-linear" if targets == ["all-linear"] else targets
    dropout = tuner.lora_dropout
    if dropout > 0 and _has_fused_experts(model):
        # transformers 5 keeps MoE experts as fused 3-D parameters; peft adapts those as parameters,
        # which cannot take dropout.
        print(f"[swiftkit] this model's MoE experts are fused parameters: --lora_dropout {dropout} -> 0.0",
              file=sys.stderr)
        dropout = 0.0
    config = LoraConfig(
        r=tuner.lora_rank,
        lora_alpha=tuner.lora_alpha,
        lora_dropout=dropout,
        target_modules=target,
        # A reward/value model's score head is new: SEQ_CLS trains it fully and saves it with the adapter.
        task_type="SEQ_CLS" if type(model).__name__.endswith("ForSequenceClassification") else "CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise TrainError(f"--target_modules {' '.join(targets)}: {exc}") from exc


def apply_full(model, tuner):
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def _decoder_layers(model):
    """The repeated decoder blocks: the longest ModuleList in the model."""
    import torch  # defers torch

    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        raise TrainError("--train_type freeze: the model has no list of decoder layers")
    return max(lists, key=len)


def apply_freeze(model, tuner):
    """Train only the last N decoder layers plus the modules after them (final norm, head)."""
    layers = _decoder_layers(model)
    n = tuner.freeze_trainable_layers
    if n > len(layers):
        raise TrainError(f"--freeze_trainable_layers {n} exceeds the model's {len(layers)} layers")
    for param in model.parameters():
        param.requires_grad_(False)
    for layer in list(layers)[len(layers) - n :]:
        for param in layer.parameters():
            param.requires_grad_(True)
    norm = getattr(getattr(model, "model", model), "norm", None)
    if norm is not None:
        for param in norm.parameters():
            param.requires_grad_(True)
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainError("--train_type freeze left no trainable parameter; raise --freeze_trainable_layers")
    return model


BUILTIN_TUNERS = {"lora": apply_lora, "full": apply_full, "freeze": apply_freeze}

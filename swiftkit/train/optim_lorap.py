"""LoRA+ (``--optimizer lorap`` or ``--lorap_lr_ratio R``): the LoRA B matrices learn R times faster.

LoRA+ (Hayou et al., 2024) shows that with A and B at one learning rate, B learns too slowly for the
feature update to be efficient at large width; B at a higher rate (ratio ~16) fixes it. Parameter
groups:

- LoRA B matrices (``lora_B``): ``R x --learning_rate``;
- adapters of embedding layers (``lora_embedding_A``/``lora_embedding_B``): ``--lorap_emb_lr``;
- everything else that trains (LoRA A matrices, biases, modules_to_save): ``--learning_rate``;

each split into a weight-decay and a no-decay group by the trainer's own rule. The optimizer is the
one ``--optim`` names (AdamW by default), built with the same arguments the trainer would use.
"""

from __future__ import annotations

from swiftkit.train.errors import TrainError
from swiftkit.train.optim_params import (
    decay_parameter_names,
    optim_class_and_kwargs,
    split_by_decay,
    trainable_parameters,
)


def is_lora_b(name: str) -> bool:
    return ".lora_B." in name


def is_embedding_adapter(name: str) -> bool:
    return ".lora_embedding_A." in name or ".lora_embedding_B." in name


def lorap_param_groups(model, lr: float, ratio: float, emb_lr: float, weight_decay: float) -> list[dict]:
    """The LoRA+ param groups of ``model`` (see the module docstring); each group carries ``name``."""
    named = trainable_parameters(model)
    b = [(n, p) for n, p in named if is_lora_b(n)]
    if not b:
        raise TrainError("--optimizer lorap (--lorap_lr_ratio) needs LoRA B matrices (lora_B parameters) to train; "
                         "this model has none: use --train_type lora")
    emb = [(n, p) for n, p in named if is_embedding_adapter(n)]
    rest = [(n, p) for n, p in named if not is_lora_b(n) and not is_embedding_adapter(n)]
    decay = decay_parameter_names(model)
    groups = []
    for name, members, group_lr in (("lora_B", b, lr * ratio), ("embedding", emb, emb_lr), ("default", rest, lr)):
        for group in split_by_decay(members, decay, weight_decay, lr=group_lr):
            groups.append({**group, "name": name})
    return groups


def build_lorap(model, config):
    """``--optimizer lorap``: ``--optim``'s optimizer over the LoRA+ param groups."""
    tr, opt = config.training, config.optim
    if opt.lorap_lr_ratio is None:
        raise TrainError("--optimizer lorap needs --lorap_lr_ratio (16 in the LoRA+ paper)")
    groups = lorap_param_groups(model, tr.learning_rate, opt.lorap_lr_ratio, opt.lorap_emb_lr, tr.weight_decay)
    cls, kwargs = optim_class_and_kwargs(config, model)
    return cls(groups, **kwargs)

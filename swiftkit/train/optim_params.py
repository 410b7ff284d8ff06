"""What the built-in optimizers share: the trainable parameters, which of them take weight decay (the
trainer's own rule), and the optimizer class and keyword arguments ``--optim`` stands for."""

from __future__ import annotations

# The trainer's own rule (transformers.Trainer.get_decay_parameter_names): no decay for LayerNorm
# weights or any parameter whose name says bias or norm.
_NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


def trainable_parameters(model) -> list[tuple[str, object]]:
    """``(name, parameter)`` of every parameter that trains, in the model's order."""
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def decay_parameter_names(model) -> set[str]:
    """Names of the parameters weight decay applies to (the same set the trainer's own AdamW uses)."""
    from torch import nn  # defers torch
    from transformers.trainer_pt_utils import get_parameter_names  # defers transformers

    return set(get_parameter_names(model, [nn.LayerNorm], _NO_DECAY_PATTERNS))


def split_by_decay(named, decay: set[str], weight_decay: float, **options) -> list[dict]:
    """Up to two param groups of ``named``: those that take weight decay and those that do not (empty
    groups are left out); ``options`` (lr, GaLore settings, ...) go into both."""
    with_decay = [p for n, p in named if n in decay]
    without = [p for n, p in named if n not in decay]
    groups = [{"params": with_decay, "weight_decay": weight_decay, **options},
              {"params": without, "weight_decay": 0.0, **options}]
    return [g for g in groups if g["params"]]


def optim_class_and_kwargs(cfg, model=None):
    """``(optimizer class, keyword arguments)`` for ``--optim`` with --learning_rate, --adam_beta1/2,
    --adam_epsilon and --optim_args, exactly as transformers' Trainer would build it."""
    from transformers import Trainer, TrainingArguments  # defers transformers

    tr, opt = cfg.training, cfg.optim
    args = TrainingArguments(output_dir=None, optim=opt.optim, optim_args=opt.optim_args,
                             learning_rate=tr.learning_rate, weight_decay=tr.weight_decay,
                             adam_beta1=opt.adam_beta1, adam_beta2=opt.adam_beta2, adam_epsilon=opt.adam_epsilon,
                             report_to="none")
    return Trainer.get_optimizer_cls_and_kwargs(args, model)

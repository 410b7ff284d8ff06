"""Which template a command trains or checks with, from ``--model`` and ``--template`` flags.

Used by training and by ``swiftkit data lint|preview``, so the data tools see exactly the prompts
training will see. Only the tokenizer is loaded, never the weights.
"""

from __future__ import annotations


def template_name(tokenizer, requested: str | None, model_entry, pretrain: bool) -> str | None:
    """``--template`` when given; else None (the tokenizer's own chat template) when it has one;
    else the registered model's template, or ``default`` for pretraining."""
    if requested is not None or getattr(tokenizer, "chat_template", None):
        return requested
    if model_entry is not None and model_entry.template:
        return model_entry.template
    return "default" if pretrain else None


def load_tokenizer_and_template(model_args, template_args, registries, *, pretrain: bool = False):
    """``(resolved model, tokenizer, template)`` for the model and template flags of a command."""
    from swiftkit.models import load_tokenizer, resolve_model
    from swiftkit.templates import get_template

    m, t = model_args, template_args
    resolved = resolve_model(
        m.model, model_type=m.model_type, use_hf=m.use_hf, revision=m.model_revision,
        cache_dir=m.cache_dir, registry=registries.models,
    )
    tokenizer = load_tokenizer(resolved, trust_remote_code=m.trust_remote_code)
    template = get_template(
        tokenizer, template_name(tokenizer, t.template, resolved.entry, pretrain), system=t.system,
        max_length=t.max_length, truncation_strategy=t.truncation_strategy,
        loss_scale="all" if pretrain else t.loss_scale, registry=registries.templates,
    )
    return resolved, tokenizer, template

"""Which template a command trains or checks with, from ``--model`` and ``--template`` flags.

Used by training and by ``swiftkit data lint|preview``, so the data tools see exactly the prompts
training will see. Only the tokenizer is loaded, never the weights.
"""

from __future__ import annotations

from swiftkit.models import load_tokenizer, resolve_model
from swiftkit.models.registry import model_types
from swiftkit.templates import TemplateError, get_template


def template_name(tokenizer, requested: str | None, model_entry, pretrain: bool, candidates=(), *,
                  registry) -> str | None:
    """``--template`` when given; else None (the tokenizer's own chat template) when it has one;
    else the registered model type's template, or ``default`` for pretraining.

    ``candidates`` are the registered model types that fit an unregistered model's config.json;
    when they disagree on the template, the choice is the user's (an error lists them).
    """
    if requested is not None or getattr(tokenizer, "chat_template", None):
        return requested
    if model_entry is not None and model_entry.template:
        return model_entry.template
    if pretrain:
        return "default"  # raw text: the template only adds the tokenizer's bos/eos
    if candidates:

        types = model_types(registry)
        options = {name: types[name].template for name in candidates if name in types}
        templates = {t for t in options.values() if t}
        if len(templates) == 1:
            return templates.pop()
        if len(templates) > 1:
            groups: dict[str, list[str]] = {}
            for name, tpl in sorted(options.items()):
                groups.setdefault(tpl or "own chat template", []).append(name)
            listed = "; ".join(
                f"{tpl}: {', '.join(names[:3])}{f' and {len(names) - 3} more' if len(names) > 3 else ''}"
                for tpl, names in sorted(groups.items())
            )
            raise TemplateError(
                f"the tokenizer has no chat template and config.json fits {len(options)} registered model "
                f"types with different templates ({listed}); pass --model_type TYPE or --template NAME"
            )
    return None


def load_tokenizer_and_template(model_args, template_args, registries, *, pretrain: bool = False):
    """``(resolved model, tokenizer, template)`` for the model and template flags of a command."""

    m, t = model_args, template_args
    resolved = resolve_model(
        m.model, model_type=m.model_type, use_hf=m.use_hf, revision=m.model_revision,
        cache_dir=m.cache_dir, registry=registries.models,
    )
    tokenizer = load_tokenizer(resolved, trust_remote_code=m.trust_remote_code)
    template = get_template(
        tokenizer,
        template_name(tokenizer, t.template, resolved.entry, pretrain, resolved.candidates, registry=registries.models),
        system=t.system,
        max_length=t.max_length, truncation_strategy=t.truncation_strategy,
        loss_scale="all" if pretrain else t.loss_scale, enable_thinking=t.enable_thinking,
        registry=registries.templates,
    )
    return resolved, tokenizer, template

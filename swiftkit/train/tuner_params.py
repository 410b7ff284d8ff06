"""Choosing parameters by name for the tuners: the freeze/trainable flags and the multimodal flags.

``--freeze_parameters`` / ``--trainable_parameters`` take name prefixes (``model.layers.0`` selects
that layer's parameters, ``model.embed_tokens`` the embeddings); the ``*_regex`` flags take a regular
expression searched anywhere in a parameter's name (``re.search``). Names are those of
``model.named_parameters()`` on the loaded model, before any adapter is added.
"""

from __future__ import annotations

import re

from swiftkit.models.loading import VISION_CONFIG_KEYS
from swiftkit.train.errors import TrainError

MULTIMODAL_FLAGS = ("freeze_llm", "freeze_vit", "freeze_aligner")


def has_vision_tower(model) -> bool:
    """Whether the model's config describes a vision encoder (a multimodal checkpoint)."""
    config = getattr(model, "config", None)
    return any(getattr(config, key, None) is not None for key in VISION_CONFIG_KEYS)


# Name parts that place a parameter of a multimodal model in its vision tower or in the aligner (the projector
# between the vision tower and the language model); everything else is the language model. The aligner is
# looked for first: Qwen2-VL keeps its merger inside ``visual``.
VISION_PARTS = frozenset(("visual", "vision_tower", "vision_model", "vision_encoder", "image_encoder", "vqmodel",
                          "vision_embed_tokens", "vision_backbone", "image_tower"))
ALIGNER_PARTS = frozenset(("multi_modal_projector", "merger", "deepstack_merger_list", "connector", "mm_projector",
                           "aligner", "vision_projection", "projector", "patch_merger", "vision_proj",
                           "image_projection", "mlp1"))
PARTS = ("vision", "aligner", "llm")


def multimodal_part(name: str) -> str:
    """``vision``, ``aligner`` or ``llm``: which part of a multimodal model the parameter or module ``name`` is in."""
    parts = name.split(".")
    if any(p in ALIGNER_PARTS for p in parts):
        return "aligner"
    if any(p in VISION_PARTS for p in parts):
        return "vision"
    return "llm"


def frozen_parts(tuner) -> list[str]:
    """The parts --freeze_vit/--freeze_aligner/--freeze_llm keep frozen."""
    flags = {"vision": tuner.freeze_vit, "aligner": tuner.freeze_aligner, "llm": tuner.freeze_llm}
    return [part for part in PARTS if flags[part]]


def check_multimodal_flags(model, config) -> None:
    """--freeze_llm/--freeze_vit/--freeze_aligner given explicitly need a model with a vision tower, and must
    leave some part of it to train."""
    given = [f"--{flag}" for flag in MULTIMODAL_FLAGS if config.is_given(flag)]
    if not given:
        return
    if not has_vision_tower(model):
        raise TrainError(f"{'/'.join(given)}: the model has no vision tower (its config has no vision_config); "
                         "these flags apply to multimodal models only: drop them")
    if len(frozen_parts(config.tuner)) == len(PARTS):
        raise TrainError("--freeze_vit, --freeze_aligner and --freeze_llm are all true: nothing would train; "
                         "set one of them false")


def frozen_part_modules(model, tuner) -> list[str]:
    """Names of the layers with weights (linear, convolution, ...) in the parts of a multimodal model that stay
    frozen: kept out of an adapter tuner's targets (an empty list for a text model). A target named by hand
    (GLM-4.5V's ``proj`` is also its vision tower's patch convolution) then adapts the language model alone."""
    if not has_vision_tower(model):
        return []
    frozen = set(frozen_parts(tuner))
    return [name for name, module in model.named_modules()
            if next(module.parameters(recurse=False), None) is not None and multimodal_part(name) in frozen]


def freeze_multimodal_parts(model, tuner) -> None:
    """Full and freeze training of a multimodal model: the parts the --freeze_* flags name keep their weights."""
    if not has_vision_tower(model):
        return
    frozen = set(frozen_parts(tuner))
    for name, param in model.named_parameters():
        if multimodal_part(name) in frozen:
            param.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainError(f"the --freeze_* flags froze every part of the multimodal model ({', '.join(sorted(frozen))}):"
                         " nothing would train")


def _matches(name: str, prefixes, pattern) -> bool:
    if any(name == p or name.startswith(p.rstrip(".") + ".") for p in prefixes):
        return True
    return pattern is not None and re.search(pattern, name) is not None


def select_parameters(model, prefixes, pattern, flag: str) -> list[str]:
    """Names of the parameters under ``prefixes`` or matching ``pattern``; a selection that matches
    nothing is an error naming ``flag`` (a typo would otherwise train or freeze nothing)."""
    prefixes = list(prefixes)
    if not prefixes and pattern is None:
        return []
    names = [n for n, _ in model.named_parameters() if _matches(n, prefixes, pattern)]
    if not names:
        shown = " ".join(prefixes) if prefixes else repr(pattern)
        example = next(iter(dict(model.named_parameters())), "")
        raise TrainError(f"{flag} {shown} matches no parameter of the model (names look like {example!r})")
    return names


def freeze_by_ratio(model, ratio: float) -> list[str]:
    """Names of the first parameters (in the model's order: embeddings first) holding ``ratio`` of
    all weights; the parameter that crosses the line is frozen too."""
    if ratio <= 0:
        return []
    params = list(model.named_parameters())
    limit = ratio * sum(p.numel() for _, p in params)
    out, seen = [], 0
    for name, param in params:
        if seen >= limit:
            break
        out.append(name)
        seen += param.numel()
    return out


def apply_full_selection(model, tuner) -> None:
    """--train_type full: every parameter trains except those the freeze flags select; then the
    --trainable_parameters* selection trains whatever the freeze flags froze."""
    frozen = set(select_parameters(model, tuner.freeze_parameters, tuner.freeze_parameters_regex,
                                   "--freeze_parameters/--freeze_parameters_regex"))
    frozen |= set(freeze_by_ratio(model, tuner.freeze_parameters_ratio))
    frozen -= set(select_parameters(model, tuner.trainable_parameters, tuner.trainable_parameters_regex,
                                    "--trainable_parameters/--trainable_parameters_regex"))
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen)
    if not any(p.requires_grad for p in model.parameters()):
        raise TrainError("--freeze_parameters* froze every parameter: nothing would train; lower "
                         "--freeze_parameters_ratio or add --trainable_parameters")


def trainable_modules(model, tuner) -> list[str]:
    """The modules whose parameters --trainable_parameters* select, as full module names: with an
    adapter tuner they train fully and are saved with the adapter (peft's ``modules_to_save``), so the
    adapter folder alone reproduces the trained model."""
    names = select_parameters(model, tuner.trainable_parameters, tuner.trainable_parameters_regex,
                              "--trainable_parameters/--trainable_parameters_regex")
    modules = dict.fromkeys(name.rsplit(".", 1)[0] for name in names if "." in name)
    # A selected module inside another selected one is saved with it.
    return [m for m in modules if not any(m.startswith(o + ".") for o in modules if o != m)]

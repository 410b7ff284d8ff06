"""Built-in tuners: which weights train. Each is selected by ``--train_type`` (alias ``--tuner_type``)
through the ``swiftkit_get_tuner`` hook, so a plugin can add its own without touching this file.

Every entry of :data:`BUILTIN_TUNERS` is ``build(model, config) -> model to train``, where ``config``
is the whole command config (``config.tuner``, ``config.quant``, ``config.training`` ...).

- adapters (peft, :mod:`swiftkit.train.tuners_peft`): lora, qlora (lora on a 4-bit bitsandbytes
  base unless --quant_bits says 8), adalora, vera, boft, ia3, loha, lokr;
- full weights: full (with the --freeze_parameters* / --trainable_parameters* selection), freeze (the
  last --freeze_trainable_layers layers), llamapro (new identity blocks, :mod:`swiftkit.train.llamapro`);
- refused with the reason: reft (pyreft cannot be installed with transformers 5) and longlora
  (needs patched attention code).
"""

from __future__ import annotations

from swiftkit.config.rlhf import REFERENCE_FREE
from swiftkit.models.quantization import effective_quantization
from swiftkit.train.errors import TrainError
from swiftkit.train.llamapro import apply_llamapro, decoder_layers
from swiftkit.train.tuner_params import apply_full_selection, check_multimodal_flags, freeze_multimodal_parts
from swiftkit.train.tuners_peft import (
    DATA_INITS,
    MUTATING_INITS,
    apply_adalora,
    apply_boft,
    apply_ia3,
    apply_loha,
    apply_lokr,
    apply_lora,
    apply_vera,
    check_init,
    init_kind,
)


def apply_full(model, config):
    """Every weight trains, except those --freeze_parameters* freeze (--trainable_parameters* win)."""
    check_multimodal_flags(model, config)
    apply_full_selection(model, config.tuner)
    freeze_multimodal_parts(model, config.tuner)
    return model


def apply_freeze(model, config):
    """Train only the last N decoder layers plus the modules after them (final norm, head)."""
    check_multimodal_flags(model, config)
    parent, attr = decoder_layers(model)
    layers = getattr(parent, attr)
    n = config.tuner.freeze_trainable_layers
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


def refuse_reft(model, config):
    raise TrainError("--train_type reft needs pyreft, whose every release pins transformers 4.x (0.1.0: "
                     "transformers==4.45.1), so it cannot be installed beside transformers 5; use --train_type "
                     "lora (or vera/ia3 for fewer trained parameters)")


def refuse_longlora(model, config):
    raise TrainError("--train_type longlora needs shifted sparse attention, a patch of each model's attention "
                     "code that swiftkit does not make; for long contexts use --train_type lora with a larger "
                     "--max_length (and the model's own rope scaling), or --gradient_checkpointing")


def check_before_loading(config) -> None:
    """The refusals that need no weights (an unsupported tuner, an --init_weights the base cannot take),
    so such a run stops before anything loads."""
    kind = config.tuner.train_type
    if kind in ("reft", "longlora"):
        BUILTIN_TUNERS[kind](None, config)
    if kind in ("lora", "qlora"):
        check_init(config.tuner, quantized=effective_quantization(config.quant, kind) is not None)
        init = init_kind(config.tuner.init_weights)
        if init in DATA_INITS and config.command == "rlhf":
            raise TrainError(f"--init_weights {init} initialises the adapters from a pass over sft/pt training rows; "
                             "`swiftkit rlhf` has none to give it: use --init_weights true or pissa")
        rlhf = getattr(config, "rlhf", None)
        if (init in MUTATING_INITS and rlhf is not None and rlhf.rlhf_type not in REFERENCE_FREE
                and not rlhf.ref_model):
            raise TrainError(f"--init_weights {config.tuner.init_weights} moves the base weights, so the base with the "
                             f"adapters switched off (the {rlhf.rlhf_type} reference) is no longer the starting model: "
                             "pass --ref_model with the base model, or use --init_weights true")


BUILTIN_TUNERS = {
    "lora": apply_lora,
    "qlora": apply_lora,  # the base was loaded 4/8-bit by the recipe (swiftkit.models.quantization)
    "full": apply_full,
    "freeze": apply_freeze,
    "adalora": apply_adalora,
    "vera": apply_vera,
    "boft": apply_boft,
    "ia3": apply_ia3,
    "loha": apply_loha,
    "lokr": apply_lokr,
    "llamapro": apply_llamapro,
    "reft": refuse_reft,
    "longlora": refuse_longlora,
}


def _adalora_callback(config):
    from swiftkit.train.tuner_callbacks import AdaLoraAllocation  # defers transformers

    return AdaLoraAllocation()


def _conversion_callback(config):
    from swiftkit.train.tuner_callbacks import AdapterConversion  # defers transformers

    if init_kind(config.tuner.init_weights) not in MUTATING_INITS:  # named in --callbacks by hand
        raise TrainError("the adapter_conversion callback rewrites the adapters of --init_weights "
                         f"{'/'.join(MUTATING_INITS)} runs (it is added for them); this run's adapters need no "
                         "conversion: drop it from --callbacks")
    return AdapterConversion()


# Callbacks the recipe adds for some tuners (swiftkit.recipes.parts.callback_names), by name.
TUNER_CALLBACKS = {"adalora": _adalora_callback, "adapter_conversion": _conversion_callback}

# Tuners whose output is a peft adapter (the others save full weights).
ADAPTER_TUNERS = ("lora", "qlora", "adalora", "vera", "boft", "ia3", "loha", "lokr")

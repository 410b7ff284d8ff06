"""The model an export starts from: the base (--model), the trained --adapters on it, merged.

Two models matter for an export. The *source* is what the user trained and would serve with ``swiftkit
infer --adapters CKPT``: for LoRA the base plus the unmerged adapter, for QLoRA the adapter on the base
loaded 4/8-bit exactly as training loaded it (from the run's args.json). The parity report compares the
artifact against it. The *merged* model is what the exporters write: plain full-precision weights with
every adapter merged in.

Merging a QLoRA adapter (``--qlora_merge``):

- ``dequantized`` (default): the base is loaded quantized as in training, dequantized (transformers'
  ``model.dequantize()``: the rounded weights in full precision), and the adapter is merged into that. The
  adapter was trained to correct exactly those weights, so the merged model answers as the adapter did;
- ``full_precision``: the adapter is merged into the original full-precision base weights (W + BA). The
  base's rounding error is gone, but the adapter no longer sits on the weights it was trained against.

Either way the parity report gives the logit error against the source; a quantizer (e.g. ``--quant_method
bnb``) then re-quantizes the merged weights.
"""

from __future__ import annotations

from swiftkit.core.checkpoints import find_checkpoint, read_train_args
from swiftkit.inference.loading import load_for_inference
from swiftkit.models.quantization import bnb_config


def training_quantization(train_args: dict | None) -> dict | None:
    """How the --adapters run loaded its base (``{"quant_method", "quant_bits", ...}``), or None when it
    trained on full-precision weights: the run's own record, ``plan.quantization`` in its args.json."""
    return ((train_args or {}).get("plan") or {}).get("quantization")


def _dequantize(model):
    model.dequantize()
    # transformers 5.24 drops the quantizer but leaves the load-time flags set: the weights are plain now.
    model.is_loaded_in_4bit = model.is_loaded_in_8bit = False
    return model


def load_source(cfg, registries):
    """``(model, template, info)``: the source model as the user serves it (adapters unmerged when there is
    one; a QLoRA adapter on its quantized base). ``info["training_quantization"]`` says how the base was
    quantized in training (None: full precision)."""
    train_args = read_train_args(find_checkpoint(cfg.adapter.adapters[0]))[0] if cfg.adapter.adapters else None
    quant = training_quantization(train_args)
    qconfig = bnb_config(quant, cfg.model.torch_dtype) if quant else None
    model, template, info = load_for_inference(cfg, registries=registries, quantization_config=qconfig)
    info["training_quantization"] = quant
    return model, template, info


def merged_model(cfg, registries, source, quant: dict | None):
    """The full-precision model with every adapter merged. A LoRA ``source`` is merged in place; a QLoRA
    one (``quant``: :func:`training_quantization`) is replaced by a fresh load as ``--qlora_merge`` says (see
    the module docstring)."""
    if quant is None:
        return source.merge_and_unload() if hasattr(source, "merge_and_unload") else source
    if cfg.export.qlora_merge == "dequantized":
        model, _, _ = load_for_inference(cfg, registries=registries, prepare_base=_dequantize,
                                         quantization_config=bnb_config(quant, cfg.model.torch_dtype))
    else:
        model, _, _ = load_for_inference(cfg, registries=registries)
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model

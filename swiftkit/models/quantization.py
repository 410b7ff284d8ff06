"""Quantizing a base model as it loads (QLoRA): ``--quant_method bnb --quant_bits 4|8``.

:func:`effective_quantization` says which quantization a run uses (``--train_type qlora`` alone means
a 4-bit bitsandbytes base); :func:`bnb_config` turns it into transformers' ``BitsAndBytesConfig``.
bitsandbytes (>= 0.45) runs its 4- and 8-bit layers on the CPU as well as on CUDA.
"""

from __future__ import annotations

from swiftkit.models.loading import resolve_dtype

QLORA_DEFAULT_BITS = 4


def effective_quantization(quant, train_type: str) -> dict | None:
    """``{"quant_method", "quant_bits", ...}`` as the run loads its base, or None for full precision.

    ``--train_type qlora`` without ``--quant_method`` is LoRA on a 4-bit bitsandbytes base. The 4-bit
    options are included only for 4 bits (8-bit layers have none of them).
    """
    method, bits = quant.quant_method, quant.quant_bits
    if method is None and train_type == "qlora":
        method, bits = "bnb", QLORA_DEFAULT_BITS
    if method is None:
        return None
    out = {"quant_method": method, "quant_bits": bits}
    if bits == 4:
        out.update(bnb_4bit_quant_type=quant.bnb_4bit_quant_type,
                   bnb_4bit_use_double_quant=quant.bnb_4bit_use_double_quant,
                   bnb_4bit_compute_dtype=quant.bnb_4bit_compute_dtype,
                   bnb_4bit_quant_storage=quant.bnb_4bit_quant_storage)
    return out


def bnb_config(quantization: dict | None, torch_dtype="auto"):
    """transformers' ``BitsAndBytesConfig`` for :func:`effective_quantization`'s result (None: none).

    The 4-bit layers compute in ``--bnb_4bit_compute_dtype``, by default the dtype the rest of the
    model loads in (``--torch_dtype``).
    """
    if quantization is None:
        return None
    from transformers import BitsAndBytesConfig  # defers transformers

    if quantization["quant_bits"] == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = quantization["bnb_4bit_compute_dtype"] or torch_dtype
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization["bnb_4bit_quant_type"],
        bnb_4bit_use_double_quant=quantization["bnb_4bit_use_double_quant"],
        bnb_4bit_compute_dtype=resolve_dtype(compute),
        bnb_4bit_quant_storage=quantization["bnb_4bit_quant_storage"] or "uint8",  # a torch dtype's name
    )


def is_quantized(model) -> bool:
    """Whether ``model`` holds bitsandbytes 4- or 8-bit weights (loaded with a quantization config)."""
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
                or getattr(model, "hf_quantizer", None) is not None)


def keep_4bit_trainable_on_cpu(model) -> int:
    """Stop bitsandbytes from repacking 4-bit weights for its CPU inference kernel; how many layers.

    bitsandbytes 0.50 repacks a ``Linear4bit``'s weights the first time the layer runs on a CPU with
    AVX512-BF16 in eval mode without gradients (an evaluation pass, a probe). The repacked kernel has
    no backward, so training after it silently gets zero gradients through every base weight (the
    adapters below the last layer stop learning; measured on a tiny llama). A model that trains keeps
    the trainable layout: the repack is switched off (the loader does it as the model loads), and one
    that already happened is undone (its scales stay rounded to bfloat16).
    Remove when the repacked kernel gets a backward (or repacks only models that do not train).
    """
    try:
        import bitsandbytes as bnb  # defers bitsandbytes
        from bitsandbytes import functional  # defers bitsandbytes
    except ImportError:
        return 0
    undo = getattr(functional, "_convert_weight_packed_for_cpu_inverse", None)
    count = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            weight = module.weight
            if undo is not None and getattr(weight.quant_state, "packing_format_for_cpu", False):
                weight.data, weight.quant_state = undo(weight.data, weight.quant_state)
            count += 1
    return count


def release_checkpoint_mapping(model) -> int:
    """Copy a quantized model's full-precision parameters (embeddings, norms, head) out of the
    checkpoint's memory map; how many were copied.

    transformers loads safetensors zero-copy: those parameters are views of the mapped file, which
    keeps every page the quantizer read (all the full-precision linear weights) resident and counted in
    the process's memory. Owning copies of the few unquantized tensors let the mapping go: on
    SmolLM2-135M the 4-bit model's resident memory after loading drops from 870 to 572 MB (the mapped
    file was 502 MB of it).
    """
    count = 0
    for param in model.parameters():
        if type(param).__name__ not in ("Params4bit", "Int8Params"):
            param.data = param.data.clone()
            count += 1
    for module in model.modules():
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and buffer.device.type == "cpu":
                module._buffers[name] = buffer.clone()
    return count
